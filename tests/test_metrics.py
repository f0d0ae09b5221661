"""Confusion matrices, IoU/precision/recall, and the background-threshold sweep against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixsup.evaluation.metrics import ThresholdSweep, confusion_matrix, scores, sweep_thresholds

# The scores example; gt/pred pairs (row = gt, column = pred), one pixel ignored:
# (0,0) (1,2) (2,2) (2,1) [255 ignored] (1,1) (0,2) (3,0)
GT = np.array([[0, 1, 2, 2], [255, 1, 0, 3]], dtype=np.uint8)
PRED = np.array([[0, 2, 2, 1], [0, 1, 2, 0]], dtype=np.uint8)


def test_confusion_matrix_hand_example_ignores_255() -> None:
    gt = np.array([[0, 1, 2, 2], [255, 1, 0, 2]], dtype=np.uint8)
    pred = np.array([[0, 2, 2, 1], [0, 1, 2, 2]], dtype=np.uint8)
    # pairs (gt, pred): (0,0) (1,2) (2,2) (2,1) [ignored] (1,1) (0,2) (2,2)
    expected = np.array(
        [
            [1, 0, 1],
            [0, 1, 1],
            [0, 1, 2],
        ]
    )
    np.testing.assert_array_equal(confusion_matrix(gt, pred, num_classes=3), expected)


def test_confusion_matrix_default_size_is_voc() -> None:
    conf = confusion_matrix(np.array([[20, 255]]), np.array([[0, 20]]))
    assert conf.shape == (21, 21) and conf[20, 0] == 1 and conf.sum() == 1


def test_scores_hand_example() -> None:
    # 5 classes: class 3 is in the ground truth but never predicted; class 4 appears nowhere.
    conf = confusion_matrix(GT, PRED, num_classes=5)
    result = scores(conf)
    iou = result["per_class_iou"]
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: tp 1, gt 2, pred 2 -> 1/3;
    # class 2: tp 1, gt 2, pred 3 -> 1/4; class 3: tp 0, gt 1, pred 0 -> 0.
    assert iou["background"] == pytest.approx(100 / 3, abs=1e-3)
    assert iou["aeroplane"] == pytest.approx(100 / 3, abs=1e-3)
    assert iou["bicycle"] == pytest.approx(25.0, abs=1e-3)
    assert iou["bird"] == 0.0
    assert iou["boat"] is None
    assert list(iou) == ["background", "aeroplane", "bicycle", "bird", "boat"]
    # The mean skips the class that appears nowhere: (1/3 + 1/3 + 1/4 + 0) / 4.
    assert result["miou"] == pytest.approx(100 * (1 / 3 + 1 / 3 + 1 / 4) / 4, abs=1e-3)

    precision, recall = result["per_class_precision"], result["per_class_recall"]
    assert precision["background"] == pytest.approx(50.0)
    assert precision["aeroplane"] == pytest.approx(50.0)
    assert precision["bicycle"] == pytest.approx(100 / 3, abs=1e-3)
    assert precision["bird"] is None  # never predicted
    assert recall["bird"] == 0.0
    assert recall["background"] == recall["aeroplane"] == recall["bicycle"] == pytest.approx(50.0)
    assert precision["boat"] is None and recall["boat"] is None


def test_scores_of_an_empty_matrix_has_no_miou() -> None:
    result = scores(np.zeros((3, 3), dtype=np.int64))
    assert math.isnan(result["miou"])
    assert all(v is None for v in result["per_class_iou"].values())


# ---------------------------------------------------------------- threshold sweep


def _brute_confusion(
    images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], threshold: float, num_classes: int
) -> np.ndarray:
    """pred = keys[argmax] where max > t, else 0 (ties go to background); loops written out."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    for high_res, keys, gt in images:
        height, width = gt.shape
        for y in range(height):
            for x in range(width):
                if gt[y, x] == 255:
                    continue
                pred = 0
                if len(keys):
                    values = [float(v) for v in high_res[:, y, x]]
                    peak = max(values)
                    if peak > threshold:
                        pred = int(keys[values.index(peak)])  # first maximum, as argmax
                conf[gt[y, x], pred] += 1
    return conf


def _miou(conf: np.ndarray) -> float:
    ious = []
    for c in range(len(conf)):
        tp, gt_total, pred_total = conf[c, c], conf[c].sum(), conf[:, c].sum()
        union = gt_total + pred_total - tp
        if union:
            ious.append(tp / union)
    return 100 * sum(ious) / len(ious)


