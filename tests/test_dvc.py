"""`dvc repro` on a copy of the finished tiny run (tiny config, no remote, no network): DVC records the
stages (Snakemake finds its work done), its no-op rerun, code edits, and a tracked experiment that
reruns only what its key affects."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from workflow_repo import copy_finished_run, run

pytestmark = pytest.mark.workflow

DVC = [str(Path(sys.executable).parent / "dvc")]


def _mtimes(paths: list[Path]) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in paths}


def test_repro_noop_and_experiment(tmp_path, tiny_workflow_run):
    repo = copy_finished_run(tiny_workflow_run, tmp_path / "repo")
    first = run(DVC + ["repro"], repo)
    assert "Running stage 'make_report'" in first.stdout
    results = repo / "results" / "synthetic"
    assert (results / "paper" / "tables" / "ablation.csv").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {
        "prepare_data",
        "train_cam",
        "make_cams",
        "eval_cams",
        "make_pseudo_masks",
        "train_seg",
        "make_report",
    }
    data_out = next(o for o in lock["stages"]["prepare_data"]["outs"] if o["path"] == "data/synthetic/VOC2012")
    assert data_out["md5"].endswith(".dir") and data_out["nfiles"] > 0

    second = run(DVC + ["repro"], repo)
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in run(DVC + ["status"], repo).stdout
    # Snakemake agrees that nothing is left to do after DVC cached the outputs.
    snake = run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], repo)
    assert "Nothing to be done" in snake.stdout + snake.stderr

    # A code edit: DVC names the stage whose rules run that code, and no stage before it.
    for module, stage in (("cam/losses.py", "train_cam"), ("report/tables.py", "make_report")):
        path = repo / "src" / "pixsup" / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        try:
            status = run(DVC + ["status"], repo).stdout
        finally:
            path.write_bytes(original)
        changed = {line.strip().rstrip(":") for line in status.splitlines() if line.endswith(":") and line[0] != "\t"}
        assert changed == {stage}, status
        assert f"modified:           src/pixsup/{module}" in status or f"src/pixsup/{module}" in status

    metrics = json.loads(run(DVC + ["metrics", "show", "--json"], repo).stdout)
    assert metrics, "dvc metrics show found no metrics"

    models = [results / variant / "model.pt" for variant in ("support", "baseline_same_budget", "rcm", "mam", "full")]
    before = _mtimes(models)
    cams_before = _mtimes(sorted((results / "full" / "cams" / "train").glob("*.npz")))
    experiment = run(DVC + ["exp", "run", "-S", "cam_infer.flip=false"], repo)
    assert "Running stage 'make_cams'" in experiment.stdout
    assert "Running stage 'train_cam'" not in experiment.stdout
    assert "Running stage 'prepare_data'" not in experiment.stdout
    # The CAMs changed, so pseudo masks and segmentation follow; the CAM networks stay as they were.
    assert "Running stage 'make_pseudo_masks'" in experiment.stdout
    assert _mtimes(models) == before
    assert _mtimes(sorted((results / "full" / "cams" / "train").glob("*.npz"))) != cams_before
    assert yaml.safe_load((repo / "params.yaml").read_text())["cam_infer"]["flip"] is False
    assert yaml.safe_load((results / "params" / "make_cams.yaml").read_text())["cam_infer"]["flip"] is False
