"""Multi-scale, flip-augmented CAM inference and the per-image CAM file format.

CAM file (``<id>.npz``, one per image):

- ``keys``: int64 (K,), the VOC class ids (1..20) of the image label, ascending;
- ``cam``: float16 (K, ceil(H / stride), ceil(W / stride)), normalised CAMs on
  the low-resolution grid (``cam_infer.cam_stride``, 4 by default);
- ``high_res``: float16 (K, H, W), normalised CAMs at image size.

Normalised: ReLU per scale and flip, summed over all of them, each class map
divided by its maximum (+1e-5), so values lie in [0, 1].
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.transforms import normalize_image
from .io import save_npz
from .models.inference import inference_model

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from .config import CamInferConfig


CAM_KEYS = ("keys", "cam", "high_res")


class CamFileError(ValueError):
    """A CAM file with missing keys or inconsistent shapes; the message names the file."""


PRECISIONS = ("fp32", "bf16")


@torch.no_grad()
def cam_maps(model: nn.Module, image: np.ndarray, class_index: np.ndarray, scales: Sequence[float] = (1.0,),
             flip: bool = True, cam_stride: int = 4, device: torch.device | str = "cpu",
             precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 CAMs (low-resolution grid, image size) of one uint8 H x W x 3 image for
    the label indices ``class_index`` (class id - 1).

    Each scale runs the image and its mirror as one batch of two; ``precision`` ``bf16`` runs the
    network under bfloat16 autocast (fast where the hardware has bf16 units: CUDA, AMX CPUs).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' ({' | '.join(PRECISIONS)})")
    device = torch.device(device)
    height, width = image.shape[:2]
    low_size = (math.ceil(height / cam_stride), math.ceil(width / cam_stride))
    low = torch.zeros(len(class_index), *low_size, device=device)
    high = torch.zeros(len(class_index), height, width, device=device)
    base = normalize_image(image).unsqueeze(0).to(device)
    classes = torch.as_tensor(class_index, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for scale in scales if len(class_index) else ():
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = base if scale == 1.0 else F.interpolate(base, size=size, mode="bilinear", align_corners=False)
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        with autocast:
            cam = model(batch, with_proj=False)["cam"]
        cam = F.relu(cam.float())[:, classes]
        cam = cam[0:1] + cam[1:2].flip(-1) if flip else cam
        low += F.interpolate(cam, size=low_size, mode="bilinear", align_corners=False)[0]
        high += F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)[0]
    if len(class_index):
        low /= low.flatten(1).amax(dim=1)[:, None, None] + 1e-5
        high /= high.flatten(1).amax(dim=1)[:, None, None] + 1e-5
    return low, high


def infer_cams(model: nn.Module, image: np.ndarray, label: np.ndarray, scales: Sequence[float] = (1.0,),
               flip: bool = True, cam_stride: int = 4, device: torch.device | str = "cpu",
               precision: str = "fp32") -> dict[str, np.ndarray]:
    """The CAM file contents of one image (uint8 H x W x 3) for the classes of its label
    (float (20,) multi-hot); see :func:`cam_maps`."""
    keys = np.nonzero(label)[0]
    low, high = cam_maps(model, image, keys, scales, flip, cam_stride, device, precision)
    return {
        "keys": (keys + 1).astype(np.int64),
        "cam": low.cpu().numpy().astype(np.float16),
        "high_res": high.cpu().numpy().astype(np.float16),
    }


def dump_cams(model: nn.Module, dataset: "Dataset", cfg: "CamInferConfig", out_dir: str | os.PathLike,
              device: torch.device | str = "cpu", desc: str = "make_cams", progress: bool = True) -> None:
    """Write ``<out_dir>/<id>.npz`` for every item of ``dataset`` (a CamInferDataset or a Subset of one)
    with :func:`inference_model` of ``model`` at ``cfg.precision``.

    Images are decoded by ``cfg.num_workers`` loader processes while the model runs.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from .data.datasets import single_collate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = inference_model(model, device)
    loader = DataLoader(dataset, batch_size=1, num_workers=cfg.num_workers, collate_fn=single_collate)
    for item in tqdm(loader, desc=desc, disable=not progress):
        cams = infer_cams(model, item["image"], item["label"], cfg.scales, cfg.flip, cfg.cam_stride, device,
                          cfg.precision)
        save_cam_file(out_dir / f"{item['id']}.npz", cams)


