"""python -m benchmarks --gpu: CAM training and make_cams on one GPU, with and without each optimisation.

Optimisations: bf16 autocast, channels_last, cudnn.benchmark, pinned host
memory with non-blocking copies, torch.compile. Each workload runs with none of
them, with all, and with all but one of each in turn; ratios are against
"none". Figures:

- CAM training: images/s of the `full` variant (MainNet + frozen SupportNet,
  RCM + MAM) with ResNet-50 on 512 px crops, batch 16, and its peak memory;
  channels_last is MainNet's: the frozen SupportNet always runs folded and
  channels_last, as in training;
- make_cams: images/s of multi-scale + flip inference (the default scales) on
  VOC-sized images, and its peak memory. Pinned memory does not apply (one
  image per copy).

A configuration that fails (e.g. torch.compile without a compiler) is
reported with its error; the others still run.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pixsup.cam.inference import cam_maps
from pixsup.cam.training import compute_losses
from pixsup.config import AugmentConfig, CamInferConfig, CamTrainConfig
from pixsup.files import write_text
from pixsup.models import create_model
from pixsup.models.inference import inference_model
from pixsup.models.support import SupportNet

from .measure import Record, table

OPTIMISATIONS = ("bf16", "channels_last", "cudnn_benchmark", "pinned", "compile")
VOC_SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (281, 500))


@dataclass(frozen=True)
class Sizes:
    backbone: str = "resnet50"
    batch: int = 16
    crop: int = 512
    train_steps: int = 20
    warmup_steps: int = 5  # compile and cudnn.benchmark do their work here
    images: int = 20


QUICK = Sizes(batch=8, crop=320, train_steps=5, warmup_steps=3, images=5)


def configurations() -> list[tuple[str, frozenset[str]]]:
    every = frozenset(OPTIMISATIONS)
    return [("none", frozenset()), ("all", every)] + [(f"all but {o}", every - {o}) for o in OPTIMISATIONS]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset(device: torch.device, opts: frozenset[str]) -> None:
    torch.backends.cudnn.benchmark = "cudnn_benchmark" in opts
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _autocast(device: torch.device, opts: frozenset[str]):
    return torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in opts else nullcontext()


def train_images_per_second(device: torch.device, opts: frozenset[str], sizes: Sizes) -> tuple[float, float | None]:
    """(images/s, peak MB) of `full` training steps on one host batch copied to the device every step."""
    _reset(device, opts)
    cfg = CamTrainConfig(backbone=sizes.backbone, batch_size=sizes.batch, augment=AugmentConfig(crop_size=sizes.crop))
    main = create_model(sizes.backbone, proj_dim=cfg.proj_dim, pretrained="none").to(device).train()
    support = SupportNet(main, "frozen")
    memory_format = torch.channels_last if "channels_last" in opts else torch.contiguous_format
    main.to(memory_format=memory_format)  # MainNet only: the frozen SupportNet is channels_last as in training
    if "compile" in opts:
        main, support.net = torch.compile(main), torch.compile(support.net)
    optimizer = torch.optim.SGD([p for p in main.parameters() if p.requires_grad], lr=cfg.lr, momentum=0.9)
    host_images = torch.randn(sizes.batch, 3, sizes.crop, sizes.crop)
    host_labels = (torch.rand(sizes.batch, 20) < 0.15).float()
    host_labels[:, 0] = 1.0
    if "pinned" in opts:
        host_images, host_labels = host_images.pin_memory(), host_labels.pin_memory()

    def step() -> None:
        images = host_images.to(device, non_blocking="pinned" in opts).contiguous(memory_format=memory_format)
        labels = host_labels.to(device, non_blocking="pinned" in opts)
        with _autocast(device, opts):
            terms = compute_losses(main, support, images, labels, cfg, True, True)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    for _ in range(sizes.warmup_steps):
        step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(sizes.train_steps):
        step()
    _synchronize(device)
    return sizes.batch * sizes.train_steps / (time.perf_counter() - started), _peak_mb(device)


def make_cams_images_per_second(device: torch.device, opts: frozenset[str], sizes: Sizes) -> tuple[float, float | None]:
    """(images/s, peak MB) of multi-scale + flip CAMs of VOC-sized images, after one warm pass over them."""
    _reset(device, opts)
    model = inference_model(create_model(sizes.backbone, pretrained="none"), device)
    if "channels_last" not in opts:
        model.to(memory_format=torch.contiguous_format)
    if "compile" in opts:
        model = torch.compile(model, dynamic=True)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, size=(*VOC_SIZES[i % len(VOC_SIZES)], 3), dtype=np.uint8) for i in range(sizes.images)
    ]
    cfg = CamInferConfig()
    precision = "bf16" if "bf16" in opts else "fp32"

    def all_images() -> None:
        for image in images:
            cam_maps(model, image, np.array([0, 14]), cfg.scales, cfg.flip, cfg.cam_stride, device, precision)

    all_images()
    _synchronize(device)
    started = time.perf_counter()
    all_images()
    _synchronize(device)
    return len(images) / (time.perf_counter() - started), _peak_mb(device)


def measure(device: torch.device, sizes: Sizes) -> list[Record]:
    """Every workload in every configuration; ratios against "none"."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    scales = len(CamInferConfig().scales)
    workloads = {
        f"train_cam {sizes.backbone} {sizes.crop} px, batch {sizes.batch}, full": train_images_per_second,
        f"make_cams {sizes.backbone}, VOC sizes, {scales} scales + flip": make_cams_images_per_second,
    }
    records = []
    for workload, measure_one in workloads.items():
        baseline = None
        for config, opts in configurations():
            print(f"{workload}: {config} ...", file=sys.stderr, flush=True)
            try:
                rate, peak = measure_one(device, opts, sizes)
            except Exception as exc:  # noqa: BLE001 - one failing configuration must not end the run
                records.append(
                    Record(
                        f"gpu {workload}",
                        f"images/s, {config}",
                        None,
                        baseline,
                        note=f"{name}; failed: {type(exc).__name__}: {str(exc)[:300]}",
                    )
                )
                continue
            baseline = rate if config == "none" else baseline
            peak_note = f"; peak memory {peak:.0f} MB" if peak is not None else ""
            records.append(Record(f"gpu {workload}", f"images/s, {config}", rate, baseline, note=f"{name}{peak_note}"))
    return records


def main(out: Path, quick: bool) -> int:
    if not torch.cuda.is_available():
        print(
            f"error: the GPU benchmark needs a CUDA device, and torch {torch.__version__} finds none "
            f"(torch.cuda.is_available() is False); the CPU stages run without --gpu",
            file=sys.stderr,
        )
        return 2
    records = [r.as_json() for r in measure(torch.device("cuda"), QUICK if quick else Sizes())]
    write_text(out, json.dumps(records, indent=2) + "\n")
    print(table(records))
    print(f"\nwritten: {out}")
    return 0
