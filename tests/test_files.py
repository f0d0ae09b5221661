"""Atomic artefact writes and provenance records."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from pixsup import files
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


def test_killed_writers_temporaries_are_removed_and_running_ones_kept(tmp_path):
    import socket
    import subprocess
    import sys

    host = socket.gethostname().split(".")[0]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    names = {
        "killed": f".model.pt.{host}-{dead_pid}.k2x9_ab.tmp.pt",
        "running": f".model.pt.{host}-{os.getpid()}.q1w2e3r4.tmp.pt",
        "other_host": f".model.pt.elsewhere-{dead_pid}.z9y8x7w6.tmp.pt",
        "artefact": "model.pt",
    }
    for name in names.values():
        (tmp_path / name).write_text("x")
    assert files.remove_stale_temporaries(tmp_path) == [tmp_path / names["killed"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "killed")
    # The writer's own temporary names carry this host and process.
    with files.atomic_path(tmp_path / "a.json") as tmp:
        assert tmp.name.startswith(f".a.json.{host}-{os.getpid()}.") and tmp.name.endswith(".tmp.json")
        tmp.write_text("{}")