def save_cam_file(path: str | os.PathLike, cams: dict[str, np.ndarray]) -> None:
    save_npz(path, **{key: cams[key] for key in CAM_KEYS})


def load_cam_file(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Read and check a CAM file; ``image_size`` (H, W) checks ``high_res`` against the image."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in CAM_KEYS if key not in data.files]
            if missing:
                raise CamFileError(f"{path}: CAM file lacks keys {missing} (has {sorted(data.files)})")
            cams = {key: data[key] for key in CAM_KEYS}
    except CamFileError:
        raise
    except FileNotFoundError:
        raise CamFileError(f"{path}: CAM file not found") from None
    except Exception as exc:  # zip and format errors
        raise CamFileError(f"{path}: unreadable CAM file ({type(exc).__name__}: {exc})") from None
    keys, low, high = cams["keys"], cams["cam"], cams["high_res"]
    if keys.dtype.kind not in "iu":
        raise CamFileError(f"{path}: keys must be integer class ids, got dtype {keys.dtype}")
    if keys.ndim != 1 or low.ndim != 3 or high.ndim != 3 or len(low) != len(keys) or len(high) != len(keys):
        raise CamFileError(
            f"{path}: inconsistent shapes keys {keys.shape}, cam {low.shape}, high_res {high.shape}")
    if len(keys) and (keys.min() < 1 or keys.max() > 20):
        raise CamFileError(f"{path}: keys {keys.tolist()} outside the class ids 1..20")
    if image_size is not None and tuple(high.shape[1:]) != tuple(image_size):
        raise CamFileError(f"{path}: high_res is {tuple(high.shape[1:])}, the image is {tuple(image_size)}")
    return cams


def shard_positions(count: int, shard: int, num_shards: int) -> list[int]:
    """Positions of shard ``shard`` of ``num_shards`` in a list of ``count`` ids: every
    ``num_shards``-th from ``shard`` (balanced, order kept)."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is not in 0..{num_shards - 1}")
    return list(range(shard, count, num_shards))


def manifest_name(shard: int, num_shards: int) -> str:
    """The manifest of one shard; ``gather_manifests`` merges them into ``index.json``."""
    return f"index.shard-{shard}-of-{num_shards}.json"


def gather_manifests(out_dir: str | os.PathLike, num_shards: int) -> dict[str, object]:
    """Merge the shard manifests of ``out_dir`` into ``index.json``, checking every CAM file exists."""
    import json

    from .io import write_json

    out_dir = Path(out_dir)
    ids: list[str] = []
    first: dict[str, object] | None = None
    for shard in range(num_shards):
        path = out_dir / manifest_name(shard, num_shards)
        if not path.is_file():
            raise CamFileError(f"{path}: shard manifest missing; run make_cams --shard {shard}/{num_shards}")
        try:
            part = json.loads(path.read_text())
            ids.extend(part["ids"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CamFileError(f"{path}: not a shard manifest ({type(exc).__name__}: {exc})") from None
        first = first or part
    missing = [i for i in ids if not (out_dir / f"{i}.npz").is_file()]
    if missing:
        raise CamFileError(f"{out_dir}: CAM files missing for {len(missing)} ids, e.g. {missing[:5]}")
    manifest = {key: value for key, value in first.items() if key not in ("ids", "shard", "num_shards")}
    manifest["ids"] = ids
    write_json(out_dir / "index.json", manifest)
    return manifest
