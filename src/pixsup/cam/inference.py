"""Multi-scale, flip-augmented CAM inference of a trained CAM network (the CAM file: :mod:`pixsup.cam.cam_files`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data.transforms import normalize_image, shrink_to_max_side
from ..models.inference import inference_model
from .cam_files import save_cam_file
from .refine import prototype_similarity

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ..config import CamInferConfig, RefineConfig


PRECISIONS = ("fp32", "bf16")
# IRN sums every scale's CAM at the image size rounded up to a multiple of its network's output stride
# (16, imutils.get_strided_up_size), then crops: cell i of the scale-1 CAM covers pixels [16 i, 16 i + 16).


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of the image at ``scale``: IRN's ``imutils.pil_rescale`` rounding,
    ``int(np.round(side * scale))``, i.e. to the nearest integer with halves to even (at least 1)."""
    return max(1, int(np.round(height * scale))), max(1, int(np.round(width * scale)))


def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """The uint8 H x W x 3 image at ``scale`` as IRN's MSF dataset makes it: PIL bicubic on the uint8
    image (:func:`scaled_size`); scale 1, or a size that does not change, gives the image itself."""
    height, width = image.shape[:2]
    size = scaled_size(height, width, scale)
    if scale == 1.0 or size == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.Resampling.BICUBIC))


@torch.no_grad()
def cam_maps(
    model: nn.Module,
    image: np.ndarray,
    class_index: np.ndarray,
    scales: Sequence[float] = (1.0,),
    flip: bool = True,
    cam_stride: int = 4,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_side: int | None = None,
    refine: RefineConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 CAMs (low-resolution grid, image size) of one uint8 H x W x 3 image for
    the label indices ``class_index`` (class id - 1).

    As IRN's ``make_cam``: each scale's input is the uint8 image resized by PIL bicubic
    (:func:`rescale_image`), then normalised; it runs with its mirror as one batch of two. The
    ReLU'd CAMs of every scale are resized bilinearly to the stride-``cam_stride`` grid
    (ceil(H / cam_stride)), and to the image size rounded up to a multiple of the network's output
    stride (``model.output_stride``; IRN's is 16) and cropped to it (``high_res``); each sum is divided
    by its per-class max.
    ``precision`` ``bf16`` runs the network under bfloat16 autocast (fast where the hardware has
    bf16 units: CUDA, AMX CPUs). An image whose long side exceeds ``max_side`` is first shrunk to
    it (antialiased), so the network's memory does not grow with the photo; the CAMs are still
    given at image size. ``refine`` (method ``prototype``) replaces each scale's ReLU'd CAMs by
    their :func:`~pixsup.cam.refine.prototype_similarity` maps before the sums.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' ({' | '.join(PRECISIONS)})")
    device = torch.device(device)
    height, width = image.shape[:2]
    low_size = (math.ceil(height / cam_stride), math.ceil(width / cam_stride))
    if max_side is not None:
        image = shrink_to_max_side(image, max_side)  # before anything grows with the photo's size
    work_height, work_width = image.shape[:2]
    multiple = model.output_stride
    up_size = tuple(-(-side // multiple) * multiple for side in (work_height, work_width))
    low = torch.zeros(len(class_index), *low_size, device=device)
    # Summed at the working size; a shrunk photo's sum is enlarged to its size once, at the end.
    high = torch.zeros(len(class_index), *up_size, device=device)
    classes = torch.as_tensor(class_index, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for scale in scales if len(class_index) else ():
        x = normalize_image(rescale_image(image, scale)).unsqueeze(0).to(device)
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        cam = _scale_cams(model, batch, classes, autocast, refine)
        cam = cam[0:1] + cam[1:2].flip(-1) if flip else cam
        low += F.interpolate(cam, size=low_size, mode="bilinear", align_corners=False)[0]
        high += F.interpolate(cam, size=up_size, mode="bilinear", align_corners=False)[0]
    high = high[:, :work_height, :work_width]
    if (work_height, work_width) != (height, width):
        high = F.interpolate(high[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    if len(class_index):
        low /= low.flatten(1).amax(dim=1)[:, None, None] + 1e-5
        high /= high.flatten(1).amax(dim=1)[:, None, None] + 1e-5
    return low, high


def _scale_cams(
    model: nn.Module, batch: torch.Tensor, classes: torch.Tensor, autocast, refine: RefineConfig | None
) -> torch.Tensor:
    """The ReLU'd CAMs (N, K, h, w) of the label's classes for one scale's ``batch``, refined if asked."""
    if refine is None or refine.method == "none":
        with autocast:
            cam = model(batch, with_proj=False)["cam"]
        return F.relu(cam.float())[:, classes]
    projection = refine.features == "projection"
    with autocast:
        out = model(batch, with_proj=projection, with_features=not projection)
    cam = F.relu(out["cam"].float())[:, classes]
    features = out["proj" if projection else "features"].float()
    return prototype_similarity(cam, features, refine.threshold)


def infer_cams(
    model: nn.Module,
    image: np.ndarray,
    label: np.ndarray,
    scales: Sequence[float] = (1.0,),
    flip: bool = True,
    cam_stride: int = 4,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_side: int | None = None,
    refine: RefineConfig | None = None,
) -> dict[str, np.ndarray]:
    """The CAM file contents of one image (uint8 H x W x 3) for the classes of its label
    (float (20,) multi-hot); see :func:`cam_maps`."""
    keys = np.nonzero(label)[0]
    low, high = cam_maps(model, image, keys, scales, flip, cam_stride, device, precision, max_side, refine)
    return {
        "keys": (keys + 1).astype(np.int64),
        "cam": low.cpu().numpy().astype(np.float16),
        "high_res": high.cpu().numpy().astype(np.float16),
    }


def dump_cams(
    model: nn.Module,
    dataset: Dataset,
    cfg: CamInferConfig,
    out_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    desc: str = "make_cams",
    progress: bool = True,
) -> None:
    """Write ``<out_dir>/<id>.npz`` for every item of ``dataset`` (a CamInferDataset or a Subset of one)
    with :func:`inference_model` of ``model`` at ``cfg.precision``.

    Images are decoded by ``cfg.num_workers`` loader processes while the model runs.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from ..data.datasets import single_collate
    from ..runtime.workers import start_worker

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = inference_model(model, device)
    loader = DataLoader(
        dataset, batch_size=1, num_workers=cfg.num_workers, collate_fn=single_collate, worker_init_fn=start_worker
    )
    for item in tqdm(loader, desc=desc, disable=not progress):
        cams = infer_cams(
            model,
            item["image"],
            item["label"],
            cfg.scales,
            cfg.flip,
            cfg.cam_stride,
            device,
            cfg.precision,
            cfg.max_side,
            cfg.refine,
        )
        save_cam_file(out_dir / f"{item['id']}.npz", cams)
