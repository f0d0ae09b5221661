"""Workflow overhead: `snakemake --cores all` and `dvc repro` with nothing to do, on a finished run.

The baseline is the target itself (3 s); ratio = ours / 3 s. Each command is
timed only after a dry run (`snakemake -n`, `dvc status`) shows it has nothing
to do, so timing never starts a pipeline; without a finished run, or with work
left, the stage is skipped and says why.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .context import FinishedRun, Options, finished_run
from .measure import CheckFailed, Record, Target, skipped

STAGE = "workflow"
TARGET_SECONDS = 3.0
UNDER_TARGET = Target("<", 1.0)
SNAKEMAKE_METRIC = "`snakemake --cores all` seconds, nothing to do, vs 3 s"
DVC_METRIC = "`dvc repro` seconds, nothing to do, vs 3 s"
NOTHING_TO_DO = "Nothing to be done"


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(cmd: list[str], root: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1"
    )
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def _median_seconds(cmd: list[str], root: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = _run(cmd, root)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise CheckFailed(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-500:]}")
    return statistics.median(times)


def _snakemake(run: FinishedRun, repeats: int) -> Record:
    command = [_tool("snakemake"), "--cores", "all"]
    dry = _run(command + ["-n"], run.root)
    if dry.returncode != 0 or NOTHING_TO_DO not in dry.stdout + dry.stderr:
        return skipped(STAGE, SNAKEMAKE_METRIC, f"snakemake -n in {run.root} finds work to do", UNDER_TARGET)
    seconds = _median_seconds(command, run.root, repeats)
    if NOTHING_TO_DO not in (after := _run(command + ["-n"], run.root)).stdout + after.stderr:
        raise CheckFailed("snakemake found work to do after the timed no-op runs")
    return Record(
        STAGE,
        SNAKEMAKE_METRIC,
        seconds,
        TARGET_SECONDS,
        UNDER_TARGET,
        "snakemake -n: nothing to be done",
        str(run.root),
    )


def _dvc(run: FinishedRun, repeats: int) -> Record:
    if not (run.root / "dvc.lock").is_file():
        return skipped(STAGE, DVC_METRIC, f"no dvc.lock in {run.root}: dvc repro has not run there", UNDER_TARGET)
    status = _run([_tool("dvc"), "status", "--json"], run.root)
    if status.returncode != 0 or json.loads(status.stdout or "null") != {}:
        return skipped(STAGE, DVC_METRIC, f"dvc status in {run.root} finds stages to run", UNDER_TARGET)
    seconds = _median_seconds([_tool("dvc"), "repro"], run.root, repeats)
    return Record(STAGE, DVC_METRIC, seconds, TARGET_SECONDS, UNDER_TARGET, "dvc status: up to date", str(run.root))


def run(options: Options) -> list[Record]:
    run_or_reason = finished_run(options)
    if isinstance(run_or_reason, str):
        return [skipped(STAGE, metric, run_or_reason, UNDER_TARGET) for metric in (SNAKEMAKE_METRIC, DVC_METRIC)]
    repeats = 1 if options.quick else 3
    return [_snakemake(run_or_reason, repeats), _dvc(run_or_reason, repeats)]
