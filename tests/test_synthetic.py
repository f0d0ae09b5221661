"""The synthetic default dataset: VOC layout, labels, determinism, and the badge-versus-body property."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pixsup.config import ConfigError, SyntheticConfig, parse_params
from pixsup.data import synthetic
from pixsup.data.synthetic import TRAIN_POOL, VAL_POOL, class_palette, draw_sample, generate_synthetic
from pixsup.data.voc_format import (
    ANNOTATION_DIR,
    CLASS_ID,
    IGNORE_INDEX,
    JPEG_DIR,
    MASK_AUG_DIR,
    MASK_DIR,
    SPLIT_DIR,
    voc_palette,
)
from pixsup.steps import prepare_data

SMALL = {"num_train": 8, "num_aug_extra": 6, "num_val": 6, "num_test": 3}
SPLITS = ("train", "train_aug", "val", "test")


@pytest.fixture(scope="module")
def cfg() -> SyntheticConfig:
    return SyntheticConfig(**SMALL)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, cfg: SyntheticConfig) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic") / "VOC2012"
    return root, generate_synthetic(root, cfg, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _split(root: Path, name: str) -> list[str]:
    return (root / SPLIT_DIR / f"{name}.txt").read_text().split()


def _mask(root: Path, image_id: str) -> np.ndarray:
    return np.array(Image.open(root / MASK_AUG_DIR / f"{image_id}.png"))


def _xml_objects(root: Path, image_id: str) -> tuple[tuple[int, int], list[tuple[int, tuple[int, ...]]]]:
    tree = ET.parse(root / ANNOTATION_DIR / f"{image_id}.xml").getroot()
    size = (int(tree.findtext("size/width")), int(tree.findtext("size/height")))
    objects = [
        (
            CLASS_ID[obj.findtext("name")],
            tuple(int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")),
        )
        for obj in tree.iter("object")
    ]
    return size, objects


def test_split_lists(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    train, train_aug, val, test = (_split(root, name) for name in SPLITS)
    assert (len(train), len(train_aug), len(val), len(test)) == (8, 14, 6, 3)
    assert summary["counts"] == {"train": 8, "train_aug": 14, "val": 6, "test": 3}
    assert train == train_aug[:8] and len(set(train_aug)) == len(train_aug) and len(set(val)) == len(val)
    assert not set(val) & set(train_aug) and not set(test) & (set(train_aug) | set(val))
    assert all(re.fullmatch(r"2100_\d{6}", i) for i in train_aug)
    assert all(re.fullmatch(r"2101_\d{6}", i) for i in val)
    assert all(re.fullmatch(r"2102_\d{6}", i) for i in test)


def test_layout_complete_and_voc_readable(dataset: tuple[Path, dict], cfg: SyntheticConfig) -> None:
    root, _ = dataset
    train, train_aug, val, test = (_split(root, name) for name in SPLITS)
    every = train_aug + val
    segmented = train + val
    # test: images only, as the VOC server publishes them.
    assert {p.stem for p in (root / JPEG_DIR).iterdir()} == set(every) | set(test)
    assert {p.stem for p in (root / ANNOTATION_DIR).iterdir()} == set(every)
    assert {p.stem for p in (root / MASK_AUG_DIR).iterdir()} == set(every)
    assert {p.stem for p in (root / MASK_DIR).iterdir()} == set(segmented)

    allowed = set(range(cfg.num_classes + 1)) | {IGNORE_INDEX}
    sizes = set()
    for image_id in every:
        image = Image.open(root / JPEG_DIR / f"{image_id}.jpg")
        assert image.format == "JPEG" and image.mode == "RGB"
        aug = Image.open(root / MASK_AUG_DIR / f"{image_id}.png")
        assert aug.mode == "L" and aug.size == image.size
        mask = np.array(aug)
        assert set(np.unique(mask).tolist()) <= allowed
        assert (mask != 0).any() and (mask == 0).any()
        if image_id in segmented:
            classic = Image.open(root / MASK_DIR / f"{image_id}.png")
            assert classic.mode == "P" and classic.getpalette()[:768] == voc_palette()
            assert classic.getpalette()[3:6] == [128, 0, 0]  # aeroplane's devkit colour, written out
            assert np.array_equal(np.array(classic), mask)
        assert cfg.min_side <= min(image.size) and max(image.size) <= cfg.max_side
        sizes.add(image.size)
    assert len(sizes) > len(every) // 2, "image sizes should vary"


def test_ignore_ring_separates_every_border(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for image_id in _split(root, "train_aug"):
        mask = _mask(root, image_id)
        assert (mask == IGNORE_INDEX).any()
        # No two 4-neighbours carry different labels unless the ring covers them.
        for a, b in ((mask[1:], mask[:-1]), (mask[:, 1:], mask[:, :-1])):
            scored = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
            assert not (scored & (a != b)).any()


def test_ignore_ring_width() -> None:
    shares = []
    for ring in (0, 1, 3):
        cfg = SyntheticConfig(ignore_ring=ring)
        masks = [draw_sample(cfg, k)[1] for k in range(10)]
        shares.append(np.mean([(m == IGNORE_INDEX).mean() for m in masks]))
    assert shares[0] == 0.0 < shares[1] < shares[2]


def test_xml_labels_and_boxes_match_mask(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for image_id in _split(root, "train_aug") + _split(root, "val"):
        mask = _mask(root, image_id)
        (width, height), objects = _xml_objects(root, image_id)
        assert (height, width) == mask.shape
        present = set(np.unique(mask).tolist()) - {0, IGNORE_INDEX}
        assert {c for c, _ in objects} == present
        for class_id in present:
            inside = np.zeros(mask.shape, dtype=bool)
            for c, (xmin, ymin, xmax, ymax) in objects:
                assert 1 <= xmin <= xmax <= width and 1 <= ymin <= ymax <= height
                if c == class_id:
                    inside[ymin - 1 : ymax, xmin - 1 : xmax] = True
            assert not ((mask == class_id) & ~inside).any()


def test_same_seed_same_bytes_other_seed_other_images(
    tmp_path: Path, dataset: tuple[Path, dict], cfg: SyntheticConfig
) -> None:
    root, _ = dataset
    generate_synthetic(tmp_path / "again", cfg, progress=False)
    assert _files(tmp_path / "again") == _files(root)

    generate_synthetic(tmp_path / "other", SyntheticConfig(**SMALL, seed=1), progress=False)
    other = _files(tmp_path / "other")
    jpegs = [name for name in other if name.startswith(JPEG_DIR)]
    assert jpegs and all(other[name] != _files(root)[name] for name in jpegs)


def test_image_does_not_depend_on_counts() -> None:
    few = SyntheticConfig(num_train=1, num_aug_extra=0, num_val=1)
    many = SyntheticConfig(num_train=500, num_aug_extra=500, num_val=300)
    for got, want in zip(draw_sample(few, 7), draw_sample(many, 7)):
        assert got == want if isinstance(got, list) else np.array_equal(got, want)
    train_image, val_image = draw_sample(few, 0, TRAIN_POOL)[0], draw_sample(few, 0, VAL_POOL)[0]
    assert train_image.shape != val_image.shape or not np.array_equal(train_image, val_image)


def test_rerun_replaces_an_earlier_run_exactly(tmp_path: Path, cfg: SyntheticConfig) -> None:
    root = tmp_path / "VOC2012"
    generate_synthetic(root, SyntheticConfig(num_train=12, num_aug_extra=3, num_val=9, seed=5), progress=False)
    generate_synthetic(root, cfg, progress=False)
    generate_synthetic(tmp_path / "fresh", cfg, progress=False)
    assert _files(root) == _files(tmp_path / "fresh")


def test_crashed_run_leaves_no_split_lists(
    tmp_path: Path, cfg: SyntheticConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "VOC2012"
    generate_synthetic(root, cfg, progress=False)
    real_save_png, calls = synthetic.save_png, []

    def failing_save_png(*args, **kwargs):
        calls.append(args[0])
        if len(calls) > 5:
            raise OSError("disk full")
        real_save_png(*args, **kwargs)

    monkeypatch.setattr(synthetic, "save_png", failing_save_png)
    with pytest.raises(OSError):
        generate_synthetic(root, cfg, progress=False)
    assert not any((root / SPLIT_DIR / f"{name}.txt").exists() for name in SPLITS)
    monkeypatch.undo()
    generate_synthetic(root, cfg, progress=False)
    generate_synthetic(tmp_path / "fresh", cfg, progress=False)
    assert _files(root) == _files(tmp_path / "fresh")


def test_badge_is_a_small_part_of_each_object(dataset: tuple[Path, dict]) -> None:
    _, summary = dataset
    for name in ("train", "train_aug", "val"):
        stats = summary["statistics"][name]
        assert 0.02 < stats["badge_fraction_of_object_pixels"] < 0.15
        assert stats["images"] == summary["counts"][name]
    cfg = SyntheticConfig()
    badge_pixels = object_pixels = 0
    for k in range(40):
        _, mask, objects, badge = draw_sample(cfg, k)
        foreground = (mask != 0) & (mask != IGNORE_INDEX)
        assert not (badge & (mask == 0)).any(), "badge pixels belong to objects"
        badge_pixels += int((badge & foreground).sum())
        object_pixels += int(foreground.sum())
    assert 0.02 < badge_pixels / object_pixels < 0.15


def test_badge_carries_the_class_code() -> None:
    cfg = SyntheticConfig(max_objects=1)
    palette = class_palette(cfg.num_classes)
    for k in range(30):
        image, _, objects, badge = draw_sample(cfg, k)
        ((class_id, _),) = objects
        inks = palette.badge_codes[class_id - 1].reshape(-1, 3).astype(float)
        pixels = image[badge].astype(float)
        assert badge.sum() >= 36
        # Pixel noise only: every badge pixel is near one of its class's inks.
        nearest = np.linalg.norm(pixels[:, None, :] - inks[None], axis=-1).min(axis=1)
        assert nearest.max() < 25


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_body_colour_is_the_class_colour_at_the_configured_rate(rate: float) -> None:
    cfg = SyntheticConfig(max_objects=1, body_class_colour_prob=rate)
    palette = class_palette(cfg.num_classes)
    candidates = np.concatenate([palette.class_colours, palette.distractor_colours]).astype(float)
    own_colour = 0
    draws = 200
    for k in range(draws):
        image, mask, objects, badge = draw_sample(cfg, k)
        ((class_id, _),) = objects
        body = np.median(image[(mask == class_id) & ~badge].astype(float), axis=0)
        nearest = int(np.argmin(np.linalg.norm(candidates - body, axis=1)))
        assert nearest == class_id - 1 or nearest >= cfg.num_classes, "never another class's colour"
        own_colour += nearest == class_id - 1
    # Binomial(200, rate): 0.1 is over three standard deviations at 0.3.
    assert abs(own_colour / draws - rate) < 0.1


@pytest.mark.parametrize("num_classes", [2, 6, 20])
def test_palette_colours_and_badge_codes_are_distinct(num_classes: int) -> None:
    palette = class_palette(num_classes)
    colours = np.concatenate([palette.class_colours, palette.distractor_colours]).astype(int)
    assert len({tuple(c) for c in colours}) == 2 * num_classes
    codes = palette.badge_codes.reshape(num_classes, 4, 3)
    assert all(2 <= len({tuple(c) for c in code}) <= 3 for code in codes)
    # Distinct even after a horizontal flip, which training applies.
    seen = set()
    for code in palette.badge_codes:
        keys = {code.tobytes(), code[:, ::-1].copy().tobytes()}
        assert not keys & seen
        seen |= keys


def test_config_rejects_bad_values() -> None:
    for bad in ({"object_scale": [0.6, 0.4]}, {"badge_fraction": 0.7}, {"seed": -1}, {"num_clases": 3}):
        with pytest.raises(ConfigError):
            parse_params({"data": {"synthetic": bad}})


def test_step_writes_dataset_and_meta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"synthetic": {**SMALL, "seed": 3}}}))
    out = tmp_path / "VOC2012"
    manifest_path = tmp_path / "prepared.json"
    assert prepare_data.main(["--params", str(params), "--root", str(out), "--out", str(manifest_path), "--quiet"]) == 0
    assert all((out / SPLIT_DIR / f"{name}.txt").exists() for name in SPLITS)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["dataset"] == "synthetic" and manifest["root"] == str(out)
    assert manifest["splits"]["train"] == SMALL["num_train"]
    assert manifest["splits"]["train_aug"] == SMALL["num_train"] + SMALL["num_aug_extra"]
    meta = json.loads((tmp_path / "prepared.json.meta.json").read_text())
    assert meta["step"] == "prepare_data" and meta["seed"] == 3
    assert meta["params"]["data"]["synthetic"] == SyntheticConfig(**SMALL, seed=3).model_dump(mode="json")
    summary = json.loads((out / "synthetic.json").read_text())
    assert summary["config"]["seed"] == 3 and len(summary["classes"]) == 6

    params.write_text(yaml.safe_dump({"data": {"synthetic": {"num_trian": 4}}}))
    capsys.readouterr()
    assert (
        prepare_data.main(
            ["--params", str(params), "--root", str(tmp_path / "bad"), "--out", str(tmp_path / "bad.json"), "--quiet"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "data.synthetic.num_trian" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.json").exists()
