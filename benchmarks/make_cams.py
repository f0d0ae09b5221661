"""make_cams: multi-scale + flip CAM inference on VOC-sized images against a per-image, per-scale fp32 loop.

The baseline is what reference code does: for every image and scale, one fp32
forward of the image and its mirror, the network as trained (NCHW, BatchNorm
layers of their own). Ours is :func:`pixsup.cam.inference.cam_maps` on
:func:`pixsup.models.inference.inference_model` (channels_last, BatchNorm folded) at each
``cam_infer.precision``. ResNet-50 at output stride 16, the default scales.
With a finished workflow run, the seed mIoU of its CAMs in bf16 and fp32 is
compared too (the criterion for making bf16 the default).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixsup.cam.cam_files import load_cam_file
from pixsup.cam.inference import cam_maps, dump_cams
from pixsup.checkpoints import load_cam_net
from pixsup.config import CamInferConfig
from pixsup.data.datasets import CamInferDataset
from pixsup.data.transforms import normalize_image
from pixsup.evaluation.metrics import sweep_thresholds
from pixsup.evaluation.scoring import evaluate_cams
from pixsup.models import create_model
from pixsup.models.inference import inference_model

from .context import FinishedRun, Options, finished_run
from .measure import Record, Target, check_close, interleaved_seconds, max_abs_difference, skipped

STAGE = "make_cams"
FP32_TOLERANCE = 1e-4
# bf16 computes the same CAMs less precisely: a check that it is the same work, not its precision target.
BF16_SAME_WORK = 0.1
BF16_CAM_DEVIATION = 0.02
BF16_SPEEDUP = 3.0
BF16_MIOU_POINTS = 0.2
SEED_METRIC = "seed mIoU of the finished run's `full` CAMs (train): bf16 vs fp32"
FILE_METRIC = "max |normalised CAM| difference of the finished run's `full` CAM files: bf16 vs fp32"
SYNTHETIC_TARGETS = {
    SEED_METRIC: Target("<=", BF16_MIOU_POINTS, "difference"),
    FILE_METRIC: Target("<=", BF16_CAM_DEVIATION, "difference"),
}


@torch.no_grad()
def baseline_cams(
    model: torch.nn.Module, image: np.ndarray, class_index: np.ndarray, scales: tuple[float, ...], cam_stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised CAMs (low-resolution grid, image size) the plain way, as IRN's make_cam: one fp32
    forward per scale of the PIL-bicubic rescaled image, high_res enlarged to a multiple of the
    output stride and cropped."""
    height, width = image.shape[:2]
    stride = model.output_stride
    low_size = (math.ceil(height / cam_stride), math.ceil(width / cam_stride))
    up_size = (math.ceil(height / stride) * stride, math.ceil(width / stride) * stride)
    low = torch.zeros(len(class_index), *low_size)
    high = torch.zeros(len(class_index), *up_size)
    for scale in scales:
        size = (int(np.round(width * scale)), int(np.round(height * scale)))
        scaled = image if scale == 1.0 else np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
        x = normalize_image(scaled).unsqueeze(0)
        cam = F.relu(model(torch.cat([x, x.flip(-1)]), with_proj=False)["cam"])[:, torch.as_tensor(class_index)]
        cam = cam[0:1] + cam[1:2].flip(-1)
        low += F.interpolate(cam, size=low_size, mode="bilinear", align_corners=False)[0]
        high += F.interpolate(cam, size=up_size, mode="bilinear", align_corners=False)[0]
    high = high[:, :height, :width]
    low /= low.flatten(1).amax(dim=1)[:, None, None] + 1e-5
    high /= high.flatten(1).amax(dim=1)[:, None, None] + 1e-5
    return low, high


def _inputs(quick: bool) -> tuple[torch.nn.Module, list[np.ndarray], tuple[float, ...]]:
    torch.manual_seed(0)
    model = create_model("tiny" if quick else "resnet50", pretrained="none").eval()
    rng = np.random.default_rng(0)
    sizes = [(48, 64)] if quick else [(375, 500), (500, 375)]
    images = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]
    return model, images, (1.0, 0.5) if quick else CamInferConfig().scales


