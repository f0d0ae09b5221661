"""Segmentation metrics: bincount confusion matrices, IoU/precision/recall, background-threshold sweeps."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..data.voc_format import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES


def _label_map(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as uint8 (label maps hold ids 0..255); ValueError for anything outside that range."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"{what} holds values outside 0..255")
    return values.astype(np.uint8)


def pair_counts(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(256, 256) counts of the (ground truth, prediction) value pairs: one bincount over all pixels."""
    gt, pred = _label_map(gt, "ground truth"), _label_map(pred, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    codes = gt.astype(np.uint16)
    codes <<= 8
    codes |= pred
    return np.bincount(codes.reshape(-1), minlength=256 * 256).reshape(256, 256)


def invalid_values(pairs: np.ndarray, num_classes: int = NUM_CLASSES) -> tuple[list[int], list[int]]:
    """The values of :func:`pair_counts` that are not class ids: (in the ground truth, where 255 is
    allowed; in the prediction)."""
    bad_gt = np.flatnonzero(pairs[num_classes:IGNORE_INDEX].any(axis=1)) + num_classes
    bad_pred = np.flatnonzero(pairs[:, num_classes:].any(axis=0)) + num_classes
    return bad_gt.tolist(), bad_pred.tolist()


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = ground truth, columns = prediction; 255 ignored.

    Raises:
        ValueError: a value of either map is not a class id (255 allowed in the ground truth).
    """
    pairs = pair_counts(gt, pred)
    bad_gt, bad_pred = invalid_values(pairs, num_classes)
    if bad_gt or bad_pred:
        raise ValueError(
            f"values that are not class ids 0..{num_classes - 1}: ground truth {bad_gt} "
            f"(besides {IGNORE_INDEX}), prediction {bad_pred}"
        )
    return pairs[:num_classes, :num_classes]


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


@functools.lru_cache(maxsize=1)
def _float16_order() -> tuple[np.ndarray, np.ndarray]:
    """For every float16 bit pattern a uint16 key that orders as the values do (equal values, such
    as -0 and +0, share a key), and the float32 value of each key."""
    values = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
    by_key, key = np.unique(values, return_inverse=True)
    return key.astype(np.uint16), by_key


# Bit patterns of float16 up to +inf: for values in [0, inf] the patterns order as the values do.
_FLOAT16_INF_BITS = 0x7C00


class ThresholdSweep:
    """Confusion matrices of CAM seeds for every background threshold in one pass per image.

    A pixel is labelled with its strongest class when that class's normalised
    CAM exceeds the threshold t, else background (ties go to background, as
    ``argmax`` over [t, CAMs] does). Each pixel is binned once by how many
    thresholds it exceeds, so a sweep costs one bincount per image.

    CAMs are compared at float16, the precision of the CAM files, through their
    bit patterns, which order as the values do when no value is negative (else
    through a table of ranks); a table gives the thresholds each pattern exceeds.
    No pixel is converted to float or searched among the thresholds, and the
    per-pixel arrays stay 16-bit: the sweep runs at memory speed.
    """

    def __init__(self, thresholds: Sequence[float], num_classes: int = NUM_CLASSES) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        if np.any(np.diff(self.thresholds) <= 0):
            raise ValueError("thresholds must be strictly increasing")
        self.num_classes = num_classes
        # Bins (thresholds exceeded, ground-truth row, class); row num_classes collects ignored pixels.
        self._hist = np.zeros((len(self.thresholds) + 1, num_classes + 1, num_classes), dtype=np.int64)
        self._index_dtype = np.uint16 if self._hist.size <= 2**16 else np.intp
        self._key, by_key = _float16_order()
        row_stride = (num_classes + 1) * num_classes
        self._offset_by_key = (np.searchsorted(self.thresholds, by_key, side="left") * row_stride).astype(
            self._index_dtype
        )
        self._offset_by_bits = self._offset_by_key[self._key]

    def add(self, high_res: np.ndarray, keys: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: normalised CAMs (K, H, W) for class ids ``keys``, ground truth (H, W).

        Raises:
            ValueError: the ground truth holds a value that is neither a class id nor 255.
        """
        c = self.num_classes
        gt = _label_map(gt, "ground truth").reshape(-1)
        if np.count_nonzero(gt >= c) != np.count_nonzero(gt == IGNORE_INDEX):
            found = np.unique(gt)
            raise ValueError(
                f"ground truth holds values {found[(found >= c) & (found != IGNORE_INDEX)].tolist()}, "
                f"neither class ids 0..{c - 1} nor {IGNORE_INDEX}"
            )
        index = np.minimum(gt, c).astype(self._index_dtype)
        index *= c
        if len(keys):
            order = np.ascontiguousarray(high_res, dtype=np.float16).view(np.uint16).reshape(len(keys), -1)
            offset = self._offset_by_bits
            if order.max() > _FLOAT16_INF_BITS:  # a negative value or NaN: compare ranks instead
                order, offset = np.take(self._key, order), self._offset_by_key
            peak = order[0]
            if len(keys) == 1:
                index += int(keys[0])
            else:
                peak = peak.copy()
                strongest = np.full(peak.shape, keys[0], dtype=self._index_dtype)
                for k in range(1, len(keys)):
                    strongest[order[k] > peak] = keys[k]  # strictly greater: ties keep the first, as argmax
                    np.maximum(peak, order[k], out=peak)
                index += strongest
            index += np.take(offset, peak)
        self._hist += np.bincount(index, minlength=self._hist.size).reshape(self._hist.shape)

    def confusions(self) -> np.ndarray:
        """(T, C, C): confusion matrix at each threshold."""
        hist = self._hist[:, : self.num_classes]
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
