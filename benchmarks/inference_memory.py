"""Peak memory of make_cams' per-image work on a 3000x4000 photo: shrunk to ``cam_infer.max_side``
against run whole (the plain baseline), and against a VOC-sized 500x375 image.

All run the default inference (cam_infer: scales 1, 0.5, 1.5, 2 with mirrors,
cam_stride 4, max_side) of a random tiny CAM network on an image of two classes,
each in a fresh process so that its peak resident memory is its own. The large
photo is shrunk to ``cam_infer.max_side`` before the network sees it; run whole,
its peak grows with the photo. The check: the CAMs come back at image size, and finite.
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


def run(options: Options) -> list[Record]:
    voc, photo = ((75, 100), (600, 800)) if options.quick else ((375, 500), (3000, 4000))
    max_side = 200 if options.quick else CamInferConfig().max_side
    runs = {"photo": (photo, max_side), "photo, whole": (photo, 10**6), "voc": (voc, max_side)}
    seconds, peak_mb = {}, {}
    for name, ((height, width), side) in runs.items():
        cams, seconds[name], peak_mb[name] = in_fresh_process(
            "benchmarks.inference_memory:cam_job", height=height, width=width, max_side=side
        )
        if tuple(cams["high_res"].shape) != (2, height, width) or not torch.isfinite(cams["high_res"]).all():
            raise CheckFailed(f"{name}: CAMs of shape {tuple(cams['high_res'].shape)}, expected (2, {height}, {width})")
    check = f"CAMs at image size ({photo[0]}x{photo[1]}, {voc[0]}x{voc[1]}), finite"
    size = f"{photo[0]}x{photo[1]} photo"
    return [
        Record(
            STAGE,
            f"make_cams peak MB, {size}: shrunk to max_side {max_side} vs whole (tiny, default cam_infer)",
            peak_mb["photo"],
            peak_mb["photo, whole"],
            Target("<=", MAX_RATIO_TO_WHOLE),
            check,
            note=f"seconds: {seconds['photo']:.2f} vs {seconds['photo, whole']:.2f}",
        ),
        Record(
            STAGE,
            f"make_cams peak MB, {size} vs a {voc[0]}x{voc[1]} VOC image (both at max_side {max_side})",
            peak_mb["photo"],
            peak_mb["voc"],
            Target("<=", MAX_RATIO_TO_VOC),
            check,
            note="the network sees max_side, twice a VOC image's side; its CAM maps at full size grow with the photo",
        ),
    ]
