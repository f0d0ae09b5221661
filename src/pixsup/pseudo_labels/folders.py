"""Writing one label PNG per image of a split, in parallel where the work is plain numpy, with a manifest."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm import tqdm

from ..cams import CamFileError, load_cam_file
from ..data.voc import VocIndex
from ..data.voc_format import voc_palette
from ..io import save_png, write_json

MANIFEST = "index.json"


def load_image_and_cams(root: str | os.PathLike, cams_dir: str | os.PathLike,
                        image_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An image and its checked CAM file (keys, shapes against the image)."""
    image = VocIndex(root).load_image(image_id)
    return image, load_cam_file(Path(cams_dir) / f"{image_id}.npz", image_size=image.shape[:2])


def require_cam_dir(cams_dir: str | os.PathLike) -> None:
    if not (Path(cams_dir) / "index.json").is_file():
        raise CamFileError(f"{cams_dir}: no index.json (make_cams has not finished, or shards not gathered)")


def write_label_png(path: Path, labels: np.ndarray) -> None:
    save_png(path, labels, palette=voc_palette())


def map_ids(work: Callable[[str], Any], ids: list[str], workers: int, desc: str, progress: bool) -> Iterable[Any]:
    """``work(id)`` for every id, in order; ``workers`` > 1 uses that many processes."""
    if workers <= 1:
        yield from (work(i) for i in tqdm(ids, desc=desc, unit="img", disable=not progress))
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from tqdm(pool.imap(work, ids, chunksize=4), total=len(ids), desc=desc, unit="img",
                        disable=not progress)


def write_manifest(out_dir: str | os.PathLike, ids: list[str], **fields: Any) -> None:
    """``index.json``, written last: its presence means every PNG of the split is there."""
    write_json(Path(out_dir) / MANIFEST, {"ids": ids, **fields})
