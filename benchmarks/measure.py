"""What every benchmark shares: records, targets, output checks, interleaved timing and peak memory.

A machine shared with other jobs makes single timings meaningless, so every
figure is a median over repeats, and ours and the baseline are timed turn by
turn (``interleaved_seconds``) so that a burst of load hits both alike.

Run as a script, this module is the child of :func:`in_fresh_process`.
"""

from __future__ import annotations

import importlib
import json
import operator
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


class CheckFailed(AssertionError):
    """Ours and the baseline disagree beyond the stated tolerance: the figures would compare different work."""


@dataclass(frozen=True)
class Target:
    """What a record must show: its ratio (ours / baseline), or the difference |ours - baseline|,
    compared with ``value`` by ``op`` (<, <= or >=)."""

    op: str
    value: float
    on: str = "ratio"  # or "difference"

    def met(self, ours: float, baseline: float) -> bool | None:
        """Whether the figures meet the target; None for a ratio to a zero baseline."""
        if self.on == "difference":
            return _COMPARISONS[self.op](abs(ours - baseline), self.value)
        return _COMPARISONS[self.op](ours / baseline, self.value) if baseline else None

    def __str__(self) -> str:
        return f"{'|ours - baseline|' if self.on == 'difference' else 'ratio'} {self.op} {self.value:.3g}"


_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}


@dataclass
class Record:
    """One figure of one stage: ours, the baseline's in the same run, and the target (None: for information)."""

    stage: str
    metric: str
    ours: float | None
    baseline: float | None
    target: Target | None = None
    check: str = ""  # the output check that passed before timing
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / baseline; None where the target is on the difference (or a figure is missing or zero)."""
        if self.ours is None or not self.baseline or (self.target and self.target.on == "difference"):
            return None
        return self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ours is None or self.baseline is None:
            return None
        return self.target.met(self.ours, self.baseline)

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "metric": self.metric,
            "ours": _rounded(self.ours),
            "baseline": _rounded(self.baseline),
            "ratio": _rounded(self.ratio),
            "target": str(self.target) if self.target else None,
            "met": self.met,
            "check": self.check,
            "note": self.note,
        }


def skipped(stage: str, metric: str, reason: str, target: Target | None = None) -> Record:
    """A record without figures, saying why."""
    return Record(stage, metric, None, None, target, note=f"skipped: {reason}")


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


COLUMNS = ("stage", "metric", "ours", "baseline", "ratio", "target", "met?")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")  # a Markdown cell


def table(records: list[dict]) -> str:
    """The records as a Markdown table, checks and notes below it."""
    rows = [[_cell(r[k]) for k in ("stage", "metric", "ours", "baseline", "ratio", "target", "met")] for r in records]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    notes = [
        f"- {r['stage']}, {r['metric']}: " + "; ".join(filter(None, [r["check"], r["note"]]))
        for r in records
        if r["check"] or r["note"]
    ]
    return "\n".join(lines + ([""] + notes if notes else []))


def max_abs_difference(ours: Any, baseline: Any) -> float:
    """The largest |ours - baseline| over arrays (or lists of arrays) of the same shapes."""
    return max(
        (
            float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
            if np.size(a)
            else 0.0
        )
        for a, b in _pairs(ours, baseline)
    )


def check_close(what: str, ours: Any, baseline: Any, atol: float) -> str:
    """Raise CheckFailed unless every value of ``ours`` is within ``atol`` of ``baseline``; describe the check."""
    diff = max_abs_difference(ours, baseline)
    if not diff <= atol:  # NaN fails too
        raise CheckFailed(f"{what}: ours and the baseline differ by up to {diff:.3g} (tolerance {atol:g})")
    return f"{what}: max |ours - baseline| {diff:.2g} <= {atol:g}"


def check_equal(what: str, ours: Any, baseline: Any) -> str:
    """Raise CheckFailed unless ``ours`` and ``baseline`` are identical; describe the check."""
    for a, b in _pairs(ours, baseline):
        if not np.array_equal(np.asarray(a), np.asarray(b)):
            raise CheckFailed(f"{what}: ours and the baseline differ")
    return f"{what}: identical"


def _pairs(ours: Any, baseline: Any) -> list[tuple[Any, Any]]:
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    baseline = baseline if isinstance(baseline, (list, tuple)) else [baseline]
    if len(ours) != len(baseline):
        raise CheckFailed(f"ours gives {len(ours)} outputs, the baseline {len(baseline)}")
    for a, b in zip(ours, baseline):
        if np.shape(a) != np.shape(b):
            raise CheckFailed(f"shapes differ: ours {np.shape(a)}, the baseline {np.shape(b)}")
    return list(zip(ours, baseline))


def interleaved_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each run over ``repeats`` rounds, every round running each once in turn."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def in_fresh_process(job: str, **kwargs: Any) -> tuple[Any, float, float]:
    """Run a job in a new interpreter, so that its peak memory is its own.

    ``job`` names ``module:function``; ``function(**kwargs)`` prepares the inputs
    and returns the call to measure. Returns (its result, its seconds, its peak
    resident memory in MB above what was resident before the call; Linux only).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pt"
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.measure", job, json.dumps(kwargs), str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{job} failed in its own process:\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return torch.load(out), figures["seconds"], figures["peak_mb"]


def _memory_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, from Linux's /proc."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


def _child(job: str, kwargs: str, out: str) -> None:
    module, function = job.split(":")
    call = getattr(importlib.import_module(module), function)(**json.loads(kwargs))
    Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from what is resident now
    before = _memory_mb("VmRSS")
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    peak = _memory_mb("VmHWM") - before
    torch.save(result, out)
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
