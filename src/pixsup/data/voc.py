"""Read a PASCAL VOC 2012 folder: split lists, images, masks and image-level labels.

Every failure is a :class:`DataError` whose message starts with the full path of
the file at fault and says what is wrong with it, so a broken dataset is fixed
from the message alone.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .voc_format import (
    ANNOTATION_DIR,
    CLASS_ID,
    JPEG_DIR,
    MASK_AUG_DIR,
    MASK_DIR,
    NUM_FG_CLASSES,
    SPLIT_DIR,
)


class ClsLabels(dict):
    """``{image id: float32 (20,) multi-hot}`` that remembers the file it came from.

    A plain dict works wherever this is accepted; the ``source`` only makes
    "id missing" errors name the file.
    """

    def __init__(self, labels: dict[str, np.ndarray], source: str | os.PathLike) -> None:
        super().__init__(labels)
        self.source = Path(source)


def read_split(root: str | os.PathLike, split: str, allow_duplicates: bool = False) -> list[str]:
    """Read the ids of ``<root>/ImageSets/Segmentation/<split>.txt``.

    Args:
        root: The VOC2012 folder.
        split: Name of the list, e.g. ``train`` or ``train_aug``.
        allow_duplicates: Keep an id listed twice (for validation, which reports it) instead of
            refusing the list: a step would count it twice.

    Returns:
        The ids in file order (blank lines skipped, whitespace and a UTF-8 byte-order mark stripped).

    Raises:
        DataError: The list file is missing (the message lists the split files that do exist),
            is not UTF-8 text, lists no ids, or lists an id twice.
    """
    split_dir = Path(root) / SPLIT_DIR
    path = split_dir / f"{split}.txt"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        existing = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
        found = ", ".join(existing) if existing else f"none ({split_dir} holds no .txt lists)"
        raise DataError(f"{path}: split file not found; existing splits: {found}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path}: the split lists no ids")
    if not allow_duplicates:
        seen: set[str] = set()
        repeated = [i for i in ids if i in seen or seen.add(i)]
        if repeated:
            raise DataError(
                f"{path}: {len(repeated)} ids listed more than once, e.g. {repeated[:3]}; "
                "each image must be listed once"
            )
    return ids


def load_cls_labels_npy(path: str | os.PathLike) -> ClsLabels:
    """Load IRN's ``cls_labels.npy`` (opt-in) as ``{"2007_000032": float32 (20,)}``.

    Warning:
        The file is a Python pickle: loading it can run arbitrary code. Only
        load a copy you trust; by default labels come from the XML annotations.

    Args:
        path: The ``cls_labels.npy`` file (a pickled dict keyed by the id
            without its underscore as an integer, e.g. ``2007000032``).

    Returns:
        The labels keyed by VOC id (underscore re-inserted after the year).

    Raises:
        DataError: The file is missing, not a pickled dict, or a value is not a
            20-long vector.
    """
    path = Path(path)
    try:
        raw = np.load(path, allow_pickle=True).item()
    except FileNotFoundError:
        raise DataError(f"{path}: cls_labels file not found") from None
    except Exception as exc:  # noqa: BLE001 - np.load/unpickling raise many types on bad input
        raise DataError(f"{path}: not a pickled cls_labels dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(raw).__name__}")
    labels: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        digits = str(int(key))
        vector = np.asarray(value, dtype=np.float32)
        if vector.shape != (NUM_FG_CLASSES,):
            raise DataError(f"{path}: entry {digits} has shape {vector.shape}, expected ({NUM_FG_CLASSES},)")
        labels[f"{digits[:4]}_{digits[4:]}"] = vector
    return ClsLabels(labels, path)


EXIF_ORIENTATION = 0x0112
# How a viewer shows a photo with each EXIF orientation (1 is upright).
ORIENTATIONS = {
    2: "mirrored",
    3: "turned 180 degrees",
    4: "flipped upside down",
    5: "transposed",
    6: "turned a quarter clockwise",
    7: "transversed",
    8: "turned a quarter counter-clockwise",
}


def _decode(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path`` so that truncated or corrupt files fail here, not later."""
    if not path.is_file():
        raise DataError(f"{path}: {what} missing")
    try:
        with Image.open(path) as image:
            image.load()  # decodes every byte; the image stays usable once the file closes
            return image
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, struct.error, ... on bad bytes
        raise DataError(f"{path}: cannot decode {what} ({type(exc).__name__}: {exc})") from None


