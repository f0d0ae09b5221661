"""A miniature local mirror of the VOC 2012 trainval tar and SegmentationClassAug.zip, laid out as the real ones."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pixsup.data.voc_format import voc_palette

TRAIN, VAL, EXTRA = ["2007_000032", "2007_000039"], ["2007_000033"], ["2008_000002", "2008_000003"]


def _png(mask: np.ndarray) -> bytes:
    image = Image.fromarray(mask, mode="P")
    image.putpalette(voc_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _mask(class_id: int) -> np.ndarray:
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 12:36] = class_id
    return mask


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_mirror(folder: Path) -> dict[str, Path]:
    """A miniature of the two real archives, laid out as the real ones are."""
    folder.mkdir(parents=True, exist_ok=True)
    voc = folder / "VOCtrainval_11-May-2012.tar"
    base = "VOCdevkit/VOC2012"
    with tarfile.open(voc, "w") as tar:
        for i, image_id in enumerate(TRAIN + VAL + EXTRA):
            add_member(tar, f"{base}/JPEGImages/{image_id}.jpg", _jpeg(i))
        for image_id in TRAIN + VAL:
            add_member(tar, f"{base}/SegmentationClass/{image_id}.png", _png(_mask(7)))
        add_member(tar, f"{base}/ImageSets/Segmentation/train.txt", "".join(f"{i}\n" for i in TRAIN).encode())
        add_member(tar, f"{base}/ImageSets/Segmentation/val.txt", "".join(f"{i}\n" for i in VAL).encode())
    aug = folder / "SegmentationClassAug.zip"
    with zipfile.ZipFile(aug, "w") as zipped:
        for image_id in TRAIN + VAL + EXTRA:
            zipped.writestr(f"SegmentationClassAug/{image_id}.png", _png(_mask(12)))
        zipped.writestr("__MACOSX/SegmentationClassAug/._2007_000032.png", b"junk")
    return {"voc": voc, "aug": aug}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
