"""Find every problem of a VOC folder at once, each message naming the file at fault."""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
from tqdm import tqdm

from .voc import DataError, VocIndex, read_split
from .voc_format import IGNORE_INDEX, NUM_FG_CLASSES, SPLIT_DIR


def check_item(index: VocIndex, image_id: str, require_mask: bool, image: np.ndarray | None = None) -> list[str]:
    """All problems of one id: image, mask and image-level label.

    Args:
        index: The VOC folder.
        image_id: The id to check.
        require_mask: Report a missing mask (segmentation splits); otherwise a
            mask is checked only when present.
        image: The image, when the caller has decoded it already (it is not decoded again).

    Returns:
        One message per problem, each naming the file; empty when the id is fine.
    """
    problems: list[str] = []
    image_shape: tuple[int, ...] | None = None
    try:
        image_shape = (index.load_image(image_id) if image is None else image).shape[:2]
    except DataError as exc:
        problems.append(str(exc))

    mask_path = index.mask_path(image_id)
    if mask_path is None:
        if require_mask:
            looked = ", ".join(str(p) for p in index.mask_candidates(image_id))
            problems.append(f"mask missing for id {image_id}: looked for {looked}")
    else:
        try:
            mask = index.load_mask(image_id)
        except DataError as exc:
            problems.append(str(exc))
        else:
            values = np.unique(mask)
            bad = values[(values > NUM_FG_CLASSES) & (values != IGNORE_INDEX)]
            if bad.size:
                problems.append(f"{mask_path}: values {bad.tolist()} outside 0..{NUM_FG_CLASSES} and {IGNORE_INDEX}")
            if image_shape is not None and mask.shape != image_shape:
                problems.append(
                    f"{mask_path}: size {_hw(mask.shape)} (h x w) differs from image "
                    f"{index.image_path(image_id)} {_hw(image_shape)}"
                )

    try:
        labels, source = index.image_labels_and_source(image_id)
        if not labels.any():
            problems.append(f"{source}: label empty for id {image_id} (no foreground class)")
    except DataError as exc:
        problems.append(str(exc))
    # A broken mask that is also the label source fails twice with one message.
    return list(dict.fromkeys(problems))


def validate_split(index: VocIndex, split: str, require_mask: bool, progress: bool = True) -> list[str]:
    """Every problem of every id listed in ``split``, plus problems of the list itself.

    Args:
        index: The VOC folder.
        split: Name of the list under ``ImageSets/Segmentation``.
        require_mask: Passed to :func:`check_item`.
        progress: Show a tqdm bar on stderr.

    Returns:
        All problem messages, split-file problems first.

    Raises:
        DataError: The split file is missing, is not UTF-8 or lists no ids.
    """
    ids = read_split(index.root, split, allow_duplicates=True)
    split_path = index.root / SPLIT_DIR / f"{split}.txt"
    problems = [
        f"{split_path}: id {image_id} listed {count} times" for image_id, count in Counter(ids).items() if count > 1
    ]
    for image_id in tqdm(list(dict.fromkeys(ids)), desc=f"validate {split}", file=sys.stderr, disable=not progress):
        problems.extend(check_item(index, image_id, require_mask))
    return problems


def validate_images(index: VocIndex, split: str, progress: bool = True) -> list[str]:
    """The problems of a split that has images only (test): duplicates, and each image that cannot be
    decoded or is not upright."""
    ids = read_split(index.root, split, allow_duplicates=True)
    split_path = index.root / SPLIT_DIR / f"{split}.txt"
    problems = [f"{split_path}: id {i} listed {count} times" for i, count in Counter(ids).items() if count > 1]
    for image_id in tqdm(list(dict.fromkeys(ids)), desc=f"validate {split}", file=sys.stderr, disable=not progress):
        try:
            index.load_image(image_id)
        except DataError as exc:
            problems.append(str(exc))
    return problems


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"
