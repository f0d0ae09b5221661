"""Pseudo labels: the memory-bounded random walk against IRN's dense one, affinities, CRF, confident labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixsup.config import CrfConfig, PseudoLabelsConfig
from pixsup.crf import crf_from_labels
from pixsup.pseudo_labels.affinity import (
    affinity_labels,
    affinity_loss,
    line_points,
    neighbour_offsets,
    pair_affinities,
)
from pixsup.pseudo_labels.random_walk import dense_random_walk, dense_transition, random_walk
from pixsup.pseudo_labels.refine import confident_labels, irn_mask, threshold_labels


@pytest.mark.parametrize("shape, radius, exp_times", [((7, 9), 3, 4), ((12, 15), 5, 8), ((10, 6), 5, 6)])
def test_random_walk_equals_the_dense_reference(shape, radius, exp_times):
    generator = torch.Generator().manual_seed(sum(shape) + radius)
    boundary = torch.rand(shape, generator=generator, dtype=torch.float64) ** 3
    scores = torch.rand((3,) + shape, generator=generator, dtype=torch.float64)
    sparse = random_walk(scores, boundary, radius, beta=10.0, exp_times=exp_times)
    dense = dense_random_walk(scores, boundary, radius, beta=10.0, exp_times=exp_times)
    torch.testing.assert_close(sparse, dense, rtol=1e-9, atol=1e-12)
    # In float32 (as the pipeline runs it) the labels agree too.
    sparse32 = random_walk(scores.float(), boundary.float(), radius, 10.0, exp_times)
    assert torch.equal(sparse32.argmax(0), dense.argmax(0))


def test_dense_transition_is_column_stochastic_and_symmetric_before_normalising():
    boundary = torch.rand(6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    transition = dense_transition(boundary, radius=4, beta=2.0)
    torch.testing.assert_close(transition.sum(0), torch.ones(42, dtype=torch.float64))
    degree = 1.0 / torch.diagonal(transition)  # A[i, i] = 1, so T[i, i] = 1 / d_i
    affinity = transition * degree  # column j times d_j gives back A
    torch.testing.assert_close(affinity, affinity.T)


def test_a_boundary_wall_stops_the_walk():
    boundary = torch.zeros(10, 12)
    boundary[:, 6] = 1.0  # a wall between the left and right halves
    scores = torch.zeros(1, 10, 12)
    scores[0, 5, 2] = 1.0
    walked = random_walk(scores, boundary, radius=5, beta=10.0, exp_times=6)
    assert walked[0, :, 7:].abs().max() < 1e-6 < walked[0, :, :6].sum()


def test_pair_affinities_use_the_line_between_pixels():
    assert line_points(0, 3) == ((0, 0), (0, 1), (0, 2), (0, 3))
    assert neighbour_offsets(2, half=True) == ((0, 1), (1, -1), (1, 0), (1, 1))
    boundary = torch.zeros(1, 4, 4)
    boundary[0, 1, 2] = 0.8
    affinity = pair_affinities(boundary, ((0, 2), (2, 0)))
    assert affinity[0, 0, 1, 1].item() == pytest.approx(0.2)  # (1,1)->(1,3) crosses (1,2)
    assert affinity[0, 0, 0, 0].item() == 1.0 and affinity[0, 0, 0, 3].item() == 0.0  # outside the map: 0


def test_affinity_labels_and_loss():
    labels = torch.tensor([[[0, 0, 3, 255]]])
    targets = affinity_labels(labels, ((0, 1),))
    assert targets["bg_pos"][0, 0, 0].tolist() == [True, False, False, False]
    assert targets["neg"][0, 0, 0].tolist() == [False, True, False, False]
    assert not targets["fg_pos"].any()
    good = affinity_loss(torch.tensor([[[[0.99, 0.01, 0.5, 0.5]]]]), targets)["loss"]
    bad = affinity_loss(torch.tensor([[[[0.01, 0.99, 0.5, 0.5]]]]), targets)["loss"]
    assert good < 0.1 < 4.0 < bad


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
