"""Prototype-similarity refinement of CAMs at inference (``cam_infer.refine``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pixsup.cam.inference import infer_cams
from pixsup.cam.refine import prototype_similarity
from pixsup.config import RefineConfig
from pixsup.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _grid(rows: list[list[float]]) -> torch.Tensor:
    """(1, D, 1, W) features from W pixels of D values each."""
    return torch.tensor(rows, dtype=torch.float32).T[None, :, None, :]


def test_hand_worked_row_of_four_pixels() -> None:
    # Features (2,0) (2,0) (0,2) (3,1); their mean is (1.75, 0.75), so the centred features are
    # (0.25,-0.75) (0.25,-0.75) (-1.75,1.25) (1.25,0.25). CAM 4 2 1 0 at threshold 0.5: pixels 0 and 1
    # (4/4 and 2/4) form the prototype, the direction (1,-3)/sqrt(10). Cosines with it:
    # pixels 0, 1: 1; pixel 2: (-1.75 - 3.75) / (sqrt(10) sqrt(4.625)) < 0 -> 0;
    # pixel 3: (1.25 - 0.75) / (sqrt(10) sqrt(1.625)) = 0.5 / sqrt(16.25).
    features = _grid([[2, 0], [2, 0], [0, 2], [3, 1]])
    cam = torch.tensor([4.0, 2.0, 1.0, 0.0])[None, None, None, :]
    refined = prototype_similarity(cam, features, threshold=0.5)
    assert refined.shape == (1, 1, 1, 4)
    np.testing.assert_allclose(refined.flatten().numpy(), [1.0, 1.0, 0.0, 0.5 / math.sqrt(16.25)], atol=1e-6)


def test_threshold_decides_the_prototype_pixels() -> None:
    # At threshold 0.2 pixel 2 (CAM 1/4) joins: the prototype is the mean of three unit vectors,
    # u = (0.25,-0.75)/sqrt(0.625) twice and v = (-1.75,1.25)/sqrt(4.625); pixel 3 is then
    # cos((1.25, 0.25), 2u + v) by the definition, computed here with plain numpy.
    features = _grid([[2, 0], [2, 0], [0, 2], [3, 1]])
    cam = torch.tensor([4.0, 2.0, 1.0, 0.0])[None, None, None, :]
    u = np.array([0.25, -0.75]) / math.sqrt(0.625)
    v = np.array([-1.75, 1.25]) / math.sqrt(4.625)
    prototype = 2 * u + v
    pixel3 = np.array([1.25, 0.25])
    expected = max(0.0, pixel3 @ prototype / (np.linalg.norm(pixel3) * np.linalg.norm(prototype)))
    refined = prototype_similarity(cam, features, threshold=0.2)
    assert refined[0, 0, 0, 3].item() == pytest.approx(expected, abs=1e-6)
    assert refined[0, 0, 0, 3].item() != pytest.approx(0.5 / math.sqrt(16.25), abs=1e-3)


def test_matches_a_pixel_loop_on_random_maps() -> None:
    generator = torch.Generator().manual_seed(0)
    cam = torch.rand(2, 3, 5, 6, generator=generator)
    features = torch.rand(2, 7, 5, 6, generator=generator)
    refined = prototype_similarity(cam, features, threshold=0.6).numpy()
    for b in range(2):
        f = features[b].reshape(7, -1).numpy().T  # pixels x D
        f = f - f.mean(axis=0)
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        for k in range(3):
            c = cam[b, k].flatten().numpy()
            members = [f[i] for i in range(len(c)) if c[i] >= 0.6 * c.max()]
            prototype = np.sum(members, axis=0)
            prototype /= np.linalg.norm(prototype)
            expected = [max(0.0, float(f[i] @ prototype)) for i in range(len(c))]
            np.testing.assert_allclose(refined[b, k].flatten(), expected, atol=1e-5)


def test_a_class_without_activation_gets_a_zero_map() -> None:
    cam = torch.zeros(1, 2, 3, 3)
    cam[0, 0, 1, 1] = 1.0
    refined = prototype_similarity(cam, torch.rand(1, 4, 3, 3), threshold=0.5)
    assert torch.isfinite(refined).all()
    assert refined[0, 1].abs().max().item() == 0.0
    assert refined[0, 0, 1, 1].item() == pytest.approx(1.0, abs=1e-6)


def test_grids_must_match() -> None:
    with pytest.raises(ValueError, match="do not share a grid"):
        prototype_similarity(torch.rand(1, 2, 3, 3), torch.rand(1, 4, 3, 4), threshold=0.5)


@pytest.mark.parametrize("features", ["backbone", "projection"])
def test_refined_cam_files_are_normalised_and_mirror_consistent(features: str) -> None:
    torch.manual_seed(0)
    model = create_model("tiny", proj_dim=8, pretrained="none").eval()
    with torch.no_grad():
        model.cam_head.weight.abs_()
    image = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    label = np.zeros(20, dtype=np.float32)
    label[[0, 7]] = 1.0
    refine = RefineConfig(method="prototype", features=features, threshold=0.5)
    direct = infer_cams(model, image, label, scales=(1.0, 0.5), refine=refine)
    mirrored = infer_cams(model, np.ascontiguousarray(image[:, ::-1]), label, scales=(1.0, 0.5), refine=refine)
    plain = infer_cams(model, image, label, scales=(1.0, 0.5))
    for key in ("cam", "high_res"):
        values = direct[key].astype(np.float32)
        assert values.min() >= 0.0 and values.max() <= 1.0
        np.testing.assert_allclose(values.reshape(2, -1).max(axis=1), 1.0, atol=1e-3)
        np.testing.assert_allclose(
            mirrored[key].astype(np.float32), direct[key][:, :, ::-1].astype(np.float32), atol=1e-3
        )
        # The refinement changes the maps (guards against a silently ignored setting).
        assert np.abs(values - plain[key].astype(np.float32)).mean() > 0.01
