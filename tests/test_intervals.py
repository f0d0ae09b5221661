"""Bootstrap intervals of mIoU differences, against SciPy's bootstrap and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pixsup.evaluation.intervals import mean_sd, miou_of_confusions, paired_difference


def _miou(conf: np.ndarray) -> float:
    """mIoU (percent) from its definition: TP / (TP + FP + FN), classes with an empty union left out."""
    ious = []
    for c in range(len(conf)):
        tp, fp, fn = conf[c, c], conf[:, c].sum() - conf[c, c], conf[c, :].sum() - conf[c, c]
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return 100 * float(np.mean(ious))


def _images(rng: np.random.Generator, n: int, error: float, classes: int = 4) -> np.ndarray:
    """Per-image confusions of a labelling that gets each pixel wrong with probability ``error``."""
    out = np.zeros((n, classes, classes), np.int64)
    for i in range(n):
        present = rng.choice(np.arange(1, classes), size=rng.integers(1, classes), replace=False)
        gt = rng.choice(np.r_[0, present], size=400)
        wrong = rng.random(400) < error
        pred = np.where(wrong, rng.integers(0, classes, 400), gt)
        np.add.at(out[i], (gt, pred), 1)
    return out


def test_miou_of_confusions_follows_the_definition():
    conf = np.array([[50, 5, 0], [10, 30, 0], [0, 0, 0]])
    # Class 0: 50 / (50 + 10 + 5); class 1: 30 / (30 + 5 + 10); class 2 absent: left out.
    assert miou_of_confusions(conf) == pytest.approx(100 * (50 / 65 + 30 / 45) / 2)
    stacked = np.stack([conf, np.eye(3, dtype=int) * 7])
    np.testing.assert_allclose(miou_of_confusions(stacked), [100 * (50 / 65 + 30 / 45) / 2, 100.0])


def test_one_seed_interval_matches_scipys_paired_percentile_bootstrap():
    rng = np.random.default_rng(3)
    better, worse = _images(rng, 60, 0.15), _images(rng, 60, 0.30)
    result = paired_difference([better], [worse], samples=4000, seed=1)
    assert result.difference == pytest.approx(_miou(better.sum(0)) - _miou(worse.sum(0)))

    def statistic(index):
        index = index.astype(int)
        return _miou(better[index].sum(0)) - _miou(worse[index].sum(0))

    reference = stats.bootstrap(
        (np.arange(60),), statistic, vectorized=False, n_resamples=4000, method="percentile", random_state=7
    ).confidence_interval
    # Two independent Monte Carlo runs of the same bootstrap: their endpoints agree to within
    # the resampling noise (about 0.3 points at 4,000 replicates on this data).
    assert result.low == pytest.approx(reference.low, abs=0.6)
    assert result.high == pytest.approx(reference.high, abs=0.6)
    assert result.excludes_zero and result.low < result.difference < result.high


def test_identical_methods_give_a_zero_width_interval_that_includes_zero():
    images = _images(np.random.default_rng(0), 20, 0.2)
    result = paired_difference([images, images[:10]], [images, images[:10]], samples=500)
    assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)
    assert not result.excludes_zero and result.per_seed == (0.0, 0.0)


def test_seeds_are_averaged_and_a_noisy_difference_includes_zero():
    rng = np.random.default_rng(5)
    a = [_images(rng, 40, 0.2), _images(rng, 40, 0.2)]
    b = [_images(rng, 40, 0.2), _images(rng, 40, 0.2)]
    result = paired_difference(a, b, samples=2000)
    per_seed = [_miou(x.sum(0)) - _miou(y.sum(0)) for x, y in zip(a, b)]
    assert result.per_seed == pytest.approx(per_seed)
    assert result.difference == pytest.approx(np.mean(per_seed))
    # Same error rate, different images: nothing to tell the two apart.
    assert not result.excludes_zero
    # The same seed drawn twice gives the same interval (the report is reproducible).
    assert paired_difference(a, b, samples=2000) == result


def test_mismatched_inputs_are_refused():
    images = _images(np.random.default_rng(0), 5, 0.2)
    with pytest.raises(ValueError, match="same, non-zero number of seeds"):
        paired_difference([images], [images, images])
    with pytest.raises(ValueError, match=r"\(N, C, C\) alike"):
        paired_difference([images], [images[:4]])


def test_mean_sd_uses_the_sample_deviation():
    assert mean_sd([1.0, 2.0, 4.0]) == pytest.approx(
        (7 / 3, np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    )
    assert mean_sd([3.0]) == (3.0, None)
