"""Folders of label PNGs (pseudo masks, segmentation predictions): one palette PNG per image and a manifest.

A folder is complete when its ``index.json`` (``ids`` and what made them) exists:
it is written last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..files import save_png, write_json
from .voc_format import voc_palette

MANIFEST = "index.json"


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """A palette PNG of VOC class ids (the VOC masks' own format)."""
    save_png(path, labels, palette=voc_palette())


def write_manifest(out_dir: str | os.PathLike, ids: list[str], **fields: Any) -> None:
    """``index.json``, written last: its presence means every PNG of the split is there."""
    write_json(Path(out_dir) / MANIFEST, {"ids": ids, **fields})
