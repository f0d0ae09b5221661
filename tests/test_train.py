"""CAM training: determinism, exact resume, variants, and clear errors."""

from __future__ import annotations

import csv

import pytest
import torch

from pixsup.cam.training import train_cam
from pixsup.checkpoints import CheckpointError, load_cam_net, resume_path
from pixsup.config import parse_params


def _weights(path):
    model, _ = load_cam_net(path)
    return model.state_dict()


def _assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol, rtol=0), key


def _train(small_voc, raw, out, variant="support", **kw):
    cfg = parse_params(raw).cam_train
    return train_cam(cfg, small_voc, "train_aug", variant, out, progress=False, **kw)


def test_same_seed_same_weights_and_other_seed_differs(small_voc, small_raw, tmp_path):
    _train(small_voc, small_raw, tmp_path / "a.pt")
    _train(small_voc, small_raw, tmp_path / "b.pt")
    _assert_same(_weights(tmp_path / "a.pt"), _weights(tmp_path / "b.pt"))
    small_raw["cam_train"]["seed"] = 1
    _train(small_voc, small_raw, tmp_path / "c.pt")
    a, c = _weights(tmp_path / "a.pt"), _weights(tmp_path / "c.pt")
    assert not torch.equal(a["cam_head.weight"], c["cam_head.weight"])


@pytest.mark.parametrize("variant", ["support", "full"])
def test_resume_after_stop_matches_uninterrupted_run(small_voc, small_raw, tmp_path, variant):
    support = None
    if variant == "full":
        support = tmp_path / "support.pt"
        _train(small_voc, small_raw, support)
    _train(small_voc, small_raw, tmp_path / "whole.pt", variant, support_ckpt=support)
    out = tmp_path / "stopped.pt"
    partial = _train(small_voc, small_raw, out, variant, support_ckpt=support, stop_after_epoch=1)
    assert partial == {"finished": False, "epochs_done": 1}
    assert not out.exists() and resume_path(out).exists()
    _train(small_voc, small_raw, out, variant, support_ckpt=support)
    assert out.exists() and not resume_path(out).exists()
    _assert_same(_weights(tmp_path / "whole.pt"), _weights(out))
    rows = list(csv.DictReader(open(out.with_name(out.name + ".losses.csv"))))
    whole = list(csv.DictReader(open(tmp_path / "whole.pt.losses.csv")))
    assert rows == whole and len(rows) == 2 * (24 // 8)


def test_variants_log_their_loss_terms(small_voc, small_raw, tmp_path):
    support = tmp_path / "support.pt"
    _train(small_voc, small_raw, support)
    for variant, rcm_on, mam_on in [("rcm", True, False), ("mam", False, True), ("full", True, True)]:
        summary = _train(small_voc, small_raw, tmp_path / f"{variant}.pt", variant, support_ckpt=support)
        losses = summary["final_epoch_losses"]
        assert (losses["rcm"] > 0) == rcm_on, variant
        assert (losses["mam"] > 0) == mam_on, variant
        cfg = parse_params(small_raw).cam_train
        total = losses["cls"] + cfg.rcm.weight * losses["rcm"] + cfg.mam.weight * losses["mam"]
        assert losses["loss"] == pytest.approx(total, rel=1e-5)
    # SupportNet checkpoint untouched by MainNet training
    model, state = load_cam_net(support)
    assert state["variant"] == "support"


def test_frozen_support_required_for_self_supervision(small_voc, small_raw, tmp_path):
    with pytest.raises(ValueError, match="needs the trained SupportNet"):
        _train(small_voc, small_raw, tmp_path / "full.pt", "full")


def test_ema_support_runs_without_checkpoint_and_waits_for_warmup(small_voc, small_raw, tmp_path):
    small_raw["cam_train"]["support"] = {"kind": "ema", "ema_momentum": 0.9}
    small_raw["cam_train"]["warmup_epochs"] = 1
    _train(small_voc, small_raw, tmp_path / "ema.pt", "full")
    rows = list(csv.DictReader(open(tmp_path / "ema.pt.losses.csv")))
    first = [r for r in rows if r["epoch"] == "0"]
    second = [r for r in rows if r["epoch"] == "1"]
    assert all(float(r["rcm"]) == 0 and float(r["mam"]) == 0 for r in first)
    assert any(float(r["rcm"]) > 0 for r in second)


def test_resume_with_changed_params_is_refused(small_voc, small_raw, tmp_path):
    out = tmp_path / "m.pt"
    _train(small_voc, small_raw, out, stop_after_epoch=1)
    small_raw["cam_train"]["lr"] = 0.01
    with pytest.raises(CheckpointError, match="different params"):
        _train(small_voc, small_raw, out)


def test_corrupt_resume_checkpoint_is_named(small_voc, small_raw, tmp_path):
    out = tmp_path / "m.pt"
    resume_path(out).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="m.pt.resume.pt: corrupt"):
        _train(small_voc, small_raw, out)


def test_support_with_other_backbone_is_refused(small_voc, small_raw, tmp_path):
    support = tmp_path / "support.pt"
    _train(small_voc, small_raw, support)
    small_raw["cam_train"]["backbone"] = "resnet50"
    with pytest.raises(CheckpointError, match="differs from"):
        _train(small_voc, small_raw, tmp_path / "full.pt", "full", support_ckpt=support)


def test_multiscale_regions_change_the_rcm_term_only():
    from pixsup.cam.training import compute_losses
    from pixsup.models import create_model
    from pixsup.models.support import SupportNet

    torch.manual_seed(0)
    main = create_model("tiny", pretrained="none").eval()
    support = SupportNet(main)
    images = torch.randn(2, 3, 64, 64)
    labels = torch.zeros(2, 20)
    labels[0, 2] = labels[1, 5] = 1
    base = {"cam_train": {"backbone": "tiny", "rcm": {"fg_threshold": 0.5, "bg_threshold": 0.2}}}
    terms = {}
    for regions in ("support", "multiscale"):
        base["cam_train"]["rcm"]["regions"] = regions
        cfg = parse_params(base).cam_train
        terms[regions] = compute_losses(main, support, images, labels, cfg, use_rcm=True, use_mam=True)
    assert torch.equal(terms["support"]["mam"], terms["multiscale"]["mam"])
    assert torch.equal(terms["support"]["cls"], terms["multiscale"]["cls"])
    assert not torch.equal(terms["support"]["rcm"], terms["multiscale"]["rcm"])
