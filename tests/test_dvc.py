"""`dvc repro` on a copy of the finished tiny run (tiny config, no remote, no network): DVC records the
stages (Snakemake finds its work done), its no-op rerun, code and value edits, a tracked experiment
that reruns only what its key affects, and data.dvc."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from workflow_repo import copy_finished_run, copy_repo, run

pytestmark = pytest.mark.workflow

DVC = [str(Path(sys.executable).parent / "dvc")]


def _mtimes(paths: list[Path]) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in paths}


def test_repro_noop_and_experiment(tmp_path, tiny_workflow_run):
    repo = copy_finished_run(tiny_workflow_run, tmp_path / "repo")
    # The frozen import of the VOC archive is there without its data, and does not stop repro.
    assert (repo / "data.dvc").is_file() and not (repo / "data" / "downloads").exists()
    first = run(DVC + ["repro"], repo)
    assert "Running stage 'make_report'" in first.stdout
    results = repo / "results" / "synthetic"
    assert (results / "paper" / "tables" / "ablation.csv").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {
        "prepare_data",
        "pretrain_backbone",
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
    assert "Data and pipelines are up to date" in run(DVC + ["status", "dvc.yaml"], repo).stdout
    # Everything is current but the VOC archive that data.dvc versions, which a clone does not have.
    everything = run(DVC + ["status"], repo).stdout
    assert everything.split() == ["data.dvc:", "changed", "outs:", "not", "in", "cache:"] + [
        "data/downloads/VOCtrainval_11-May-2012.tar"
    ]
    # Snakemake agrees that nothing is left to do after DVC cached the outputs.
    snake = run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], repo)
    assert "Nothing to be done" in snake.stdout + snake.stderr

    # A code edit: DVC names the stage whose rules run that code, and no stage before it.
    for module, stage in (("cam/losses.py", "train_cam"), ("report/tables.py", "make_report")):
        path = repo / "src" / "pixsup" / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        try:
            status = run(DVC + ["status", "dvc.yaml"], repo).stdout
        finally:
            path.write_bytes(original)
        changed = {line.strip().rstrip(":") for line in status.splitlines() if line.endswith(":") and line[0] != "\t"}
        assert changed == {stage}, status
        assert f"modified:           src/pixsup/{module}" in status or f"src/pixsup/{module}" in status

    # A value: DVC names the stages whose steps read it (pixsup.config.STEP_KEYS), no other.
    for key, value, stages in (
        ("data.voc12.aug_md5", "0" * 32, {"prepare_data"}),
        ("pseudo_labels.bg_threshold", 0.3, {"make_pseudo_masks", "make_report"}),
        # The CAMs of train (seeds) and of train_aug (masks), and the report; not the trained networks.
        ("cam_infer.flip", False, {"make_cams", "make_pseudo_masks", "make_report"}),
    ):
        original = (repo / "params.yaml").read_bytes()
        params = yaml.safe_load(original)
        section, *middle, name = key.split(".")
        node = params[section]
        for part in middle:
            node = node[part]
        node[name] = value
        (repo / "params.yaml").write_text(yaml.safe_dump(params))
        try:
            status = run(DVC + ["status", "dvc.yaml"], repo).stdout
        finally:
            (repo / "params.yaml").write_bytes(original)
        changed = {line.strip().rstrip(":") for line in status.splitlines() if line.endswith(":") and line[0] != "\t"}
        assert changed == stages, status

    metrics = json.loads(run(DVC + ["metrics", "show", "--json"], repo).stdout)
    assert metrics, "dvc metrics show found no metrics"

    # A tracked experiment on a value of the seed evaluation: DVC reruns that stage and the report, and
    # keeps the trained networks and their CAMs (Snakemake's own plans for other values: test_workflow.py).
    # The pseudo masks follow the seed metrics (pseudo_labels.calibration: seed_curve), so their stages may
    # run again after it.
    first_run = results / "seed0"
    models = [first_run / v / "model.pt" for v in ("support", "baseline_same_budget", "rcm", "mam", "full")]
    kept = models + sorted((first_run / "full" / "cams" / "train").glob("*.npz"))
    before = _mtimes(kept)
    metrics_before = (first_run / "metrics" / "seeds_train_full.json").read_text()
    experiment = run(DVC + ["exp", "run", "-S", "cam_eval.threshold_step=0.05"], repo)
    assert "Running stage 'eval_cams'" in experiment.stdout
    assert "Running stage 'make_report'" in experiment.stdout
    for stage in ("prepare_data", "pretrain_backbone", "train_cam", "make_cams"):
        assert f"Running stage '{stage}'" not in experiment.stdout, stage
    assert _mtimes(kept) == before
    assert (first_run / "metrics" / "seeds_train_full.json").read_text() != metrics_before
    assert yaml.safe_load((repo / "params.yaml").read_text())["cam_eval"]["threshold_step"] == 0.05
    assert yaml.safe_load((results / "params" / "eval_cams.yaml").read_text())["cam_eval"]["threshold_step"] == 0.05


def test_data_dvc_fetches_the_voc_archive_and_prepare_data_depends_on_it_on_voc(tmp_path):
    """data.dvc's data is absent in a clone (the repro test above runs without it); `dvc update` fetches
    it, here from a local mirror standing in for the VOC server; on voc12, prepare_data depends on it."""
    from voc_mirror import build_mirror, md5

    repo = copy_repo(tmp_path / "repo", params={"data": {"dataset": "voc12", "root": "data/voc12/VOC2012"}})
    archive = repo / "data" / "downloads" / "VOCtrainval_11-May-2012.tar"
    assert not archive.exists()

    run([sys.executable, "-m", "pixsup.workflow_dvc"], repo)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert "data/downloads/VOCtrainval_11-May-2012.tar" in stages["prepare_data"]["deps"]
    assert "data/downloads/VOCtrainval_11-May-2012.tar" not in stages["train_cam"]["deps"]

    mirror = build_mirror(tmp_path / "mirror")
    text = (repo / "data.dvc").read_text()
    (repo / "data.dvc").write_text(text.replace(yaml.safe_load(text)["deps"][0]["path"], str(mirror["voc"])))
    run(DVC + ["update", "data.dvc"], repo)
    assert md5(archive) == md5(mirror["voc"])
    assert yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"] == md5(mirror["voc"])
