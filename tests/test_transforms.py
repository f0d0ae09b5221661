"""Paired transforms keep image and label aligned, pad as documented and depend only on the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pixsup.config import AugmentConfig
from pixsup.data.datasets import CamTrainDataset
from pixsup.data.transforms import (
    IMAGENET_MEAN,
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizeLong,
    build_train_transform,
    denormalize,
    normalize_image,
)

from fake_voc import image, write_item, write_split

# Colour of each class in the painted image; far apart so a mix-up cannot pass.
COLOURS = np.array(
    [(0, 200, 100), (40, 170, 120), (80, 140, 140), (120, 110, 160), (160, 80, 180), (200, 50, 200)], dtype=np.uint8
)


def _painted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 48 x 64 label map of 8 x 8 blocks and the image whose colour encodes it."""
    blocks = np.random.default_rng(seed).integers(0, len(COLOURS), (6, 8))
    label = np.kron(blocks, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
    return COLOURS[label], label


def _uniform_around(label: np.ndarray, radius: int) -> np.ndarray:
    """True where every label within ``radius`` pixels equals the centre (away from class borders)."""
    padded = np.pad(label, radius, mode="edge")
    height, width = label.shape
    same = np.ones(label.shape, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy : dy + height, dx : dx + width] == label
    return same


# The ImageNet mean (0.485, 0.456, 0.406) as a uint8 colour: 123.675, 116.28, 103.53 rounded.
IMAGENET_MEAN_UINT8 = np.array([124, 116, 104], dtype=np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_resize_flip_crop_keep_image_and_label_aligned(seed: int) -> None:
    pixels, label = _painted()
    transform = Compose([RandomResizeLong(40, 90), RandomHorizontalFlip(), RandomCrop(56)])
    out_image, out_label = transform(pixels, label, np.random.default_rng(seed))
    assert out_image.shape == (56, 56, 3) and out_label.shape == (56, 56)
    assert out_image.dtype == np.uint8 and out_label.dtype == np.uint8
    assert set(np.unique(out_label).tolist()) <= set(range(len(COLOURS))) | {255}  # nearest: no new ids
    padding = out_label == 255
    assert (out_image[padding] == IMAGENET_MEAN_UINT8).all() and (out_image[~padding] != 0).any(axis=-1).all()
    inside = _uniform_around(out_label, radius=2) & ~padding
    assert inside.mean() > 0.2
    expected = COLOURS[out_label[inside]].astype(int)
    assert np.abs(out_image[inside].astype(int) - expected).max() <= 2


def test_flip_mirrors_both_or_neither() -> None:
    pixels, label = _painted()
    flipped = RandomHorizontalFlip(p=1.0)(pixels, label, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped[0], pixels[:, ::-1])
    np.testing.assert_array_equal(flipped[1], label[:, ::-1])
    kept = RandomHorizontalFlip(p=0.0)(pixels, label, np.random.default_rng(0))
    np.testing.assert_array_equal(kept[0], pixels)
    np.testing.assert_array_equal(kept[1], label)


def test_resize_long_side_in_range_and_aspect_kept() -> None:
    pixels, label = _painted()
    sides = set()
    for seed in range(20):
        out_image, out_label = RandomResizeLong(30, 40)(pixels, label, np.random.default_rng(seed))
        height, width = out_label.shape
        assert out_image.shape[:2] == (height, width)
        assert 30 <= width <= 40 and abs(height - width * 0.75) <= 1
        sides.add(width)
    assert len(sides) > 3  # actually random


def test_crop_places_a_small_image_anywhere_and_pads_with_the_mean_colour_and_255() -> None:
    """IRN's random_crop: a side shorter than the crop lands at a random offset; the rest is the mean colour
    (0 once normalised) and the ignored label."""
    pixels = np.full((10, 12, 3), 200, dtype=np.uint8)
    label = np.full((10, 12), 3, dtype=np.uint8)
    offsets = set()
    for seed in range(60):
        out_image, out_label = RandomCrop(16)(pixels, label, np.random.default_rng(seed))
        assert out_image.shape == (16, 16, 3) and out_label.shape == (16, 16)
        rows, cols = np.nonzero(out_label == 3)
        top, left = rows.min(), cols.min()
        # The whole image, uncut, as one block.
        assert (rows.max() - top, cols.max() - left) == (9, 11) and len(rows) == 120
        assert (out_image[out_label == 3] == 200).all()
        assert (out_label[out_label != 3] == 255).all()
        assert (out_image[out_label == 255] == IMAGENET_MEAN_UINT8).all()
        offsets.add((int(top), int(left)))
    # 16 - 10 = 6 spare rows and 16 - 12 = 4 spare columns: offsets 0..6 and 0..4.
    assert {top for top, _ in offsets} == set(range(7)) and {left for _, left in offsets} == set(range(5))


def test_crop_of_one_long_and_one_short_side_cuts_one_and_places_the_other() -> None:
    rows = np.arange(30, dtype=np.uint8)[:, None].repeat(8, axis=1)  # 30 x 8, each row its index
    image = np.stack([rows] * 3, axis=-1)
    out_image, out_label = RandomCrop(12)(image, rows.copy(), np.random.default_rng(1))
    kept = out_label != 255
    assert kept.sum(axis=1).tolist() == [8] * 12  # every row of the window holds the 8 columns
    first = int(out_label[0][kept[0]][0])
    assert 0 <= first <= 18 and (out_label[kept].reshape(12, 8)[:, 0] == np.arange(first, first + 12)).all()


def test_crop_of_large_input_needs_no_padding_and_picks_same_window() -> None:
    pixels, label = _painted()
    out_image, out_label = RandomCrop(20)(pixels, label, np.random.default_rng(3))
    assert (out_label != 255).all()
    np.testing.assert_array_equal(out_image, COLOURS[out_label])


def test_color_jitter_changes_image_only() -> None:
    pixels, label = _painted()
    out_image, out_label = ColorJitter(0.5, 0.5, 0.5, 0.2)(pixels, label, np.random.default_rng(0))
    assert out_label is label
    assert out_image.shape == pixels.shape and out_image.dtype == np.uint8
    assert not np.array_equal(out_image, pixels)


def test_hue_shift_leaves_grey_alone_and_turns_colour() -> None:
    grey = np.full((4, 4, 3), 128, dtype=np.uint8)
    np.testing.assert_array_equal(ColorJitter(hue=0.5)(grey, None, np.random.default_rng(0))[0], grey)
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 0] = 255
    shifted, _ = ColorJitter(hue=0.5)(red, None, np.random.default_rng(1))
    assert not np.array_equal(shifted, red)


def test_same_seed_same_output_different_seed_different() -> None:
    transform = build_train_transform(AugmentConfig(resize_long=(40, 80), crop_size=48, hue=0.1))
    pixels, label = _painted()

    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        return transform(pixels, label, np.random.default_rng([seed, 0, 7]))

    first, again, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_build_train_transform_follows_config() -> None:
    plain = build_train_transform(AugmentConfig(flip=False, brightness=0, contrast=0, saturation=0, hue=0))
    assert [type(t).__name__ for t in plain.transforms] == ["RandomResizeLong", "RandomCrop"]
    full = build_train_transform(AugmentConfig())
    assert [type(t).__name__ for t in full.transforms] == [
        "RandomResizeLong",
        "RandomHorizontalFlip",
        "ColorJitter",
        "RandomCrop",
    ]


# torchvision's ImageNet statistics (IRN's TorchvisionNormalize), written here rather than read from pixsup.
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_normalize_and_denormalize_round_trip() -> None:
    pixels, _ = _painted()
    tensor = normalize_image(pixels)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 48, 64)
    # (x / 255 - mean) / std per channel, channels first, as IRN's TorchvisionNormalize computes it.
    expected = ((pixels / 255.0 - np.array(TORCHVISION_MEAN)) / np.array(TORCHVISION_STD)).transpose(2, 0, 1)
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=0, atol=1e-5)
    assert IMAGENET_MEAN == TORCHVISION_MEAN
    mean_pixel = np.round(np.array(TORCHVISION_MEAN) * 255).astype(np.uint8).reshape(1, 1, 3)
    assert normalize_image(mean_pixel).abs().max() < 0.01
    np.testing.assert_array_equal(denormalize(tensor), pixels)


def test_train_dataset_reproducible_per_seed_epoch_index(tmp_path: Path) -> None:
    for n, image_id in enumerate(("2000_000001", "2000_000002")):
        write_item(tmp_path, image_id, pixels=image(40, 56), mask=None, objects=[n + 1])
    write_split(tmp_path, "train", ["2000_000001", "2000_000002"])
    config = AugmentConfig(resize_long=(30, 70), crop_size=32)
    dataset = CamTrainDataset(tmp_path, "train", config, seed=5)
    item = dataset[1]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.float32 and torch.nonzero(item["label"]).flatten().tolist() == [1]
    assert item["id"] == "2000_000002"
    # Another instance (as in another run or worker) gives the same tensor.
    assert torch.equal(CamTrainDataset(tmp_path, "train", config, seed=5)[1]["image"], item["image"])
    assert not torch.equal(CamTrainDataset(tmp_path, "train", config, seed=6)[1]["image"], item["image"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["image"], item["image"])
    dataset.set_epoch(0)
    assert torch.equal(dataset[1]["image"], item["image"])
