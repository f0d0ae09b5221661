"""The per-image CAM file, its checks, and the manifests of a CAM folder.

CAM file (``<id>.npz``, one per image):

- ``keys``: int64 (K,), the VOC class ids (1..20) of the image label, ascending;
- ``cam``: float16 (K, ceil(H / stride), ceil(W / stride)), normalised CAMs on
  the low-resolution grid (``cam_infer.cam_stride``, 4 by default);
- ``high_res``: float16 (K, H, W), normalised CAMs at image size.

Normalised: ReLU per scale and flip, summed over all of them, each class map
divided by its maximum (+1e-5), so values lie in [0, 1] (:mod:`pixsup.cam.inference`).

A CAM folder is complete when its ``index.json`` exists (``make_cams`` writes it
last, or ``gather_cams`` from the shards' ``index.shard-I-of-N.json``, which must
all name the same weights digest and inference settings). ``make_cams`` removes
``index.json`` and its shard's manifest before it writes any CAM file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from ..data.voc import VocIndex
from ..errors import CamFileError
from ..files import remove_stale_temporaries, save_npz, write_json

CAM_KEYS = ("keys", "cam", "high_res")
INDEX = "index.json"

# np.load parses each array's header with ast.literal_eval, and CPython 3.11's AST builder keeps its
# recursion depth in state that threads share: two reader threads (pixsup.runtime.read_ahead) parsing at
# once can fail with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905,
# seen here once in an evaluation). One CAM file is read at a time; PNG decoding stays in parallel.
_NPZ_READ = threading.Lock()


def _nonfinite(cams: dict[str, np.ndarray]) -> list[str]:
    return [key for key in ("cam", "high_res") if not np.isfinite(cams[key]).all()]


def save_cam_file(path: str | os.PathLike, cams: dict[str, np.ndarray]) -> None:
    """Write a CAM file; maps holding NaN or infinity are never written."""
    broken = _nonfinite(cams)
    if broken:
        raise CamFileError(f"{path}: not written, {' and '.join(broken)} hold NaN or infinity (a broken network)")
    save_npz(path, **{key: cams[key] for key in CAM_KEYS})


def load_cam_file(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Read and check a CAM file; ``image_size`` (H, W) checks ``high_res`` against the image."""
    path = Path(path)
    try:
        with _NPZ_READ, np.load(path, allow_pickle=False) as data:
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
    broken = _nonfinite(cams)
    if broken:
        raise CamFileError(f"{path}: {' and '.join(broken)} hold NaN or infinity")
    if keys.dtype.kind not in "iu":
        raise CamFileError(f"{path}: keys must be integer class ids, got dtype {keys.dtype}")
    if keys.ndim != 1 or low.ndim != 3 or high.ndim != 3 or len(low) != len(keys) or len(high) != len(keys):
        raise CamFileError(f"{path}: inconsistent shapes keys {keys.shape}, cam {low.shape}, high_res {high.shape}")
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


# The fields every shard of one CAM folder shares: one model, one inference setting.
RUN_FIELDS = ("split", "model_sha256", "scales", "flip", "cam_stride", "precision")


def start_cam_folder(out_dir: str | os.PathLike, manifest: str) -> None:
    """Invalidate a CAM folder before any CAM file is (re)written: its ``index.json`` and the shard's own
    ``manifest`` go first, so a run killed half-way never leaves a folder that looks complete; killed
    writers' temporary files go too."""
    out_dir = Path(out_dir)
    for name in {INDEX, manifest}:
        (out_dir / name).unlink(missing_ok=True)
    if out_dir.is_dir():
        remove_stale_temporaries(out_dir)


def gather_manifests(out_dir: str | os.PathLike, num_shards: int) -> dict[str, object]:
    """Merge the shard manifests of ``out_dir`` into ``index.json``, checking that every shard comes from
    the same run (model and inference settings) and that every CAM file exists."""
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
            run = {field: part[field] for field in RUN_FIELDS}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CamFileError(f"{path}: not a shard manifest ({type(exc).__name__}: {exc})") from None
        if first is None:
            first, first_run = part, run
        elif run != first_run:
            differ = [field for field in RUN_FIELDS if run[field] != first_run[field]]
            raise CamFileError(
                f"{path}: made by another run than shard 0 ({', '.join(differ)} differ); "
                f"rerun make_cams for the shards of {out_dir}"
            )
    missing = [i for i in ids if not (out_dir / f"{i}.npz").is_file()]
    if missing:
        raise CamFileError(f"{out_dir}: CAM files missing for {len(missing)} ids, e.g. {missing[:5]}")
    manifest = {key: value for key, value in first.items() if key not in ("ids", "shard", "num_shards")}
    manifest["ids"] = ids
    write_json(out_dir / INDEX, manifest)
    return manifest


def require_cam_dir(cams_dir: str | os.PathLike) -> None:
    """Stop unless ``cams_dir`` is a finished CAM folder."""
    if not (Path(cams_dir) / INDEX).is_file():
        raise CamFileError(f"{cams_dir}: no {INDEX} (make_cams has not finished, or shards not gathered)")


def load_image_and_cams(
    root: str | os.PathLike, cams_dir: str | os.PathLike, image_id: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An image and its checked CAM file (keys, shapes against the image)."""
    image = VocIndex(root).load_image(image_id)
    return image, load_cam_file(Path(cams_dir) / f"{image_id}.npz", image_size=image.shape[:2])
