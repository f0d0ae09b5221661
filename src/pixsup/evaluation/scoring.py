"""Evaluation against ground-truth masks: CAM seeds (threshold sweep) and folders of label PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..cam.cam_files import load_cam_file
from ..data.label_folders import read_label_png, require_finished
from ..data.voc import DataError, VocIndex, read_split
from ..data.voc_format import IGNORE_INDEX, NUM_CLASSES
from ..runtime.read_ahead import read_ahead
from .metrics import ThresholdSweep, invalid_values, pair_counts, scores


def _ground_truth(index: VocIndex, image_id: str) -> np.ndarray:
    mask = index.load_mask(image_id)
    if mask is None:
        raise DataError(f"{index.mask_candidates(image_id)[0]}: no ground-truth mask for '{image_id}'")
    return mask


def evaluate_cams(
    cams_dir: str | Path, root: str | Path, split: str, thresholds: Sequence[float], progress: bool = True
) -> dict:
    """Threshold-sweep scores (see ``ThresholdSweep.result``) over every id of ``split``."""
    cams_dir = Path(cams_dir)
    index = VocIndex(root)
    ids = read_split(root, split)
    sweep = ThresholdSweep(thresholds)

    def read(image_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        mask = _ground_truth(index, image_id)
        return mask, load_cam_file(cams_dir / f"{image_id}.npz", image_size=mask.shape)

    for image_id, (mask, cams) in tqdm(
        read_ahead(read, ids), total=len(ids), desc=f"eval_cams {split}", disable=not progress
    ):
        try:
            sweep.add(cams["high_res"], cams["keys"], mask)
        except ValueError as exc:
            raise DataError(f"{index.mask_path(image_id)}: {exc}") from None
    result = sweep.result()
    result["images"] = len(ids)
    result["split"] = split
    return result


def per_image_cam_confusions(
    cams_dir: str | Path, root: str | Path, split: str, threshold: float, progress: bool = True
) -> tuple[list[str], np.ndarray]:
    """The ids of ``split`` and each image's (C, C) seed confusion matrix at one background threshold
    (the labelling of :func:`evaluate_cams`): what a bootstrap over images resamples."""
    cams_dir = Path(cams_dir)
    index = VocIndex(root)
    ids = read_split(root, split)
    confusions = np.zeros((len(ids), NUM_CLASSES, NUM_CLASSES), np.int64)

    def count(image_id: str) -> np.ndarray:
        mask = _ground_truth(index, image_id)
        cams = load_cam_file(cams_dir / f"{image_id}.npz", image_size=mask.shape)
        sweep = ThresholdSweep([threshold])
        try:
            sweep.add(cams["high_res"], cams["keys"], mask)
        except ValueError as exc:
            raise DataError(f"{index.mask_path(image_id)}: {exc}") from None
        return sweep.confusions()[0]

    for i, (_, conf) in enumerate(
        tqdm(read_ahead(count, ids), total=len(ids), desc=f"per-image {split}", disable=not progress)
    ):
        confusions[i] = conf
    return ids, confusions


def evaluate_label_folder(masks_dir: str | Path, root: str | Path, split: str, progress: bool = True) -> dict:
    """mIoU and per-class scores of ``<masks_dir>/<id>.png`` over every id of ``split``
    (:func:`score_label_folder` without the per-image confusions)."""
    return score_label_folder(masks_dir, root, split, progress)[0]


def score_label_folder(
    masks_dir: str | Path, root: str | Path, split: str, progress: bool = True
) -> tuple[dict, list[str], np.ndarray]:
    """``(metrics, ids, confusions)``: mIoU and per-class scores of ``<masks_dir>/<id>.png`` over every
    id of ``split``, the ids, and each image's (C, C) confusion matrix (what a bootstrap over images
    resamples), from one pass over the files.

    Raises:
        DataError: a mask or ground truth is missing, unreadable, of another size or holds values
            that are not class ids (255 allowed in the ground truth); the message names it.
    """
    masks_dir = Path(masks_dir)
    require_finished(masks_dir)
    index = VocIndex(root)
    ids = read_split(root, split)
    missing = [i for i in ids if not (masks_dir / f"{i}.png").is_file()]
    if missing:
        raise DataError(f"{masks_dir}: no PNG for {len(missing)} ids of '{split}', e.g. {', '.join(missing[:5])}")
    # One (ground truth, prediction) pair histogram for the split; its top-left corner is the confusion matrix.
    pairs = np.zeros((256, 256), np.int64)
    confusions = np.zeros((len(ids), NUM_CLASSES, NUM_CLASSES), np.int64)

    def count(image_id: str) -> np.ndarray:
        # Counted in the reader threads too: decoding dominates, and images are independent.
        gt, pred = _ground_truth(index, image_id), read_label_png(masks_dir / f"{image_id}.png")
        if pred.shape != gt.shape:
            raise DataError(f"{masks_dir / image_id}.png: size {pred.shape} differs from the ground truth's {gt.shape}")
        return pair_counts(gt, pred)

    images = tqdm(read_ahead(count, ids), total=len(ids), desc=f"eval {split}", disable=not progress)
    for i, (image_id, counts) in enumerate(images):
        bad_gt, bad_pred = invalid_values(counts)
        if bad_pred:
            raise DataError(f"{masks_dir / image_id}.png: value {bad_pred[-1]} is not a class id 0..20")
        if bad_gt:
            raise DataError(
                f"{index.mask_path(image_id)}: values {bad_gt} are neither class ids 0..20 nor {IGNORE_INDEX}"
            )
        pairs += counts
        confusions[i] = counts[:NUM_CLASSES, :NUM_CLASSES]
    result = scores(pairs[:NUM_CLASSES, :NUM_CLASSES])
    result.update(images=len(ids), split=split, masks=str(masks_dir))
    return result, ids, confusions