def _random_images(seed: int, num_classes: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Random CAMs on a 1/64 grid (exact in float16, so ties with thresholds happen), random keys and gt."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(5):
        height, width = rng.integers(3, 9, size=2)
        k = 0 if i == 2 else int(rng.integers(1, 4))  # image 2 has no keys
        keys = np.sort(rng.choice(np.arange(1, num_classes), size=k, replace=False)).astype(np.int64)
        high_res = (rng.integers(0, 65, size=(k, height, width)) / 64).astype(np.float16)
        if k >= 2:
            high_res[1, 0, :] = high_res[0, 0, :]  # equal class scores: the first key wins
        gt = rng.integers(0, num_classes, size=(height, width)).astype(np.uint8)
        if k:
            gt[rng.random((height, width)) < 0.5] = rng.choice(keys)
        gt[rng.random((height, width)) < 0.1] = 255
        images.append((high_res, keys, gt))
    return images


@pytest.mark.parametrize(
    "thresholds",
    [
        np.arange(1, 64, 3) / 64,  # on the CAM grid: many pixels tie with a threshold
        sweep_thresholds(0.05, 0.60, 0.01),  # the default sweep
    ],
    ids=["grid", "default"],
)
def test_threshold_sweep_matches_brute_force(thresholds: np.ndarray) -> None:
    num_classes = 6
    images = _random_images(0, num_classes)
    sweep = ThresholdSweep(thresholds, num_classes=num_classes)
    for image in images:
        sweep.add(*image)
    confs = sweep.confusions()
    assert confs.shape == (len(thresholds), num_classes, num_classes)
    for j, t in enumerate(thresholds):
        np.testing.assert_array_equal(confs[j], _brute_confusion(images, float(t), num_classes), err_msg=f"t={t}")


def test_threshold_sweep_result_picks_best_threshold() -> None:
    num_classes = 6
    thresholds = np.arange(1, 64, 3) / 64
    images = _random_images(1, num_classes)
    sweep = ThresholdSweep(thresholds, num_classes=num_classes)
    for image in images:
        sweep.add(*image)
    result = sweep.result()
    curve = [_miou(_brute_confusion(images, float(t), num_classes)) for t in thresholds]
    assert len(result["curve"]) == len(thresholds)
    for point, t, m in zip(result["curve"], thresholds, curve):
        assert point["threshold"] == pytest.approx(t, abs=1e-4)
        assert point["miou"] == pytest.approx(m, abs=1e-3)
    assert result["miou"] == pytest.approx(max(curve), abs=1e-3)
    # The reported threshold is one where brute force reaches the best mIoU.
    assert _miou(_brute_confusion(images, result["best_threshold"], num_classes)) == pytest.approx(max(curve), abs=1e-3)
    assert "per_class_iou" in result


def test_threshold_sweep_image_without_keys_is_all_background() -> None:
    gt = np.array([[0, 1, 2], [255, 2, 1]], dtype=np.uint8)
    sweep = ThresholdSweep([0.1, 0.5], num_classes=3)
    sweep.add(np.zeros((0, 2, 3), dtype=np.float16), np.zeros(0, dtype=np.int64), gt)
    expected = np.array([[1, 0, 0], [2, 0, 0], [2, 0, 0]])
    for conf in sweep.confusions():
        np.testing.assert_array_equal(conf, expected)


def test_threshold_sweep_needs_increasing_thresholds() -> None:
    with pytest.raises(ValueError):
        ThresholdSweep([0.2, 0.1])
    with pytest.raises(ValueError):
        ThresholdSweep([0.2, 0.2])


def test_sweep_thresholds_default_range() -> None:
    values = sweep_thresholds(0.05, 0.60, 0.01)
    assert len(values) == 56
    assert values[0] == pytest.approx(0.05) and values[-1] == pytest.approx(0.6)
    np.testing.assert_allclose(np.diff(values), 0.01, atol=1e-9)


def test_threshold_sweep_orders_negative_values_and_signed_zeros_as_floats() -> None:
    # Negative values, -0 and +0 take the rank path of the sweep; brute force compares floats.
    num_classes = 6
    images = _random_images(2, num_classes)
    for high_res, keys, _ in images:
        if len(keys):
            high_res -= np.float16(0.25)
            high_res[0, 0, 0], high_res[-1, 0, 0] = np.float16(-0.0), np.float16(0.0)
    thresholds = np.array([0.0, 0.1, 0.3])
    sweep = ThresholdSweep(thresholds, num_classes=num_classes)
    for image in images:
        sweep.add(*image)
    for j, t in enumerate(thresholds):
        np.testing.assert_array_equal(sweep.confusions()[j], _brute_confusion(images, float(t), num_classes))


def test_values_that_are_not_class_ids_are_errors() -> None:
    gt = np.array([[0, 7, 255]], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"ground truth holds values \[7\]"):
        ThresholdSweep([0.5], num_classes=6).add(np.zeros((0, 1, 3), np.float16), np.zeros(0, np.int64), gt)
    with pytest.raises(ValueError, match=r"ground truth \[7\]"):
        confusion_matrix(gt, np.zeros_like(gt), num_classes=6)
    with pytest.raises(ValueError, match=r"prediction \[255\]"):
        confusion_matrix(np.zeros_like(gt), np.full_like(gt, 255), num_classes=6)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(gt, gt[:, :2])