def bf16_hardware() -> str:
    """Whether this CPU has bf16 units, as oneDNN sees them."""
    capability = torch.backends.cpu.get_cpu_capability()
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return f"this CPU ({capability}) has bf16 units"
    return f"this CPU ({capability}) has no bf16 units: bf16 is emulated"


def run(options: Options) -> list[Record]:
    model, images, scales = _inputs(options.quick)
    ours_model = inference_model(model)
    classes = np.array([0, 14])
    stride = CamInferConfig().cam_stride

    def baseline() -> list[torch.Tensor]:
        return [t for image in images for t in baseline_cams(model, image, classes, scales, stride)]

    def ours(precision: str) -> list[torch.Tensor]:
        return [
            t for image in images for t in cam_maps(ours_model, image, classes, scales, True, stride, "cpu", precision)
        ]

    reference, fp32, bf16 = baseline(), ours("fp32"), ours("bf16")
    fp32_check = check_close("normalised CAMs, fp32", fp32, reference, FP32_TOLERANCE)
    bf16_check = check_close("normalised CAMs, bf16", bf16, reference, BF16_SAME_WORK)
    seconds = interleaved_seconds(
        {"baseline": baseline, "fp32": lambda: ours("fp32"), "bf16": lambda: ours("bf16")},
        repeats=1 if options.quick else 3,
    )
    rate = {name: len(images) / s for name, s in seconds.items()}
    loop = "images/s vs a per-image, per-scale fp32 loop"
    records = [
        Record(
            STAGE,
            f"{loop}: fp32 (channels_last, BatchNorm folded)",
            rate["fp32"],
            rate["baseline"],
            Target(">=", 1.0),
            fp32_check,
        ),
        Record(
            STAGE,
            f"{loop}: bf16 autocast (channels_last)",
            rate["bf16"],
            rate["baseline"],
            Target(">=", BF16_SPEEDUP),
            bf16_check,
            bf16_hardware(),
        ),
        Record(
            STAGE,
            "max |normalised CAM - baseline's|: bf16 vs fp32",
            max_abs_difference(bf16, reference),
            max_abs_difference(fp32, reference),
            Target("<=", BF16_CAM_DEVIATION, "difference"),
            bf16_check,
        ),
    ]
    run_or_reason = "--quick" if options.quick else finished_run(options)
    if isinstance(run_or_reason, str):
        records += [skipped(STAGE, metric, run_or_reason, target) for metric, target in SYNTHETIC_TARGETS.items()]
    else:
        records += _synthetic_records(run_or_reason)
    return records


def _synthetic_records(run: FinishedRun) -> list[Record]:
    """make_cams and eval_cams on the finished run's train split with the `full` CAM network, in both precisions."""
    params = run.params
    model_path = run.first_run / "full" / "model.pt"
    model, _ = load_cam_net(model_path)
    dataset = CamInferDataset(run.data_root, "train")
    thresholds = sweep_thresholds(
        params.cam_eval.threshold_min, params.cam_eval.threshold_max, params.cam_eval.threshold_step
    )
    miou, high_res = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            out = Path(tmp) / precision
            cfg = params.cam_infer.model_copy(update={"precision": precision})
            dump_cams(model, dataset, cfg, out, progress=False)
            miou[precision] = evaluate_cams(out, run.data_root, "train", thresholds, progress=False)["miou"]
            high_res[precision] = [load_cam_file(out / f"{i}.npz")["high_res"].astype(np.float32) for i in dataset.ids]
    check = check_close("CAM files, bf16 vs fp32", high_res["bf16"], high_res["fp32"], BF16_SAME_WORK)
    deviation = max_abs_difference(high_res["bf16"], high_res["fp32"])
    note = f"{len(dataset)} images, {model_path}"
    return [
        Record(STAGE, SEED_METRIC, miou["bf16"], miou["fp32"], SYNTHETIC_TARGETS[SEED_METRIC], check, note),
        Record(STAGE, FILE_METRIC, deviation, 0.0, SYNTHETIC_TARGETS[FILE_METRIC], check, note),
    ]
