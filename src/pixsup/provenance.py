"""``<output>.meta.json``: what produced an artefact (params, code, versions, seed, time)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from .code_identity import code_digest, code_files
from .files import write_json
from .runtime.launch_env import launch_env

_PACKAGES = ("pixsup", "torch", "torchvision", "numpy", "pillow", "pydantic", "pyyaml")


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit of the checkout the code runs from, ``+dirty`` when modified; None outside git."""
    where = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def scheduler_record() -> dict[str, str] | None:
    """Where the step ran under a batch scheduler: SLURM's job and step ids and the devices it gave.

    None outside SLURM. With this, every artefact of a cluster run can be
    matched to SLURM's own job records.
    """
    if "SLURM_JOB_ID" not in os.environ:
        return None
    names = {
        "job_id": "SLURM_JOB_ID",
        "step_id": "SLURM_STEP_ID",
        "step_tasks": "SLURM_STEP_NUM_TASKS",
        "node": "SLURMD_NODENAME",
        "partition": "SLURM_JOB_PARTITION",
        "cuda_visible_devices": "CUDA_VISIBLE_DEVICES",
    }
    return {key: os.environ[var] for key, var in names.items() if var in os.environ}


def _launched_processes() -> int:
    """How many processes (DDP ranks) ran the step together; 1 without a launcher."""

    launched = launch_env()
    return launched.world_size if launched else 1


def meta_path(output: str | os.PathLike) -> Path:
    """``results/x/cams/train`` -> ``results/x/cams/train.meta.json``."""
    output = Path(output)
    return output.with_name(output.name + ".meta.json")


class StepRecord:
    """Times a step and writes its ``.meta.json`` beside the main output.

    Usage::

        record = StepRecord("train_cam", params=step_params.model_dump(mode="json"), seed=cfg.seed)
        ... work ...
        record.write(output_path, extra={"epochs_done": 5})
    """

    def __init__(self, step: str, params: dict[str, Any], seed: int | None = None) -> None:
        self.step = step
        self.params = params
        self.seed = seed
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()

    def write(self, output: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        meta = {
            "step": self.step,
            "output": str(output),
            "params": self.params,
            "seed": self.seed,
            "git_commit": git_commit(),
            # The code this step ran (its module and every pixsup module it imports), whatever git says.
            "code": {"sha256": code_digest(self.step), "files": len(code_files(self.step))},
            "versions": package_versions(),
            "python": platform.python_version(),
            "host": platform.node(),
            "slurm": scheduler_record(),
            "processes": _launched_processes(),
            "started_utc": self.started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self._t0, 3),
        }
        if extra:
            meta.update(extra)
        path = meta_path(output)
        write_json(path, meta)
        return path
