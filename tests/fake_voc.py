"""Build tiny VOC2012 look-alike folders in tmp_path for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixsup.data import voc_format
from pixsup.files import save_jpeg, save_png, write_text

FIXTURES = Path(__file__).parent / "data" / "voc_sample"


def image(height: int = 24, width: int = 32) -> np.ndarray:
    """A smooth colour ramp, which JPEG keeps nearly intact (noise would not survive)."""
    rows, cols = np.mgrid[0:height, 0:width]
    ramp = np.stack([rows * 200 // max(1, height - 1), cols * 200 // max(1, width - 1), np.full_like(rows, 90)], -1)
    return ramp.astype(np.uint8)


def block_mask(height: int = 24, width: int = 32, class_id: int = 15) -> np.ndarray:
    """Background with one block of ``class_id`` and a 255 border ring around it."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[4:16, 6:20] = voc_format.IGNORE_INDEX
    mask[5:15, 7:19] = class_id
    return mask


def write_item(
    root: Path,
    image_id: str,
    pixels: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    aug_mask: bool = False,
    objects: list[int] | None = None,
) -> None:
    """Write the files of one id: JPEG, optional mask (palette, or grayscale in the Aug folder), optional XML."""
    pixels = image() if pixels is None else pixels
    save_jpeg(root / voc_format.JPEG_DIR / f"{image_id}.jpg", pixels)
    if mask is not None:
        if aug_mask:
            save_png(root / voc_format.MASK_AUG_DIR / f"{image_id}.png", mask)
        else:
            save_png(root / voc_format.MASK_DIR / f"{image_id}.png", mask, palette=voc_format.voc_palette())
    if objects is not None:
        height, width = pixels.shape[:2]
        boxes = [(class_id, (1, 1, width, height)) for class_id in objects]
        xml_path = root / voc_format.ANNOTATION_DIR / f"{image_id}.xml"
        write_text(xml_path, voc_format.write_annotation_xml(xml_path, image_id, width, height, boxes))


def write_split(root: Path, split: str, ids: list[str]) -> None:
    write_text(root / voc_format.SPLIT_DIR / f"{split}.txt", "".join(f"{i}\n" for i in ids))
