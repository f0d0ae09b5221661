"""Pseudo labels: IRN's path cells, the memory-bounded random walk against a reference written out from IRN's
definition, affinities, CRF, confident labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixsup.config import CrfConfig, PseudoLabelsConfig
from pixsup.crf import crf_from_labels
from pixsup.pseudo_labels.affinity import (
    affinity_labels,
    affinity_loss,
    neighbour_offsets,
    pair_affinities,
    path_cells,
)
from pixsup.pseudo_labels.random_walk import dense_random_walk, dense_transition, random_walk
from pixsup.pseudo_labels.refine import confident_labels, irn_mask, threshold_labels

# Enumerated by hand from IRN's definition: the cells (y, x) of the box spanned by (0, 0) and (dy, dx) with
# (dy x - dx y)^2 / (dy^2 + dx^2) < 1, i.e. (dy x - dx y)^2 < dy^2 + dx^2. Each comment gives dy x - dx y per cell.
HAND_DERIVED_PATH_CELLS = {
    # x - y, squared below 2: (0,0) 0, (0,1) 1, (1,0) -1, (1,1) 0: the whole box.
    (1, 1): [(0, 0), (0, 1), (1, 0), (1, 1)],
    # 2x - y, squared below 5: (0,0) 0, (0,1) 2, (1,0) -1, (1,1) 1, (2,0) -2, (2,1) 0: the whole box.
    (2, 1): [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)],
    # 3x - 4y, |.| below 5: y=0: x=0 0, x=1 3 (x=2..4: 6, 9, 12 out); y=1: x=0 -4, x=1 -1, x=2 2 (x=3 5, x=4 8
    # out); y=2: x=2 -2, x=3 1, x=4 4 (x=0 -8, x=1 -5 out); y=3: x=3 -3, x=4 0 (x=0..2: -12, -9, -6 out).
    (3, 4): [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 2), (2, 3), (2, 4), (3, 3), (3, 4)],
    # 0 x - 5 y = 0 on the box's one row y = 0: all six cells.
    (0, 5): [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5)],
    # -4x - 3y, |.| below 5, y from -4 to 0, x from 0 to 3: y=0: x=0 0, x=1 -4 (x=2 -8, x=3 -12 out); y=-1: x=0 3,
    # x=1 -1 (x=2 -5, x=3 -9 out); y=-2: x=1 2, x=2 -2 (x=0 6, x=3 -6 out); y=-3: x=2 1, x=3 -3 (x=0 9, x=1 5
    # out); y=-4: x=2 4, x=3 0 (x=0 12, x=1 8 out).
    (-4, 3): [(-4, 2), (-4, 3), (-3, 2), (-3, 3), (-2, 1), (-2, 2), (-1, 0), (-1, 1), (0, 0), (0, 1)],
    # 1 x - 0 y = 0 on the box's one column x = 0: both cells.
    (1, 0): [(0, 0), (1, 0)],
}


@pytest.mark.parametrize("offset", HAND_DERIVED_PATH_CELLS)
def test_path_cells_are_irns(offset):
    assert sorted(path_cells(*offset)) == HAND_DERIVED_PATH_CELLS[offset]


def test_neighbour_offsets_are_irns():
    for radius in (5, 10):
        irn = [(0, x) for x in range(1, radius)] + [
            (y, x) for y in range(1, radius) for x in range(1 - radius, radius) if x * x + y * y < radius * radius
        ]
        assert list(neighbour_offsets(radius, half=True)) == irn
    assert len(neighbour_offsets(5, half=True)) == 34


def irn_random_walk(scores: np.ndarray, boundary: np.ndarray, radius: int, beta: float, exp_times: int) -> np.ndarray:
    """IRN's walk (misc/indexing.py) written out pair by pair from its definition, sharing no code with pixsup:
    the dense affinity matrix (1 on the diagonal; each pair within the radius set at both of its ends to
    1 - max boundary over its path cells; 0 elsewhere), raised to beta, columns normalised, squared exp_times
    times, and the scores multiplied by it from the left."""
    height, width = boundary.shape
    size = height * width
    affinity = np.eye(size)
    half_offsets = [(0, dx) for dx in range(1, radius)] + [
        (dy, dx) for dy in range(1, radius) for dx in range(1 - radius, radius) if dx * dx + dy * dy < radius * radius
    ]
    for y0 in range(height):
        for x0 in range(width):
            for dy, dx in half_offsets:
                y1, x1 = y0 + dy, x0 + dx
                if not (0 <= y1 < height and 0 <= x1 < width):
                    continue  # IRN pads the boundary map with 1 there: affinity 0
                path_max = max(
                    boundary[y, x]
                    for y in range(min(y0, y1), max(y0, y1) + 1)
                    for x in range(min(x0, x1), max(x0, x1) + 1)
                    if (dy * (x - x0) - dx * (y - y0)) ** 2 / (dy * dy + dx * dx) < 1
                )
                p, q = y0 * width + x0, y1 * width + x1
                affinity[p, q] = affinity[q, p] = 1.0 - path_max
    affinity = affinity**beta
    transition = affinity / affinity.sum(0, keepdims=True)
    for _ in range(exp_times):
        transition = transition @ transition
    return (scores.reshape(len(scores), size) @ transition).reshape(scores.shape)


@pytest.mark.parametrize(
    "shape, radius, beta, exp_times", [((9, 11), 5, 10.0, 8), ((9, 11), 5, 10.0, 3), ((8, 7), 3, 2.0, 2)]
)
def test_random_walk_equals_irns_written_out(shape, radius, beta, exp_times):
    rng = np.random.default_rng(sum(shape) + radius + exp_times)
    boundary = rng.random(shape) ** 3
    scores = rng.random((3,) + shape) * (1 - boundary)
    expected = irn_random_walk(scores, boundary, radius, beta, exp_times)
    scores64, boundary64 = torch.from_numpy(scores), torch.from_numpy(boundary)
    for walk in (random_walk, dense_random_walk):  # ours, and the benchmark's dense baseline
        walked = walk(scores64, boundary64, radius, beta, exp_times).numpy()
        np.testing.assert_allclose(walked, expected, rtol=1e-9, atol=1e-12, err_msg=walk.__name__)
    # In float32, as the pipeline runs it, rounding errors of up to 2^8 products add up (4e-5 of the maximum here).
    walked32 = random_walk(scores64.float(), boundary64.float(), radius, beta, exp_times).numpy()
    np.testing.assert_allclose(walked32, expected, rtol=0, atol=1e-4 * expected.max())


def test_dense_transition_is_column_stochastic_and_symmetric_before_normalising():
    boundary = torch.rand(6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    transition = dense_transition(boundary, radius=4, beta=2.0)
    torch.testing.assert_close(transition.sum(0), torch.ones(42, dtype=torch.float64))
    degree = 1.0 / torch.diagonal(transition)  # A[i, i] = 1, so T[i, i] = 1 / d_i
    affinity = transition * degree  # column j times d_j gives back A
    torch.testing.assert_close(affinity, affinity.T)


@pytest.mark.parametrize("wall", ["straight", "diagonal"])
def test_a_one_cell_wide_wall_stops_the_walk_completely(wall):
    ys, xs = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    on_wall, near, far = (xs == 8, xs < 8, xs > 8) if wall == "straight" else (ys == xs, ys > xs, ys < xs)
    boundary = on_wall.float()
    scores = torch.zeros(1, 16, 16)
    scores[0, 12, 3] = 1.0  # on the near side of both walls
    walked = random_walk(scores, boundary, radius=5, beta=10.0, exp_times=8)[0]
    # Every pair across the wall has a wall cell among its path cells, so its affinity is exactly 0 and not even
    # a rounding error crosses. (The rasterised line of each pair let half the score through the diagonal wall.)
    assert walked[far].abs().max().item() == 0.0
    assert walked[near].min() > 0


def test_pair_affinities_take_the_boundary_maximum_over_the_path_cells():
    assert neighbour_offsets(2, half=True) == ((0, 1), (1, -1), (1, 0), (1, 1))
    boundary = torch.zeros(1, 4, 4)
    boundary[0, 1, 2] = 0.8
    affinity = pair_affinities(boundary, ((0, 2), (2, 0), (1, 1)))
    assert affinity[0, 0, 1, 1].item() == pytest.approx(0.2)  # (1,1)->(1,3) crosses (1,2)
    assert affinity[0, 0, 0, 0].item() == 1.0 and affinity[0, 0, 0, 3].item() == 0.0  # outside the map: 0
    # (1,1)->(2,2): the straight line's cells miss (1,2), the path cells (1,1), (1,2), (2,1), (2,2) do not.
    assert affinity[0, 2, 1, 1].item() == pytest.approx(0.2)
    assert affinity[0, 2, 2, 2].item() == 1.0  # (2,2)->(3,3) stays clear of (1,2)


def test_affinity_labels_and_loss():
    labels = torch.tensor([[[0, 0, 3, 255]]])
    targets = affinity_labels(labels, ((0, 1),))
    assert targets["bg_pos"][0, 0, 0].tolist() == [True, False, False, False]
    assert targets["neg"][0, 0, 0].tolist() == [False, True, False, False]
    assert not targets["fg_pos"].any()
    good = affinity_loss(torch.tensor([[[[0.99, 0.01, 0.5, 0.5]]]]), targets)["loss"]
    bad = affinity_loss(torch.tensor([[[[0.01, 0.99, 0.5, 0.5]]]]), targets)["loss"]
    # IRN's ((bg_pos + fg_pos) / 2 + neg) / 2 by hand; no foreground pair here, so fg_pos is 0.
    assert bad.item() == pytest.approx((-np.log(0.01 + 1e-5) / 2 - np.log(1 + 1e-5 - 0.99)) / 2, rel=1e-5)
    assert good.item() == pytest.approx((-np.log(0.99 + 1e-5) / 2 - np.log(1 + 1e-5 - 0.01)) / 2, rel=1e-5)


def _toy_image_and_mask() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = np.full((48, 64, 3), 40, np.uint8)
    image[12:36, 16:44] = (220, 60, 60)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[12:36, 16:44] = 1
    return image, mask


def test_crf_improves_agreement_of_a_blurred_mask():
    image, mask = _toy_image_and_mask()
    blurred = np.zeros_like(mask)
    blurred[8:40, 12:48] = 1  # the object grown by 4 px on every side, as a coarse CAM would
    refined = crf_from_labels(image, blurred, 2, CrfConfig())
    before, after = (blurred == mask).mean(), (refined == mask).mean()
    print(f"\nCRF agreement with the true mask: {before:.3f} -> {after:.3f}")
    assert after > before + 0.05


def test_confident_labels_keep_the_uncertain_band_unknown():
    image, mask = _toy_image_and_mask()
    cam = np.zeros((1, 48, 64), np.float32)
    cam[0, 12:36, 16:44] = 0.9
    cam[0, 8:40, 12:48] = np.maximum(cam[0, 8:40, 12:48], 0.1)  # a weak halo: neither fg nor bg
    cfg = PseudoLabelsConfig(crf=CrfConfig(bilateral_compat=0.0, gaussian_compat=0.0))  # no smoothing here
    labels = confident_labels(image, {"keys": np.array([7]), "high_res": cam}, cfg)
    assert (labels[mask == 1] == 7).all()
    assert (labels[10, 14] == 255) and (labels[0, 0] == 0)
    assert set(np.unique(labels)) == {0, 7, 255}


def test_threshold_and_irn_masks_map_indices_to_class_ids():
    scores = np.array([[[0.9, 0.1]], [[0.2, 0.6]]], np.float32)
    assert threshold_labels(scores, np.array([5, 9]), 0.3).tolist() == [[5, 9]]
    assert threshold_labels(np.zeros((0, 1, 2)), np.array([], np.int64), 0.3).tolist() == [[0, 0]]
    cams = {"keys": np.array([5]), "cam": np.ones((1, 3, 3), np.float16), "high_res": np.ones((1, 12, 12))}
    with pytest.raises(ValueError, match="cam_stride 4"):
        irn_mask(np.zeros((12, 12, 3), np.uint8), cams, torch.zeros(4, 4), PseudoLabelsConfig())
    mask = irn_mask(np.zeros((12, 12, 3), np.uint8), cams, torch.zeros(3, 3), PseudoLabelsConfig())
    assert mask.shape == (12, 12) and (mask == 5).all()
