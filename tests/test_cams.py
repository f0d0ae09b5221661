"""Multi-scale flip CAM inference, the CAM file format and its checks, sharding and manifests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pixsup.cam.cam_files import (
    CamFileError,
    gather_manifests,
    load_cam_file,
    manifest_name,
    save_cam_file,
    shard_positions,
)
from pixsup.cam.inference import cam_maps, infer_cams, rescale_image, scaled_size
from pixsup.models import CamNet, create_model

from fake_voc import image as ramp_image

HEIGHT, WIDTH = 37, 50  # odd sizes: the low-resolution grid rounds up


pytestmark = pytest.mark.usefixtures("one_thread")


def _label(*indices: int) -> np.ndarray:
    label = np.zeros(20, dtype=np.float32)
    label[list(indices)] = 1.0
    return label


def _positive_tiny(seed: int = 0) -> CamNet:
    """A random tiny CAM net in eval mode whose CAMs are positive (backbone features are ReLU
    outputs, so a non-negative head gives every class a non-zero map)."""
    torch.manual_seed(seed)
    model = create_model("tiny", proj_dim=8, pretrained="none").eval()
    with torch.no_grad():
        model.cam_head.weight.abs_()
    return model


def _random_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


# ----------------------------------------------------------------- infer_cams


def test_infer_cams_file_format_on_odd_sized_image() -> None:
    cams = infer_cams(_positive_tiny(), _random_image(), _label(2, 14), scales=(1.0, 0.5), cam_stride=4)
    assert set(cams) == {"keys", "cam", "high_res"}
    # Label index i is class id i + 1.
    assert cams["keys"].tolist() == [3, 15] and cams["keys"].dtype == np.int64
    assert cams["cam"].dtype == np.float16 and cams["high_res"].dtype == np.float16
    assert cams["cam"].shape == (2, math.ceil(HEIGHT / 4), math.ceil(WIDTH / 4)) == (2, 10, 13)
    assert cams["high_res"].shape == (2, HEIGHT, WIDTH)
    for key in ("cam", "high_res"):
        values = cams[key].astype(np.float32)
        assert values.min() >= 0.0 and values.max() <= 1.0
        np.testing.assert_allclose(values.reshape(2, -1).max(axis=1), 1.0, atol=1e-3)


def test_infer_cams_without_label_classes() -> None:
    cams = infer_cams(_positive_tiny(), _random_image(), _label())
    assert cams["keys"].shape == (0,)
    assert cams["cam"].shape == (0, 10, 13) and cams["high_res"].shape == (0, HEIGHT, WIDTH)


@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.5)])
@pytest.mark.parametrize("size", [(HEIGHT, WIDTH), (48, 64)])
def test_flip_consistency(scales: tuple[float, ...], size: tuple[int, int]) -> None:
    # With flip on, an image and its mirror see the same pair of inputs: mirrored CAMs. high_res mirrors
    # only where the sides are multiples of the stride: elsewhere IRN's enlarged CAM is cropped on the right.
    model, label = _positive_tiny(), _label(0, 7)
    image = np.random.default_rng(0).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    direct = infer_cams(model, image, label, scales=scales, flip=True)
    mirrored = infer_cams(model, np.ascontiguousarray(image[:, ::-1]), label, scales=scales, flip=True)
    for key in ("cam", "high_res") if size[1] % 8 == 0 else ("cam",):
        np.testing.assert_allclose(
            mirrored[key].astype(np.float32), direct[key][:, :, ::-1].astype(np.float32), atol=1e-3
        )


def test_without_flip_a_random_model_is_not_mirror_symmetric() -> None:
    # Guards the flip test: the random model is not symmetric by itself.
    model, image, label = _positive_tiny(), _random_image(), _label(0, 7)
    direct = infer_cams(model, image, label, flip=False)
    mirrored = infer_cams(model, np.ascontiguousarray(image[:, ::-1]), label, flip=False)
    diff = np.abs(mirrored["high_res"].astype(np.float32) - direct["high_res"][:, :, ::-1].astype(np.float32))
    assert diff.mean() > 0.01


class _PointwiseBackbone(nn.Module):
    """1x1 convolutions only: the network commutes with resizing up to interpolation error."""

    out_channels = 8
    output_stride = 1

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 8, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_scale_consistency_for_a_scale_equivariant_model() -> None:
    torch.manual_seed(0)
    model = CamNet(_PointwiseBackbone(), num_classes=20, proj_dim=4).eval()
    with torch.no_grad():
        model.cam_head.weight.abs_()
    image, label = ramp_image(HEIGHT, WIDTH), _label(4, 9)  # a smooth image
    single = infer_cams(model, image, label, scales=(1.0,))
    multi = infer_cams(model, image, label, scales=(1.0, 0.5, 2.0))
    diff = np.abs(single["high_res"].astype(np.float32) - multi["high_res"].astype(np.float32))
    assert diff.mean() < 0.05


def test_scales_are_used_with_a_strided_model() -> None:
    model, image, label = _positive_tiny(), _random_image(), _label(4, 9)
    single = infer_cams(model, image, label, scales=(1.0,))
    multi = infer_cams(model, image, label, scales=(1.0, 0.5, 2.0))
    diff = np.abs(single["high_res"].astype(np.float32) - multi["high_res"].astype(np.float32))
    assert diff.mean() > 0.01


# ------------------------------------------------ IRN's multi-scale input and high_res geometry


class _RecordingCamModel(nn.Module):
    """Records the batches it is given; its CAM is ``grid`` (all 20 classes), whatever the input."""

    def __init__(self, grid: torch.Tensor | None = None, output_stride: int = 16) -> None:
        super().__init__()
        self.grid, self.output_stride, self.seen = grid, output_stride, []

    def forward(self, x: torch.Tensor, with_proj: bool = True) -> dict[str, torch.Tensor]:
        self.seen.append(x.clone())
        if self.grid is not None:
            return {"cam": self.grid.expand(x.shape[0], -1, -1, -1)}
        size = (math.ceil(x.shape[2] / self.output_stride), math.ceil(x.shape[3] / self.output_stride))
        return {"cam": torch.ones(x.shape[0], 20, *size)}


@pytest.mark.parametrize(
    ("height", "width", "scale", "expected"),
    [
        # int(np.round(side * scale)): halves go to the even neighbour (numpy's rounding), not up.
        (375, 500, 0.5, (188, 250)),  # 187.5 -> 188
        (375, 500, 1.5, (562, 750)),  # 562.5 -> 562
        (333, 500, 1.5, (500, 750)),  # 499.5 -> 500
        (281, 500, 0.5, (140, 250)),  # 140.5 -> 140
        (37, 50, 1.5, (56, 75)),  # 55.5 -> 56
        (37, 50, 0.5, (18, 25)),  # 18.5 -> 18
        (375, 500, 2.0, (750, 1000)),
        (1, 3, 0.25, (1, 1)),  # 0.25 -> 0, kept at least 1 px; 0.75 -> 1
    ],
)
def test_scaled_size_follows_irns_rounding(height: int, width: int, scale: float, expected: tuple) -> None:
    assert scaled_size(height, width, scale) == expected


def _irn_input(image: np.ndarray, scale: float) -> np.ndarray:
    """IRN's network input at ``scale`` computed directly: PIL bicubic of the uint8 image to
    ``int(np.round(side * scale))``, then (x / 255 - mean) / std, channels first."""
    from PIL import Image

    if scale != 1.0:
        size = (int(np.round(image.shape[1] * scale)), int(np.round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((image / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1)


def test_each_scale_sees_the_pil_bicubic_uint8_image_then_normalised() -> None:
    scales = (1.0, 0.5, 1.5, 2.0)
    model, image = _RecordingCamModel(), _random_image()
    cam_maps(model, image, np.array([3]), scales=scales)
    assert len(model.seen) == len(scales)
    for batch, scale in zip(model.seen, scales):
        expected = _irn_input(image, scale)
        assert batch.shape == (2, *expected.shape)
        np.testing.assert_allclose(batch[0].numpy(), expected, atol=1e-5, rtol=0)
        assert torch.equal(batch[1], batch[0].flip(-1))
    assert rescale_image(image, 1.0) is image


def test_high_res_is_enlarged_to_the_next_multiple_of_the_stride_and_cropped() -> None:
    # IRN: each scale's CAM resized to ceil(H/16)*16 x ceil(W/16)*16, summed, cropped to H x W; the
    # stride-4 CAM resized straight to ceil(H/4) x ceil(W/4).
    torch.manual_seed(0)
    grid = torch.rand(1, 20, 3, 4)
    model = _RecordingCamModel(grid, output_stride=16)
    low, high = cam_maps(model, _random_image(), np.array([5]), scales=(1.0, 0.5), flip=False)
    up = torch.nn.functional.interpolate(grid[:, 5:6], size=(48, 64), mode="bilinear", align_corners=False)
    expected_high = (2 * up)[0, :, :HEIGHT, :WIDTH]
    expected_low = torch.nn.functional.interpolate(grid[:, 5:6], size=(10, 13), mode="bilinear")[0]
    torch.testing.assert_close(high, expected_high / (expected_high.max() + 1e-5))
    torch.testing.assert_close(low, expected_low / (expected_low.max() + 1e-5))
    # Not the former geometry (resized straight to H x W).
    straight = torch.nn.functional.interpolate(grid[:, 5:6], size=(HEIGHT, WIDTH), mode="bilinear")[0]
    assert (high - straight / straight.max()).abs().max() > 0.05


def test_the_folded_inference_copy_keeps_the_backbone_stride_and_its_cams() -> None:
    from pixsup.models.inference import inference_model

    model, image, label = _positive_tiny(), _random_image(), _label(2, 14)
    folded = inference_model(model)
    assert folded.output_stride == model.output_stride == 8
    direct = infer_cams(model, image, label, scales=(1.0, 0.5))
    copied = infer_cams(folded, image, label, scales=(1.0, 0.5))
    for key in ("cam", "high_res"):
        np.testing.assert_allclose(copied[key].astype(np.float32), direct[key].astype(np.float32), atol=2e-3)


# --------------------------------------------------------------- CAM files


def _valid_cams(k: int = 2, height: int = 6, width: int = 9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "keys": np.arange(1, k + 1, dtype=np.int64) * 3,
        "cam": rng.random((k, math.ceil(height / 4), math.ceil(width / 4))).astype(np.float16),
        "high_res": rng.random((k, height, width)).astype(np.float16),
    }


def test_cam_file_round_trip(tmp_path: Path) -> None:
    cams = _valid_cams()
    path = tmp_path / "2007_000032.npz"
    save_cam_file(path, cams)
    loaded = load_cam_file(path, image_size=(6, 9))
    assert set(loaded) == set(cams)
    for key, value in cams.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)


def test_cam_file_round_trip_of_inferred_cams(tmp_path: Path) -> None:
    cams = infer_cams(_positive_tiny(), _random_image(), _label(19))
    save_cam_file(tmp_path / "a.npz", cams)
    loaded = load_cam_file(tmp_path / "a.npz", image_size=(HEIGHT, WIDTH))
    assert loaded["keys"].tolist() == [20]
    np.testing.assert_array_equal(loaded["high_res"], cams["high_res"])


def _broken(cams: dict[str, np.ndarray], **changes: object) -> dict[str, np.ndarray]:
    out = dict(cams)
    for key, value in changes.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


BAD_FILES = {
    "missing_key": _broken(_valid_cams(), high_res=None),
    "cam_wrong_ndim": _broken(_valid_cams(), cam=np.zeros((2, 3), dtype=np.float16)),
    "keys_wrong_ndim": _broken(_valid_cams(), keys=np.array([[3, 6]], dtype=np.int64)),
    "k_mismatch": _broken(_valid_cams(), keys=np.array([3, 6, 9], dtype=np.int64)),
    "key_zero": _broken(_valid_cams(), keys=np.array([0, 6], dtype=np.int64)),
    "key_21": _broken(_valid_cams(), keys=np.array([3, 21], dtype=np.int64)),
    "high_res_wrong_size": _broken(_valid_cams(), high_res=np.zeros((2, 6, 10), dtype=np.float16)),
    "cam_nan": _broken(_valid_cams(), cam=np.full((2, 2, 3), np.nan, dtype=np.float16)),
    "high_res_inf": _broken(_valid_cams(), high_res=np.full((2, 6, 9), np.inf, dtype=np.float16)),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_load_cam_file_rejects_bad_files_naming_them(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.npz"
    np.savez(path, **BAD_FILES[case])
    with pytest.raises(CamFileError) as info:
        load_cam_file(path, image_size=(6, 9))
    assert str(path) in str(info.value)


def test_non_finite_cams_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    with pytest.raises(CamFileError, match=r"a\.npz: not written, cam hold NaN or infinity"):
        save_cam_file(path, BAD_FILES["cam_nan"])
    assert list(tmp_path.iterdir()) == []


def test_load_cam_file_rejects_a_non_npz_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("not an archive\n")
    with pytest.raises(CamFileError, match="notes.npz"):
        load_cam_file(path)


def test_load_cam_file_rejects_a_plain_npy_file(tmp_path: Path) -> None:
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(CamFileError, match="array.npy"):
        load_cam_file(path)


def test_load_cam_file_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CamFileError, match="absent.npz"):
        load_cam_file(tmp_path / "absent.npz")


def test_cam_file_error_is_a_value_error() -> None:
    assert issubclass(CamFileError, ValueError)


# --------------------------------------------------------- shards and manifests


@pytest.mark.parametrize("count,num_shards", [(10, 3), (7, 1), (2, 4), (0, 2)])
def test_shards_are_disjoint_and_cover_all_ids_in_order(count: int, num_shards: int) -> None:
    ids = [f"img{i:03d}" for i in range(count)]
    shards = [[ids[p] for p in shard_positions(count, s, num_shards)] for s in range(num_shards)]
    seen = [i for shard in shards for i in shard]
    assert sorted(seen) == ids and len(seen) == len(set(seen))  # disjoint, complete
    for shard in shards:
        assert shard == sorted(shard, key=ids.index)  # split order kept
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced


@pytest.mark.parametrize("shard,num_shards", [(3, 3), (-1, 2), (0, 0)])
def test_invalid_shard_raises(shard: int, num_shards: int) -> None:
    with pytest.raises(ValueError):
        shard_positions(5, shard, num_shards)


RUN = {
    "split": "train",
    "model_sha256": "ab12",
    "scales": [1.0, 0.5],
    "flip": True,
    "cam_stride": 4,
    "precision": "fp32",
}


def _write_shards(out: Path, ids: list[str], num_shards: int, **run_changes: object) -> None:
    for s in range(num_shards):
        part = [ids[p] for p in shard_positions(len(ids), s, num_shards)]
        run = {**RUN, **(run_changes if s == num_shards - 1 else {})}
        manifest = {"ids": part, **run, "shard": s, "num_shards": num_shards}
        (out / manifest_name(s, num_shards)).write_text(json.dumps(manifest))
        for image_id in part:
            save_cam_file(out / f"{image_id}.npz", _valid_cams())


def test_gather_manifests_merges_shards(tmp_path: Path) -> None:
    ids = [f"img{i}" for i in range(5)]
    _write_shards(tmp_path, ids, 2)
    manifest = gather_manifests(tmp_path, 2)
    assert sorted(manifest["ids"]) == ids and len(manifest["ids"]) == 5
    assert manifest["split"] == "train" and manifest["scales"] == [1.0, 0.5]
    assert "shard" not in manifest and "num_shards" not in manifest
    assert json.loads((tmp_path / "index.json").read_text()) == manifest


def test_gather_manifests_missing_shard_manifest(tmp_path: Path) -> None:
    _write_shards(tmp_path, [f"img{i}" for i in range(5)], 3)
    missing = tmp_path / manifest_name(1, 3)
    missing.unlink()
    with pytest.raises(CamFileError, match=missing.name):
        gather_manifests(tmp_path, 3)
    assert not (tmp_path / "index.json").exists()


def test_gather_manifests_missing_cam_file(tmp_path: Path) -> None:
    _write_shards(tmp_path, [f"img{i}" for i in range(5)], 2)
    (tmp_path / "img3.npz").unlink()
    with pytest.raises(CamFileError, match="img3"):
        gather_manifests(tmp_path, 2)
    assert not (tmp_path / "index.json").exists()


@pytest.mark.parametrize("change", [{"model_sha256": "cd34"}, {"scales": [1.0]}, {"precision": "bf16"}])
def test_gather_refuses_shards_of_two_runs(tmp_path: Path, change: dict) -> None:
    _write_shards(tmp_path, [f"img{i}" for i in range(6)], 3, **change)
    with pytest.raises(CamFileError) as info:
        gather_manifests(tmp_path, 3)
    assert f"{manifest_name(2, 3)}: made by another run than shard 0 ({next(iter(change))} differ)" in str(info.value)
    assert not (tmp_path / "index.json").exists()


# ----------------------------------------------------------------- max_side


def test_an_image_within_max_side_is_untouched() -> None:
    model, image = _positive_tiny(), _random_image()
    whole = infer_cams(model, image, _label(2, 14), scales=(1.0, 0.5))
    bounded = infer_cams(model, image, _label(2, 14), scales=(1.0, 0.5), max_side=max(HEIGHT, WIDTH))
    assert all(np.array_equal(whole[key], bounded[key]) for key in whole)


def test_a_photo_beyond_max_side_is_seen_shrunk_and_given_back_at_its_size() -> None:
    from PIL import Image

    model = _positive_tiny()
    photo = np.asarray(Image.fromarray(ramp_image(24, 32)).resize((128, 96), Image.Resampling.BICUBIC))
    cams = infer_cams(model, photo, _label(2), scales=(1.0,), max_side=32)
    assert cams["high_res"].shape == (1, 96, 128) and cams["cam"].shape == (1, 24, 32)
    # What the network saw: the photo shrunk (antialiased, PIL) to 24x32, whose CAMs enlarged match.
    shrunk = np.asarray(Image.fromarray(photo).resize((32, 24), Image.Resampling.BILINEAR))
    small = infer_cams(model, shrunk, _label(2), scales=(1.0,))["high_res"][0].astype(np.float32)
    enlarged = torch.nn.functional.interpolate(torch.from_numpy(small)[None, None], size=(96, 128), mode="bilinear")
    reference = enlarged[0, 0].numpy() / (enlarged.max().item() + 1e-5)
    assert np.abs(cams["high_res"][0].astype(np.float32) - reference).max() < 2e-3