class VocIndex:
    """Paths and decoded contents of the items of one VOC2012 folder.

    Args:
        root: The VOC2012 folder (holds JPEGImages, ImageSets, ...).
        cls_labels: Optional image-level labels keyed by id (e.g. from
            :func:`load_cls_labels_npy`); when given they are the only label
            source.
    """

    def __init__(self, root: str | os.PathLike, cls_labels: dict[str, np.ndarray] | None = None) -> None:
        self.root = Path(root)
        self.cls_labels = cls_labels

    def image_path(self, image_id: str) -> Path:
        """``JPEGImages/<id>.jpg``, whether or not it exists."""
        return self.root / JPEG_DIR / f"{image_id}.jpg"

    def annotation_path(self, image_id: str) -> Path:
        """``Annotations/<id>.xml``, whether or not it exists."""
        return self.root / ANNOTATION_DIR / f"{image_id}.xml"

    def mask_candidates(self, image_id: str) -> tuple[Path, Path]:
        """Where a mask may live, in order of preference (official, then SBD-augmented)."""
        return self.root / MASK_DIR / f"{image_id}.png", self.root / MASK_AUG_DIR / f"{image_id}.png"

    def mask_path(self, image_id: str) -> Path | None:
        """The first existing mask of :meth:`mask_candidates`, or None."""
        return next((p for p in self.mask_candidates(image_id) if p.is_file()), None)

    def load_image(self, image_id: str) -> np.ndarray:
        """The image as uint8 ``H x W x 3`` RGB.

        Raises:
            DataError: The JPEG is missing, truncated or corrupt, or carries an EXIF orientation
                other than upright (its stored pixels would not match what its mask was drawn on).
        """
        path = self.image_path(image_id)
        image = _decode(path, "image")
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        if orientation != 1:
            # Viewers rotate such a photo, masks drawn on it follow the view, CAMs the stored pixels.
            shown = ORIENTATIONS.get(orientation, "rotated")
            raise DataError(
                f"{path}: EXIF orientation {orientation} (viewers show it {shown}), while masks and CAMs use the "
                "stored pixels; save the image upright without the tag and check its mask"
            )
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def load_mask(self, image_id: str) -> np.ndarray | None:
        """The class-index mask as uint8 ``H x W``, or None when the id has no mask.

        Palette PNGs give their raw indices (never the palette colours).

        Raises:
            DataError: The PNG is truncated or corrupt, or not 8-bit 'P'/'L'.
        """
        path = self.mask_path(image_id)
        if path is None:
            return None
        image = _decode(path, "mask")
        if image.mode not in ("P", "L"):
            raise DataError(f"{path}: mode '{image.mode}', expected 8-bit 'P' or 'L'")
        return np.asarray(image, dtype=np.uint8)

    def image_labels(self, image_id: str) -> np.ndarray:
        """The image-level multi-hot label, float32 ``(20,)`` with index = class id - 1.

        See :meth:`image_labels_and_source` for where it comes from.
        """
        return self.image_labels_and_source(image_id)[0]

    def image_labels_and_source(self, image_id: str) -> tuple[np.ndarray, str]:
        """The image-level label and the file it was read from.

        Sources, first that applies: ``cls_labels`` when given; else the object
        names of ``Annotations/<id>.xml``; else the values 1..20 of the mask.

        Raises:
            DataError: The id is missing from ``cls_labels``, the XML is bad or
                names an unknown class, the mask is bad, or no source exists.
        """
        if self.cls_labels is not None:
            source = str(getattr(self.cls_labels, "source", "cls_labels (in-memory dict)"))
            if image_id not in self.cls_labels:
                raise DataError(f"{source}: no entry for id {image_id}")
            # A copy: callers may wrap it in a tensor and edit it in place.
            return np.array(self.cls_labels[image_id], dtype=np.float32), source
        xml_path = self.annotation_path(image_id)
        if xml_path.is_file():
            return self._labels_from_xml(xml_path), str(xml_path)
        mask = self.load_mask(image_id)
        if mask is not None:
            labels = np.zeros(NUM_FG_CLASSES, dtype=np.float32)
            present = np.unique(mask)
            present = present[(present >= 1) & (present <= NUM_FG_CLASSES)]
            labels[present - 1] = 1.0
            return labels, str(self.mask_path(image_id))
        looked = ", ".join(str(p) for p in (xml_path, *self.mask_candidates(image_id)))
        raise DataError(f"no label source for id {image_id}: looked for {looked}")

    @staticmethod
    def _labels_from_xml(path: Path) -> np.ndarray:
        try:
            tree = ET.parse(path)
        except ET.ParseError as exc:
            raise DataError(f"{path}: cannot parse XML ({exc})") from None
        labels = np.zeros(NUM_FG_CLASSES, dtype=np.float32)
        for obj in tree.getroot().iter("object"):
            name = (obj.findtext("name") or "").strip()
            class_id = CLASS_ID.get(name, 0)
            if class_id == 0:  # "background" is not an object class either
                raise DataError(f"{path}: unknown class name '{name}'")
            labels[class_id - 1] = 1.0
        return labels
