"""The Snakemake workflow on a copy of the repository with the tiny config: lint, DAG, a real run, reruns, bad input."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from voc_mirror import EXTRA, TRAIN, build_mirror, md5
from workflow_repo import TINY_PARAMS, copy_repo, jobs_by_rule, merged, run

pytestmark = pytest.mark.workflow

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RULES = [
    "write_params",
    "write_run_params",
    "prepare_data",
    "check_downloads",
    "validate_data",
    "pretrain_backbone",
    "train_cam",
    "make_cams",
    "gather_cams",
    "eval_cams",
    "make_ir_labels",
    "train_irn",
    "make_pseudo_masks",
    "eval_masks",
    "train_seg",
    "make_seg_preds",
    "eval_seg",
    "make_test_submission",
    "make_report",
    "all",
]
VARIANTS = ["support", "baseline_same_budget", "rcm", "mam", "full"]


@pytest.fixture
def finished_run(tiny_workflow_run) -> Path:
    return tiny_workflow_run


def test_lint_and_format_are_clean(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    lint = run(SNAKEMAKE + ["--lint"], repo)
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr
    run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], repo)


def test_dry_run_has_every_rule(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    counts = jobs_by_rule(run(SNAKEMAKE + ["-n", "--cores", "2"], repo).stdout)
    assert set(counts) == set(RULES)
    assert counts["train_cam"] == len(VARIANTS) and counts["write_run_params"] == 3  # train_cam, train_irn, train_seg
    assert counts["pretrain_backbone"] == 1  # shared by the runs, the tiny config's cam_train.pretrained is auto
    # train for every variant, train_aug for the pseudo-label variant (full).
    assert counts["make_cams"] == (len(VARIANTS) + 1) * TINY_PARAMS["cam_infer"]["num_shards"]
    assert counts["gather_cams"] == len(VARIANTS) + 1 and counts["eval_cams"] == len(VARIANTS)
    assert counts["make_pseudo_masks"] == counts["eval_masks"] == 3  # irn, crf, cam
    assert counts["make_seg_preds"] == counts["eval_seg"] == 2  # single and multi-scale


def test_run_produces_the_report_and_a_rerun_does_nothing(finished_run):
    paper = finished_run / "results" / "synthetic" / "paper"
    for name in ("seeds_masks", "segmentation", "ablation"):
        for ext in ("csv", "md", "tex"):
            assert (paper / "tables" / f"{name}.{ext}").stat().st_size > 0
    for name in ("cam_gallery", "threshold_curves", "ablation_intervals", "loss_curves"):
        assert (paper / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        with Image.open(paper / "figures" / f"{name}.png") as image:
            assert image.width > 100 and image.height > 100
    readme = (paper / "README.md").read_text()
    assert "tables/ablation.csv" in readme and "figures/cam_gallery.png" in readme
    assert re.search(r"git commit: `[0-9a-f]{40}", readme)
    # Every log and benchmark mirrors its rule.
    assert (finished_run / "logs" / "synthetic" / "seed0" / "train_cam" / "full.log").stat().st_size > 0
    assert (finished_run / "logs" / "synthetic" / "seed0" / "benchmarks" / "train_cam" / "full.tsv").is_file()

    again = run(SNAKEMAKE + ["-n", "--cores", "2"], finished_run)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_report_tables_equal_the_metrics(finished_run):
    results = finished_run / "results" / "synthetic"
    ablation = pd.read_csv(results / "paper" / "tables" / "ablation.csv")
    assert list(ablation.columns[:7]) == [
        "variant",
        "rcm",
        "mam",
        "seeds",
        "seed_miou",
        "seed_miou_sd",
        "best_threshold",
    ]
    labels = {"support": "baseline", "baseline_same_budget": "baseline (same budget)"}
    seed_miou = {
        variant: json.loads((results / "seed0" / "metrics" / f"seeds_train_{variant}.json").read_text())
        for variant in VARIANTS
    }
    for variant, metrics in seed_miou.items():
        row = ablation[ablation["variant"] == labels.get(variant, variant)].iloc[0]
        assert row["seed_miou"] == pytest.approx(metrics["miou"])
        assert row["best_threshold"] == pytest.approx(metrics["best_threshold"])
        assert bool(row["rcm"]) == (variant in ("rcm", "full")) and bool(row["mam"]) == (variant in ("mam", "full"))
        # One seed: the differences are those of the metrics files, inside their intervals.
        for reference, column in (("support", "vs_support"), ("baseline_same_budget", "vs_same_budget")):
            if variant == reference:
                assert pd.isna(row[column])
                continue
            assert row[column] == pytest.approx(metrics["miou"] - seed_miou[reference]["miou"], abs=2e-3)
            assert row[f"{column}_low"] <= row[column] <= row[f"{column}_high"]
            assert (column in str(row["interval_includes_0"])) == (row[f"{column}_low"] <= 0 <= row[f"{column}_high"])
    seeds = pd.read_csv(results / "paper" / "tables" / "seeds_masks.csv")
    assert list(seeds.columns[:6]) == ["method", "backbone", "seed_miou", "seed_miou_sd", "mask_miou", "mask_miou_sd"]
    irn = seeds[seeds["method"] == "IRN"].iloc[0]
    assert irn["seed_miou"] == 48.3 and irn["mask_miou"] == 66.5 and "CVPR 2019" in irn["source"]
    full = json.loads((results / "seed0" / "metrics" / "seeds_train_full.json").read_text())
    full_row = seeds[seeds["method"] == "ours: full + irn masks"].iloc[0]
    assert full_row["seed_miou"] == pytest.approx(full["miou"])
    irn_masks = json.loads((results / "seed0" / "metrics" / "masks" / "train_full_irn.json").read_text())
    assert full_row["mask_miou"] == pytest.approx(irn_masks["miou"])
    for method in ("irn", "crf", "cam"):
        masks = json.loads((results / "seed0" / "metrics" / "masks" / f"train_full_{method}.json").read_text())
        row = seeds[seeds["method"] == f"ours: full + {method} masks"].iloc[0]
        assert row["mask_miou"] == pytest.approx(masks["miou"])
        # One seed: masks minus seeds is the difference of the metrics files, inside its interval.
        assert row["mask_vs_seeds"] == pytest.approx(masks["miou"] - full["miou"], abs=2e-3)
        assert row["mask_vs_seeds_low"] <= row["mask_vs_seeds"] <= row["mask_vs_seeds_high"]
    segmentation = pd.read_csv(results / "paper" / "tables" / "segmentation.csv")
    assert list(segmentation.columns) == ["method", "backbone", "val_miou", "val_miou_sd", "test_miou", "source"]
    for mode, label in (("ss", "single scale"), ("ms", "multi-scale + flip")):
        val = json.loads((results / "seed0" / "metrics" / "seg" / f"val_{mode}.json").read_text())
        row = segmentation[segmentation["method"] == f"ours: full + irn masks, {label}"].iloc[0]
        assert row["val_miou"] == pytest.approx(val["miou"]) and pd.isna(row["test_miou"])
    summary = json.loads((results / "paper" / "summary.json").read_text())
    assert summary["mask_miou"]["full/irn"] == pytest.approx(irn_masks["miou"])
    assert summary["mask_vs_seeds"]["full/irn"][0] == pytest.approx(irn_masks["miou"] - full["miou"], abs=2e-3)


def _dry_run_with(finished_run: Path, changes: dict, *flags: str) -> dict[str, int] | str:
    """The jobs `snakemake -n` plans with ``changes`` merged into params.yaml (its whole output with
    ``flags``); the file is restored afterwards (other tests share the finished run)."""
    path = finished_run / "params.yaml"
    original = path.read_bytes()
    path.write_text(yaml.safe_dump(merged(yaml.safe_load(original), changes)))
    try:
        output = run(SNAKEMAKE + ["-n", "--cores", "2", *flags], finished_run).stdout
        return output if flags else jobs_by_rule(output)
    finally:
        path.write_bytes(original)


def test_another_training_seed_runs_only_the_new_run_and_the_report(finished_run):
    counts = _dry_run_with(finished_run, {"experiment": {"seeds": [0, 3]}})
    # Seed 3 is a whole new run: every network, CAM and evaluation once more. Seed 0's run stays.
    assert counts["train_cam"] == len(VARIANTS) and counts["eval_cams"] == len(VARIANTS)
    assert counts["write_run_params"] == 3 and counts["train_irn"] == 1 and counts["train_seg"] == 1
    assert counts["make_report"] == 1 and counts.get("prepare_data", 0) == 0
    output = _dry_run_with(finished_run, {"experiment": {"seeds": [0, 3]}}, "-p", "results/synthetic/paper/README.md")
    # The report reads both runs, in seed order.
    report = next(line for line in output.splitlines() if "pixsup.steps.make_report" in line)
    assert re.findall(r"full=(\S+seeds_train_full\.json)", report) == [
        "results/synthetic/seed0/metrics/seeds_train_full.json",
        "results/synthetic/seed3/metrics/seeds_train_full.json",
    ]
    # Run 3's training seeds are the configured ones plus 3.
    train_cam = next(line for line in output.splitlines() if "pixsup.steps.write_params --step train_cam" in line)
    assert '"seed": 3' in train_cam, train_cam


def test_cam_infer_change_reruns_from_make_cams_not_training(finished_run):
    counts = _dry_run_with(finished_run, {"cam_infer": {"flip": False}})
    assert counts.get("train_cam", 0) == 0 and counts.get("prepare_data", 0) == 0
    assert counts["make_cams"] == (len(VARIANTS) + 1) * TINY_PARAMS["cam_infer"]["num_shards"]
    assert counts["eval_cams"] == len(VARIANTS) and counts["make_report"] == 1
    assert counts["train_irn"] == 1 and counts["train_seg"] == 1  # the CAMs they read changed


def test_a_pretraining_change_reruns_pretraining_and_every_training_not_the_data(finished_run):
    counts = _dry_run_with(finished_run, {"pretrain": {"seed": 1}})
    # The SupportNet starts from the pretrained file, every other network from the SupportNet.
    assert counts["pretrain_backbone"] == 1 and counts["train_cam"] == len(VARIANTS)
    assert counts["make_report"] == 1 and counts.get("prepare_data", 0) == 0
    # Weights of one's own instead: no pretraining is planned at all.
    counts = _dry_run_with(finished_run, {"cam_train": {"pretrained": "none"}})
    assert counts.get("pretrain_backbone", 0) == 0 and counts["train_cam"] == len(VARIANTS)


def test_pinning_a_download_md5_reruns_its_check_and_nothing_else(finished_run):
    counts = _dry_run_with(finished_run, {"data": {"voc12": {"aug_md5": "0" * 32}}})
    # The step's params file is rewritten and the check reruns; the data, the trainings and the report stay.
    assert {rule: n for rule, n in counts.items() if rule != "all"} == {"write_params": 1, "check_downloads": 1}


def test_a_mask_threshold_reruns_mask_making_and_what_follows_not_irn_training(finished_run):
    counts = _dry_run_with(finished_run, {"pseudo_labels": {"bg_threshold": 0.3}})
    methods = len(yaml.safe_load((finished_run / "params.yaml").read_text())["pseudo_labels"]["compare_methods"])
    assert counts["make_pseudo_masks"] == methods and counts["eval_masks"] == methods
    assert counts["train_seg"] == 1 and counts["make_report"] == 1
    for before in ("train_irn", "make_ir_labels", "train_cam", "make_cams", "prepare_data"):
        assert counts.get(before, 0) == 0, counts


def test_snakemake_report_renders_the_tables_and_figures(finished_run):
    run(SNAKEMAKE + ["--cores", "1", "--report", "report.html"], finished_run)
    html = (finished_run / "report.html").read_text(errors="replace")
    assert "ablation.csv" in html and "cam_gallery.png" in html


# ------------------------------------------------------------------ bad input


def _params_with(**changes) -> dict:
    params = json.loads(json.dumps(TINY_PARAMS))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = params
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    return params


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"data__dataset": "voc07"}, "data.dataset: Input should be 'synthetic' or 'voc12'"),
        ({"cam_train__lrr": 0.1}, "unknown key 'cam_train.lrr'"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, changes, message):
    repo = copy_repo(tmp_path / "repo", _params_with(**changes))
    result = run(SNAKEMAKE + ["-n", "--cores", "1"], repo, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (repo / "results").exists()


def test_voc12_is_fetched_from_a_mirror_and_validated(tmp_path):
    mirror = build_mirror(tmp_path / "mirror")
    params = _params_with(
        data__dataset="voc12",
        data__root="data/voc12/VOC2012",
        data__voc12={
            "voc_url": mirror["voc"].as_uri(),
            "voc_md5": md5(mirror["voc"]),
            "aug_url": mirror["aug"].as_uri(),
            "aug_md5": None,
            "archive_dir": str(tmp_path / "archives"),
        },
    )
    repo = copy_repo(tmp_path / "repo", params)
    run(SNAKEMAKE + ["--cores", "1", "dataset"], repo)
    manifest = json.loads((repo / "results" / "voc12" / "data" / "prepared.json").read_text())
    assert manifest["splits"]["train_aug"] == len(TRAIN + EXTRA)
    assert manifest["archives"]["SegmentationClassAug.zip"]["md5"] == md5(mirror["aug"])
    report = json.loads((repo / "results" / "voc12" / "data" / "validate_train.json").read_text())
    assert report["problems"] == [] and report["ids"] == len(TRAIN)


def test_missing_data_root_fails_in_prepare_data_naming_root_and_source(tmp_path):
    missing = tmp_path / "nowhere" / "VOCtrainval_11-May-2012.tar"
    params = _params_with(
        data__dataset="voc12",
        data__root="data/voc12/VOC2012",
        data__voc12={"voc_url": missing.as_uri(), "archive_dir": str(tmp_path / "archives")},
    )
    repo = copy_repo(tmp_path / "repo", params)
    result = run(SNAKEMAKE + ["--cores", "1", "dataset"], repo, check=False)
    assert result.returncode != 0
    log = (repo / "logs" / "voc12" / "prepare_data.log").read_text()
    assert missing.as_uri() in log and "cannot download" in log
    assert not (repo / "data" / "voc12" / "VOC2012").exists()
    assert not (repo / "results" / "voc12" / "data" / "prepared.json").exists()


def test_corrupt_dataset_fails_in_validate_data_and_nothing_downstream_runs(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    run(SNAKEMAKE + ["--cores", "2", "results/synthetic/data/prepared.json"], repo)
    root = repo / "data" / "synthetic" / "VOC2012"
    victim = (root / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()[3]
    (root / "JPEGImages" / f"{victim}.jpg").write_bytes(b"not a jpeg")
    result = run(SNAKEMAKE + ["--cores", "2"], repo, check=False)
    assert result.returncode != 0
    # The image is in train and train_aug: whichever validation ran first names it and stops the run.
    logs = [path.read_text() for path in (repo / "logs" / "synthetic" / "validate_data").glob("*.log")]
    assert any(f"{victim}.jpg" in log for log in logs)
    assert not list((repo / "results" / "synthetic").rglob("model.pt"))
    assert not (repo / "results" / "synthetic" / "data" / "validate_train_aug.json").exists()


def test_two_gpu_training_runs_as_two_torchrun_processes(tmp_path):
    repo = copy_repo(tmp_path / "repo", merged(TINY_PARAMS, {"cam_train": {"gpus": 2}}))
    result = run(SNAKEMAKE + ["--cores", "2", "-p", "results/synthetic/seed0/support/model.pt"], repo)
    assert "python -m pixsup.runtime.launch --nproc 2 --" in result.stdout + result.stderr
    meta = json.loads((repo / "results" / "synthetic" / "seed0" / "support" / "model.pt.meta.json").read_text())
    assert meta["processes"] == 2 and meta["slurm"] is None


def _dry_run_after_editing(finished_run: Path, module: str, text: str) -> dict[str, int]:
    """The jobs `snakemake -n` plans after appending ``text`` to ``src/pixsup/<module>``; the file and its
    time stamp are restored afterwards (other tests share the finished run)."""
    path = finished_run / "src" / "pixsup" / module
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(original + text.encode())
    try:
        return jobs_by_rule(run(SNAKEMAKE + ["-n", "--cores", "2"], finished_run).stdout)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_loss_edit_reruns_cam_training_and_what_follows_only(finished_run):
    counts = _dry_run_after_editing(finished_run, "cam/losses.py", "\nLOSS_SCALE = 2.0\n")
    assert counts["train_cam"] == len(VARIANTS)
    assert counts["make_cams"] >= len(VARIANTS) and counts["eval_cams"] == len(VARIANTS)
    assert counts["train_irn"] == 1 and counts["train_seg"] == 1 and counts["make_report"] == 1
    for before in ("write_params", "prepare_data", "validate_data"):
        assert counts.get(before, 0) == 0, counts


def test_a_report_edit_reruns_the_report_only(finished_run):
    counts = _dry_run_after_editing(finished_run, "report/tables.py", "\n# a comment also reruns it\n")
    assert {rule: n for rule, n in counts.items() if rule != "all"} == {"make_report": 1}
