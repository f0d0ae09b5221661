"""Atomic artefact writes and provenance records."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from pixsup.files import atomic_path, save_npz, save_png, write_json
from pixsup.provenance import StepRecord, meta_path


def test_failed_write_leaves_neither_output_nor_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_version(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError
    assert json.loads(target.read_text()) == {"version": 1}


def test_outputs_get_ordinary_permissions(tmp_path):
    target = tmp_path / "a.npz"
    save_npz(target, x=np.zeros(3))
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH


def test_png_writer_keeps_palette_indices(tmp_path):
    from PIL import Image

    labels = np.array([[0, 1], [15, 255]], dtype=np.uint8)
    save_png(tmp_path / "m.png", labels, palette=[0] * 768)
    image = Image.open(tmp_path / "m.png")
    assert image.mode == "P" and np.array_equal(np.array(image), labels)
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "bad.png", labels.astype(np.int32))


def test_step_record_writes_params_versions_seed_and_time(tmp_path):
    out = tmp_path / "model.pt"
    record = StepRecord("train_cam", {"cam_train": {"lr": 0.1}}, seed=3)
    path = record.write(out, extra={"variant": "full"})
    assert path == meta_path(out) == tmp_path / "model.pt.meta.json"
    meta = json.loads(path.read_text())
    assert meta["params"] == {"cam_train": {"lr": 0.1}} and meta["seed"] == 3 and meta["variant"] == "full"
    assert meta["versions"]["torch"] and meta["versions"]["numpy"] and meta["seconds"] >= 0
    assert meta["git_commit"] is None or len(meta["git_commit"]) >= 40
