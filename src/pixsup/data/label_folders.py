"""Folders of label PNGs (pseudo masks, segmentation predictions): one palette PNG per image and a manifest.

A folder a step writes is complete when its ``index.json`` (``ids`` and what made
them) exists: :func:`start_label_folder` removes it and leaves an ``.incomplete``
marker before a run writes any PNG, and :func:`write_manifest` writes it and drops
the marker last. Readers refuse a folder with the marker
(:func:`require_finished`), so a killed run never leaves a folder that passes for
a finished one. A folder without either (ground-truth masks) is read as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..files import remove_stale_temporaries, save_png, write_json, write_text
from .voc import DataError
from .voc_format import voc_palette

MANIFEST = "index.json"
INCOMPLETE = ".incomplete"


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """A label PNG (palette or greyscale) as a uint8 array of class ids; DataError if unreadable."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(f"{path}: label PNGs must be palette or greyscale, got mode {image.mode}")
            return np.array(image, dtype=np.uint8)
    except (OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read label PNG ({exc})") from None


def start_label_folder(out_dir: str | os.PathLike) -> None:
    """Before a run writes into ``out_dir``: its manifest goes, the ``.incomplete`` marker comes, and killed
    writers' temporary files go."""
    out_dir = Path(out_dir)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    write_text(out_dir / INCOMPLETE, "a run is writing this folder, or stopped before it finished\n")
    remove_stale_temporaries(out_dir)


def require_finished(folder: str | os.PathLike) -> None:
    """A DataError when a run that writes ``folder`` has not finished it."""
    if (Path(folder) / INCOMPLETE).exists():
        raise DataError(f"{folder}: unfinished (a run stopped while writing it); rerun the step that writes it")


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """A palette PNG of VOC class ids (the VOC masks' own format)."""
    save_png(path, labels, palette=voc_palette())


def write_manifest(out_dir: str | os.PathLike, ids: list[str], **fields: Any) -> None:
    """``index.json``, written last: its presence means every PNG of the split is there."""
    write_json(Path(out_dir) / MANIFEST, {"ids": ids, **fields})
    (Path(out_dir) / INCOMPLETE).unlink(missing_ok=True)
