"""Seed and mask evaluation: images/s of eval_cams and eval_masks against decoding their files alone.

Inputs are written to a temporary VOC folder: VOC-sized ground-truth masks
(objects with a 255 ring, as VOC's), predictions, and CAM files of two classes.
The floor is reading the inputs plainly (``PIL`` for PNGs, ``np.load`` for the
CAM files), one after the other. The output check compares our scores with
the reference evaluators written here: per-image confusion matrices of the
valid pixels, and for the seeds one argmax over [threshold, CAMs] per
threshold, as IRN's evaluation does for a single threshold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pixsup.cam.cam_files import save_cam_file
from pixsup.data.voc_format import IGNORE_INDEX, MASK_DIR, NUM_CLASSES, SPLIT_DIR, voc_palette
from pixsup.evaluation.metrics import scores, sweep_thresholds
from pixsup.evaluation.scoring import evaluate_cams, evaluate_label_folder
from pixsup.files import save_png, write_text

from .context import Options
from .measure import Record, Target, check_equal, interleaved_seconds

STAGE = "evaluation"
# "Within 1.2x of decoding": images/s at least 1 / 1.2 of decoding's.
DECODE_SPEED_SHARE = 1 / 1.2
THRESHOLDS = sweep_thresholds(0.05, 0.60, 0.01)


def _write_inputs(root: Path, count: int, height: int, width: int) -> list[str]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    ids = [f"2100_{i:06d}" for i in range(count)]
    for image_id in ids:
        gt = np.zeros((height, width), np.uint8)
        keys = np.sort(rng.choice(np.arange(1, NUM_CLASSES), size=2, replace=False))
        cams = []
        for key in keys:
            cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
            radius = rng.uniform(0.1, 0.3) * min(height, width)
            distance = np.hypot(yy - cy, xx - cx)
            gt[distance < radius] = key
            gt[np.abs(distance - radius) < 2] = IGNORE_INDEX
            cams.append(np.clip(1 - distance / (2 * radius), 0, 1) ** 2)
        high = np.stack(cams) / np.stack(cams).reshape(2, -1).max(axis=1)[:, None, None]
        pred = np.where(gt == IGNORE_INDEX, 0, gt).astype(np.uint8)
        pred[rng.random((height, width)) < 0.02] = keys[0]
        save_png(root / MASK_DIR / f"{image_id}.png", gt, voc_palette())
        save_png(root / "preds" / f"{image_id}.png", pred, voc_palette())
        save_cam_file(
            root / "cams" / f"{image_id}.npz",
            {
                "keys": keys.astype(np.int64),
                "cam": high[:, ::4, ::4].astype(np.float16),
                "high_res": high.astype(np.float16),
            },
        )
    write_text(root / SPLIT_DIR / "train.txt", "\n".join(ids) + "\n")
    return ids


def _decode_png(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def reference_mask_confusion(root: Path, ids: list[str]) -> np.ndarray:
    """Per image: the valid pixels' confusion matrix, summed."""
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for image_id in ids:
        gt, pred = _decode_png(root / MASK_DIR / f"{image_id}.png"), _decode_png(root / "preds" / f"{image_id}.png")
        valid = gt != IGNORE_INDEX
        conf += np.bincount(NUM_CLASSES * gt[valid].astype(int) + pred[valid], minlength=NUM_CLASSES**2).reshape(
            NUM_CLASSES, NUM_CLASSES
        )
    return conf


def reference_seed_curve(root: Path, ids: list[str]) -> list[float]:
    """mIoU at every threshold: per threshold and image, argmax over [threshold, CAMs] and a confusion matrix."""
    confs = np.zeros((len(THRESHOLDS), NUM_CLASSES, NUM_CLASSES), np.int64)
    for image_id in ids:
        gt = _decode_png(root / MASK_DIR / f"{image_id}.png")
        with np.load(root / "cams" / f"{image_id}.npz") as data:
            cams, keys = data["high_res"].astype(np.float32), np.concatenate([[0], data["keys"]])
        valid = gt != IGNORE_INDEX
        for j, threshold in enumerate(THRESHOLDS.astype(np.float32)):
            pred = keys[np.argmax(np.concatenate([np.full((1, *gt.shape), threshold, np.float32), cams]), axis=0)]
            confs[j] += np.bincount(
                NUM_CLASSES * gt[valid].astype(int) + pred[valid], minlength=NUM_CLASSES**2
            ).reshape(NUM_CLASSES, NUM_CLASSES)
    return [scores(conf)["miou"] for conf in confs]


def run(options: Options) -> list[Record]:
    count, height, width = (4, 60, 80) if options.quick else (40, 375, 500)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = _write_inputs(root, count, height, width)
        masks = evaluate_label_folder(root / "preds", root, "train", progress=False)
        mask_check = check_equal(
            "per-class IoU of the masks",
            list(masks["per_class_iou"].values()),
            list(scores(reference_mask_confusion(root, ids))["per_class_iou"].values()),
        )
        seeds = evaluate_cams(root / "cams", root, "train", THRESHOLDS, progress=False)
        seed_check = check_equal(
            f"seed mIoU at {len(THRESHOLDS)} thresholds",
            [point["miou"] for point in seeds["curve"]],
            reference_seed_curve(root, ids),
        )

        def decode_masks() -> None:
            for image_id in ids:
                _decode_png(root / MASK_DIR / f"{image_id}.png"), _decode_png(root / "preds" / f"{image_id}.png")

        def decode_seeds() -> None:
            for image_id in ids:
                _decode_png(root / MASK_DIR / f"{image_id}.png")
                with np.load(root / "cams" / f"{image_id}.npz") as data:
                    data["keys"], data["cam"], data["high_res"]

        repeats = 1 if options.quick else 5
        seconds = interleaved_seconds(
            {
                "eval_masks": lambda: evaluate_label_folder(root / "preds", root, "train", progress=False),
                "decode_masks": decode_masks,
                "eval_cams": lambda: evaluate_cams(root / "cams", root, "train", THRESHOLDS, progress=False),
                "decode_seeds": decode_seeds,
            },
            repeats,
        )
        reference = interleaved_seconds(
            {"masks": lambda: reference_mask_confusion(root, ids), "seeds": lambda: reference_seed_curve(root, ids)}, 1
        )
    rate = {name: count / s for name, s in seconds.items()}
    size = f"{count} images of {width}x{height}"
    return [
        Record(
            STAGE,
            "eval_masks images/s vs decoding both PNGs alone",
            rate["eval_masks"],
            rate["decode_masks"],
            Target(">=", DECODE_SPEED_SHARE),
            mask_check,
            size,
        ),
        Record(
            STAGE,
            "eval_masks images/s vs per-image confusion matrices",
            rate["eval_masks"],
            count / reference["masks"],
            Target(">=", 1.0),
            mask_check,
        ),
        Record(
            STAGE,
            "eval_cams images/s vs decoding the CAM file and mask alone",
            rate["eval_cams"],
            rate["decode_seeds"],
            Target(">=", DECODE_SPEED_SHARE),
            seed_check,
            f"{size}, 2 classes each, {len(THRESHOLDS)} thresholds",
        ),
        Record(
            STAGE,
            "eval_cams images/s vs an argmax per threshold",
            rate["eval_cams"],
            count / reference["seeds"],
            Target(">=", 1.0),
            seed_check,
        ),
    ]
