"""python -m benchmarks on small inputs: the records' shape, the output checks, and --gpu without CUDA.

Speed is never asserted: these runs only show that every stage runs and checks its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import make_cams
from benchmarks.__main__ import STAGES, run_stages
from benchmarks.context import Options
from benchmarks.measure import CheckFailed, Target, check_close

REPO = Path(__file__).resolve().parents[1]
KEYS = {"stage", "metric", "ours", "baseline", "ratio", "target", "met", "check", "note"}


def _benchmarks(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, list[dict]]:
    tmp = tmp_path_factory.mktemp("benchmarks")
    out = tmp / "records.json"
    # An empty folder as the workflow root: the stages that need a finished run say why they skip.
    done = _benchmarks("--quick", "--out", str(out), "--workflow-root", str(tmp))
    return done, json.loads(out.read_text()) if out.is_file() else []


def test_quick_run_writes_a_record_of_every_stage(quick_run) -> None:
    done, records = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert {r["stage"] for r in records} == set(STAGES)
    for record in records:
        assert set(record) == KEYS
        if record["note"].startswith("skipped: "):
            assert record["ours"] is None and record["met"] is None
            continue
        assert record["ours"] >= 0 and record["baseline"] >= 0
        if record["baseline"] and record["target"].startswith("ratio"):
            assert record["ratio"] == pytest.approx(record["ours"] / record["baseline"], rel=1e-3)
        assert isinstance(record["met"], bool) and record["target"]
    assert "| stage | metric | ours | baseline | ratio | target | met? |" in done.stdout


def test_every_stage_that_ran_passed_its_output_check(quick_run) -> None:
    _, records = quick_run
    ran = [r for r in records if not r["note"].startswith("skipped: ")]
    assert {r["stage"] for r in ran} == set(STAGES) - {"workflow"}
    for stage in {r["stage"] for r in ran}:
        checks = [r["check"] for r in ran if r["stage"] == stage]
        assert any(checks) and not any(c.startswith("FAILED") for c in checks), (stage, checks)


def test_stages_without_a_finished_run_say_why(quick_run) -> None:
    _, records = quick_run
    workflow = [r for r in records if r["stage"] == "workflow"]
    assert len(workflow) == 2 and all("holds no params.yaml" in r["note"] for r in workflow)


def test_a_wrong_baseline_output_fails_the_check(monkeypatch) -> None:
    original = make_cams.baseline_cams

    def off_by_a_little(*args, **kwargs):
        low, high = original(*args, **kwargs)
        return low, high + 1e-3

    monkeypatch.setattr(make_cams, "baseline_cams", off_by_a_little)
    with pytest.raises(CheckFailed, match="fp32"):
        make_cams.run(Options(quick=True))
    records, failed = run_stages(["make_cams"], Options(quick=True))
    assert failed == ["make_cams"] and records[0]["check"].startswith("FAILED: normalised CAMs, fp32")


def test_check_close_and_targets() -> None:
    assert "<= 0.1" in check_close("x", [torch.zeros(3)], [torch.full((3,), 0.05)], 0.1)
    with pytest.raises(CheckFailed):
        check_close("x", [torch.zeros(3)], [torch.full((3,), float("nan"))], 0.1)
    with pytest.raises(CheckFailed, match="shapes"):
        check_close("x", [torch.zeros(3)], [torch.zeros(4)], 0.1)
    assert Target(">=", 3.0).met(3.0, 1.0) and not Target("<", 1.0).met(3.0, 3.0)
    assert Target("<=", 0.2, "difference").met(36.6, 36.765) and str(Target(">=", 3.0)) == "ratio >= 3"


def test_gpu_without_cuda_exits_with_a_clear_message() -> None:
    done = _benchmarks("--gpu", env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert done.returncode != 0
    assert "needs a CUDA device" in done.stderr and "Traceback" not in done.stderr


def test_help_names_the_stages() -> None:
    done = _benchmarks("--help")
    assert done.returncode == 0 and all(stage in done.stdout for stage in STAGES)
