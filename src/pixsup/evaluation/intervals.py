"""Confidence intervals for mIoU differences: a paired bootstrap over images, combined over seeds.

mIoU is not a mean of per-image values, so the interval resamples images and
recomputes it from summed confusion matrices. Two methods are compared on the
same images (paired): each bootstrap replicate draws one multiset of image
indices per seed and scores both methods on it. With several training seeds,
a replicate's difference is the mean over seeds of the per-seed differences,
each seed's images drawn independently; the interval is the 2.5 and 97.5
percentiles of that mean. It measures how much the difference depends on
which images were scored, for the seeds that were trained; the seed-to-seed
spread is reported beside it as a standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def miou_of_confusions(confusions: np.ndarray) -> np.ndarray:
    """mIoU (percent) of each (C, C) confusion matrix in ``confusions`` (..., C, C); classes with an
    empty union do not enter the mean, as in :func:`pixsup.evaluation.metrics.scores`."""
    conf = np.asarray(confusions, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    union = conf.sum(axis=-1) + conf.sum(axis=-2) - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
    return 100.0 * iou.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` in mIoU points: the mean over seeds, its 95 % bootstrap interval, the per-seed values."""

    difference: float
    low: float
    high: float
    per_seed: tuple[float, ...]

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, object]:
        return {
            "difference": round(self.difference, 3),
            "ci95": [round(self.low, 3), round(self.high, 3)],
            "per_seed": [round(v, 3) for v in self.per_seed],
            "excludes_zero": self.excludes_zero,
        }


def paired_difference(
    a: Sequence[np.ndarray], b: Sequence[np.ndarray], samples: int = 2000, seed: int = 0
) -> PairedDifference:
    """mIoU of ``a`` minus mIoU of ``b`` with a 95 % paired bootstrap interval.

    Args:
        a, b: one array per training seed, (N_s, C, C): the per-image confusion matrices of the
            two methods on the same N_s images in the same order.
        samples: bootstrap replicates.
        seed: seeds the resampling, so that a report is reproducible.

    Raises:
        ValueError: no seeds, unequal numbers of seeds, or a seed whose two arrays differ in shape.
    """
    if not a or len(a) != len(b):
        raise ValueError(f"need the same, non-zero number of seeds for both methods, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    per_seed, replicates = [], np.zeros(samples)
    for conf_a, conf_b in zip(a, b):
        conf_a, conf_b = np.asarray(conf_a), np.asarray(conf_b)
        if conf_a.shape != conf_b.shape or conf_a.ndim != 3 or not len(conf_a):
            raise ValueError(f"per-image confusions must be (N, C, C) alike, got {conf_a.shape} and {conf_b.shape}")
        n = len(conf_a)
        per_seed.append(float(miou_of_confusions(conf_a.sum(0)) - miou_of_confusions(conf_b.sum(0))))
        # Each replicate is a multiset of images: its summed confusion is counts @ per-image confusions.
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)
        flat_a, flat_b = conf_a.reshape(n, -1), conf_b.reshape(n, -1)
        shape = (samples, *conf_a.shape[1:])
        replicates += miou_of_confusions((counts @ flat_a).reshape(shape)) - miou_of_confusions(
            (counts @ flat_b).reshape(shape)
        )
    replicates /= len(a)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return PairedDifference(float(np.mean(per_seed)), float(low), float(high), tuple(per_seed))


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); no deviation for a single value."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)
