"""Segmentation metrics: bincount confusion matrices, IoU/precision/recall, background-threshold sweeps."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .data.voc_format import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = ground truth, columns = prediction; 255 ignored."""
    valid = gt != IGNORE_INDEX
    index = gt[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(conf: np.ndarray) -> dict[str, object]:
    """mIoU (percent) and per-class IoU / precision / recall from a confusion matrix.

    Classes that appear neither in the ground truth nor in the prediction have
    no IoU (null) and do not enter the mean, as in the usual VOC evaluators.
    """
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt_total, pred_total = conf.sum(axis=1), conf.sum(axis=0)
    union = gt_total + pred_total - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        precision = np.where(pred_total > 0, tp / pred_total, np.nan)
        recall = np.where(gt_total > 0, tp / gt_total, np.nan)
    names = CLASS_NAMES[: len(conf)]

    def per_class(values: np.ndarray) -> dict[str, float | None]:
        return {n: (None if np.isnan(v) else round(float(v) * 100, 3)) for n, v in zip(names, values)}

    return {
        "miou": round(float(np.nanmean(iou)) * 100, 3) if np.any(union > 0) else float("nan"),
        "per_class_iou": per_class(iou),
        "per_class_precision": per_class(precision),
        "per_class_recall": per_class(recall),
    }


class ThresholdSweep:
    """Confusion matrices of CAM seeds for every background threshold in one pass per image.

    A pixel is labelled with its strongest class when that class's normalised
    CAM exceeds the threshold t, else background (ties go to background, as
    ``argmax`` over [t, CAMs] does). Each pixel is binned once by how many
    thresholds it exceeds, so a sweep costs one bincount per image.
    """

    def __init__(self, thresholds: Sequence[float], num_classes: int = NUM_CLASSES) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        if np.any(np.diff(self.thresholds) <= 0):
            raise ValueError("thresholds must be strictly increasing")
        self.num_classes = num_classes
        n = len(self.thresholds) + 1
        self._hist = np.zeros((n, num_classes, num_classes), dtype=np.int64)

    def add(self, high_res: np.ndarray, keys: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: normalised CAMs (K, H, W) for class ids ``keys``, ground truth (H, W)."""
        valid = gt != IGNORE_INDEX
        gt_valid = gt[valid].astype(np.int64)
        if len(keys):
            cams = high_res[:, valid].astype(np.float32)
            best = cams.argmax(axis=0)
            peak = cams[best, np.arange(cams.shape[1])]
            cls = np.asarray(keys, dtype=np.int64)[best]
            exceeded = np.searchsorted(self.thresholds, peak, side="left")
        else:
            cls = np.zeros_like(gt_valid)
            exceeded = np.zeros_like(gt_valid)
        c = self.num_classes
        index = (exceeded * c + gt_valid) * c + cls
        self._hist += np.bincount(index, minlength=self._hist.size).reshape(self._hist.shape)

    def confusions(self) -> np.ndarray:
        """(T, C, C): confusion matrix at each threshold."""
        hist = self._hist
        # fg_at[j]: pixels exceeding more than j thresholds keep their class at threshold j.
        fg_at = np.cumsum(hist[::-1], axis=0)[::-1][1:]
        bg_at = np.cumsum(hist, axis=0)[:-1].sum(axis=2)
        conf = fg_at.copy()
        conf[:, :, 0] += bg_at
        return conf

    def result(self) -> dict[str, object]:
        """Best threshold, its scores, and the whole mIoU curve."""
        confs = self.confusions()
        curve = [scores(conf)["miou"] for conf in confs]
        best = int(np.nanargmax(curve))
        out = {"miou": curve[best], "best_threshold": round(float(self.thresholds[best]), 4)}
        out.update({k: v for k, v in scores(confs[best]).items() if k != "miou"})
        out["curve"] = [{"threshold": round(float(t), 4), "miou": m} for t, m in zip(self.thresholds, curve)]
        return out


def sweep_thresholds(low: float, high: float, step: float) -> np.ndarray:
    count = int(round((high - low) / step)) + 1
    return np.round(low + step * np.arange(count), 6)
