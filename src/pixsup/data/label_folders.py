"""Folders of label PNGs (pseudo masks, segmentation predictions): one palette PNG per image and a manifest.

A folder is complete when its ``index.json`` (``ids`` and what made them) exists:
it is written last, and removed first by :func:`start_label_folder` before a run
writes any PNG, so a killed run never leaves a folder that looks complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..files import remove_stale_temporaries, save_png, write_json
from .voc_format import voc_palette

MANIFEST = "index.json"


def start_label_folder(out_dir: str | os.PathLike) -> None:
    """Before a run writes into ``out_dir``: its manifest goes first, and killed writers' temporary files."""
    out_dir = Path(out_dir)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    if out_dir.is_dir():
        remove_stale_temporaries(out_dir)


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """A palette PNG of VOC class ids (the VOC masks' own format)."""
    save_png(path, labels, palette=voc_palette())


def write_manifest(out_dir: str | os.PathLike, ids: list[str], **fields: Any) -> None:
    """``index.json``, written last: its presence means every PNG of the split is there."""
    write_json(Path(out_dir) / MANIFEST, {"ids": ids, **fields})
