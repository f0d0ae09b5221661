"""Peak memory of the per-image work of the inference steps on a 3000x4000 photo: shrunk to the
step's ``max_side`` against run whole (the plain baseline), and against a VOC-sized 500x375 image.

- make_cams: the default inference (cam_infer: scales 1, 0.5, 1.5, 2 with mirrors, cam_stride 4)
  of a random tiny CAM network on an image of two classes;
- make_pseudo_masks, method crf (the dense CRF is the refinement whose memory grows most): random
  CAMs of two classes at image size, default pseudo_labels;
- make_seg_preds / make_test_submission: the default multi-scale prediction (seg_infer) of a
  random tiny DeepLab network, enlarged back to image size.

Each runs in a fresh process so that its peak resident memory is its own. The check: the
outputs come back at image size (and CAMs finite).
"""

from __future__ import annotations

import numpy as np
import torch

from pixsup.config import CamInferConfig

from .context import Options
from .measure import CheckFailed, Record, Target, in_fresh_process

STAGE = "inference_memory"
# The network's memory no longer grows with the photo: a tenth of running it whole, at most.
MAX_RATIO_TO_WHOLE = 0.1
# At max_side 1000 the network sees four times a 500x375 image's pixels; the photo's maps add the rest.
MAX_RATIO_TO_VOC = 6.0


def cam_job(height: int, width: int, max_side: int | None):
    """infer_cams of a random tiny network on a random image of ``height`` x ``width`` (run in a fresh process)."""
    from pixsup.cam.inference import infer_cams
    from pixsup.models import create_model
    from pixsup.models.inference import inference_model

    torch.manual_seed(0)
    model = inference_model(create_model("tiny", proj_dim=8, pretrained="none"), "cpu")
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = np.zeros(20, dtype=np.float32)
    label[[2, 14]] = 1
    cfg = CamInferConfig()
    side = cfg.max_side if max_side is None else max_side

    def call() -> dict[str, torch.Tensor]:
        cams = infer_cams(model, image, label, cfg.scales, cfg.flip, cfg.cam_stride, "cpu", cfg.precision, side)
        return {key: torch.from_numpy(value) for key, value in cams.items()}

    return call


def mask_job(height: int, width: int, max_side: int | None):
    """A crf pseudo mask of random CAMs (two classes) for a random image (run in a fresh process)."""
    from pixsup.config import PseudoLabelsConfig
    from pixsup.pseudo_labels.refine import crf_mask, enlarge_labels, working_size

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    cams = {
        "keys": np.array([3, 15]),
        "high_res": rng.random((2, height, width), dtype=np.float32),
        "cam": rng.random((2, -(-height // 4), -(-width // 4)), dtype=np.float32),
    }
    cfg = PseudoLabelsConfig()
    side = cfg.max_side if max_side is None else max_side

    def call() -> dict[str, torch.Tensor]:
        small_image, small_cams = working_size(image, cams, side)
        labels = enlarge_labels(crf_mask(small_image, small_cams, cfg), (height, width))
        return {"labels": torch.from_numpy(labels)}

    return call


def seg_job(height: int, width: int, max_side: int | None):
    """The multi-scale prediction of a random tiny DeepLab on a random image (run in a fresh process)."""
    from pixsup.config import SegInferConfig
    from pixsup.data.transforms import shrink_to_max_side
    from pixsup.models import create_model
    from pixsup.segmentation.prediction import labels_at_size, predict_probs

    torch.manual_seed(0)
    model = create_model("tiny", "segmentation", pretrained="none", rates=(6, 12), num_classes=21).eval()
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cfg = SegInferConfig()
    side = cfg.max_side if max_side is None else max_side

    def call() -> dict[str, torch.Tensor]:
        probs = predict_probs(model, shrink_to_max_side(image, side), cfg.scales, cfg.flip, torch.device("cpu"))
        return {"labels": torch.from_numpy(labels_at_size(probs, (height, width)))}

    return call


# step: (its job, the key of its output, the section holding its max_side)
JOBS = {
    "make_cams": ("benchmarks.inference_memory:cam_job", "high_res", "cam_infer"),
    "make_pseudo_masks crf": ("benchmarks.inference_memory:mask_job", "labels", "pseudo_labels"),
    "make_seg_preds ms": ("benchmarks.inference_memory:seg_job", "labels", "seg_infer"),
}


def run(options: Options) -> list[Record]:
    voc, photo = ((75, 100), (600, 800)) if options.quick else ((375, 500), (3000, 4000))
    max_side = 200 if options.quick else CamInferConfig().max_side
    runs = {"photo": (photo, max_side), "photo, whole": (photo, 10**6), "voc": (voc, max_side)}
    size = f"{photo[0]}x{photo[1]} photo"
    records = []
    for step, (job, key, section) in JOBS.items():
        seconds, peak_mb = {}, {}
        for name, ((height, width), side) in runs.items():
            out, seconds[name], peak_mb[name] = in_fresh_process(job, height=height, width=width, max_side=side)
            shape = tuple(out[key].shape[-2:])
            if shape != (height, width) or not torch.isfinite(out[key].float()).all():
                raise CheckFailed(f"{step}, {name}: output of size {shape}, expected ({height}, {width})")
        check = f"outputs at image size ({photo[0]}x{photo[1]}, {voc[0]}x{voc[1]}), finite"
        records += [
            Record(
                STAGE,
                f"{step} peak MB, {size}: shrunk to {section}.max_side {max_side} vs whole",
                peak_mb["photo"],
                peak_mb["photo, whole"],
                Target("<=", MAX_RATIO_TO_WHOLE),
                check,
                note=f"seconds: {seconds['photo']:.2f} vs {seconds['photo, whole']:.2f}",
            ),
            Record(
                STAGE,
                f"{step} peak MB, {size} vs a {voc[0]}x{voc[1]} VOC image (both at max_side {max_side})",
                peak_mb["photo"],
                peak_mb["voc"],
                Target("<=", MAX_RATIO_TO_VOC),
                check,
                note="the work runs at max_side, twice a VOC image's side; maps at full size grow with the photo",
            ),
        ]
    return records
