"""The source dataset and pretrain_backbone: what the textures are, that the draw is reproducible and
balanced, that the step writes weights the tiny backbone loads, and that it resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from pixsup.config import SourceDataConfig
from pixsup.data.source_parts import (
    HELD_OUT_STREAM,
    NUM_SOURCE_CLASSES,
    TEXTURES,
    TRAIN_STREAM,
    SourcePartsDataset,
    draw_source_image,
)
from pixsup.data.synthetic import STRIPE_PERIOD
from pixsup.models import create_backbone
from pixsup.steps import pretrain_backbone as step

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {
    "pretrain": {
        "source": {"images_per_epoch": 32, "held_out": 16, "image_size": 40},
        "epochs": 2,
        "batch_size": 8,
    }
}


def _dominant_period_and_angle(field: np.ndarray) -> tuple[float, float]:
    """Period (px) and direction (degrees in [0, 180), of the wave vector) of the strongest Fourier peak."""
    spectrum = np.abs(np.fft.fft2(field - field.mean()))
    fy, fx = np.meshgrid(np.fft.fftfreq(field.shape[0]), np.fft.fftfreq(field.shape[1]), indexing="ij")
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    frequency = np.hypot(fy[peak], fx[peak])
    return 1.0 / frequency, float(np.degrees(np.arctan2(fy[peak], fx[peak])) % 180.0)


@pytest.mark.parametrize("angle", [0, 45, 90, 135])
def test_fine_stripe_classes_cover_the_target_stripes(angle):
    # The mechanism of docs/synthetic-data.md: the target's bodies carry stripes of period STRIPE_PERIOD at any
    # angle, and the fine-stripe source classes are those stripes, each within 22.5 degrees of its own angle.
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    for draw in range(20):
        period, direction = _dominant_period_and_angle(
            TEXTURES[f"stripes_fine_{angle}"](yy, xx, np.random.default_rng(draw))
        )
        assert STRIPE_PERIOD[0] - 0.3 <= period <= STRIPE_PERIOD[1] + 0.3
        assert min(abs(direction - angle), 180 - abs(direction - angle)) <= 22.5 + 3.0  # one FFT bin


def test_classes_are_drawn_uniformly():
    cfg = SourceDataConfig(image_size=32)
    counts = np.bincount(
        [draw_source_image(cfg, TRAIN_STREAM, 0, k)[1] for k in range(1200)], minlength=NUM_SOURCE_CLASSES
    )
    assert NUM_SOURCE_CLASSES == 24 and counts.sum() == 1200
    assert stats.chisquare(counts).pvalue > 1e-3


def test_draw_depends_on_seed_stream_epoch_and_index_only():
    cfg = SourceDataConfig(image_size=48)
    image, label = draw_source_image(cfg, TRAIN_STREAM, 2, 5)
    again, label_again = draw_source_image(SourceDataConfig(image_size=48), TRAIN_STREAM, 2, 5)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again) and label == label_again
    for other in (
        draw_source_image(cfg, HELD_OUT_STREAM, 2, 5)[0],
        draw_source_image(cfg, TRAIN_STREAM, 3, 5)[0],
        draw_source_image(cfg, TRAIN_STREAM, 2, 6)[0],
        draw_source_image(SourceDataConfig(image_size=48, seed=1), TRAIN_STREAM, 2, 5)[0],
    ):
        assert not np.array_equal(image, other)


def test_dataset_draws_new_images_every_epoch():
    dataset = SourcePartsDataset(SourceDataConfig(image_size=32), TRAIN_STREAM, 4)
    first = dataset[1]["image"]
    dataset.set_epoch(1)
    assert len(dataset) == 4 and first.shape == (3, 32, 32)
    assert not torch.equal(first, dataset[1]["image"])


def _run(tmp_path: Path, out: Path, *extra: str) -> int:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(SMALL))
    return step.main(["--params", str(params), "--out", str(out), "--quiet", *extra])


def test_step_writes_weights_the_tiny_backbone_loads(tmp_path):
    out = tmp_path / "pretrained" / "tiny_parts.pth"
    assert _run(tmp_path, out) == 0
    backbone = create_backbone("tiny", pretrained=str(out))  # strict: every key of the network, nothing else
    saved = torch.load(out, weights_only=True)
    assert set(saved) == set(backbone.state_dict())
    assert not torch.equal(
        saved["layers.0.0.weight"], create_backbone("tiny", pretrained="none").state_dict()["layers.0.0.weight"]
    )
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    summary = meta["summary"]
    assert summary["chance_accuracy"] == pytest.approx(100 / 24, abs=0.01)
    assert 0.0 <= summary["held_out_accuracy"] <= 100.0
    assert summary["iterations"] == 2 * (32 // 8)
    assert (out.parent / "tiny_parts.pth.losses.csv").read_text().count("\n") == 1 + 8


def test_step_resumes_to_the_uninterrupted_weights(tmp_path):
    whole, parted = tmp_path / "whole" / "w.pth", tmp_path / "parted" / "w.pth"
    assert _run(tmp_path, whole) == 0
    assert _run(tmp_path, parted, "--stop-after-epoch", "1") == 0
    assert not parted.exists() and parted.with_name("w.pth.resume.pt").exists()
    assert _run(tmp_path, parted) == 0
    a, b = torch.load(whole, weights_only=True), torch.load(parted, weights_only=True)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_batch_larger_than_an_epoch_is_a_config_error(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"pretrain": {"source": {"images_per_epoch": 4}, "batch_size": 8}}))
    assert step.main(["--params", str(params), "--out", str(tmp_path / "w.pth"), "--quiet"]) == 2
    assert "pretrain.batch_size" in capsys.readouterr().err
    assert not (tmp_path / "w.pth").exists()
