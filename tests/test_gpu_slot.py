"""The GPU slot allocator: concurrent jobs never share a device, and a scheduler's choice is kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pixsup.runtime.gpu_slot import visible_devices

from workflow_repo import tool_env

# A job that records which device it got and when it held it.
RECORD = textwrap.dedent("""
    import os, sys, time
    start = time.time(); time.sleep(float(sys.argv[2])); end = time.time()
    open(sys.argv[1], "w").write(f"{os.environ.get('CUDA_VISIBLE_DEVICES')} {start} {end}")
""")


def _launch(tmp_path: Path, name: str, env: dict[str, str], seconds: float = 0.6, gpus: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pixsup.runtime.gpu_slot",
            "--gpus",
            str(gpus),
            "--",
            sys.executable,
            "-c",
            RECORD,
            str(tmp_path / f"{name}.txt"),
            str(seconds),
        ],
        env=env,
    )


def _records(tmp_path: Path) -> list[tuple[str, float, float]]:
    records = []
    for path in sorted(tmp_path.glob("*.txt")):
        device, start, end = path.read_text().split()
        records.append((device, float(start), float(end)))
    return records


def _overlapping_on_one_device(records) -> list:
    return [
        (a, b) for i, a in enumerate(records) for b in records[i + 1 :] if a[0] == b[0] and a[1] < b[2] and b[1] < a[2]
    ]


def test_concurrent_jobs_get_distinct_devices_and_wait_for_a_free_one(tmp_path):
    env = {**os.environ, "PIXSUP_GPUS": "0,1", "PIXSUP_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    jobs = [_launch(tmp_path, f"job{i}", env) for i in range(5)]
    assert [job.wait(timeout=60) for job in jobs] == [0] * 5
    records = _records(tmp_path)
    assert len(records) == 5 and {device for device, _, _ in records} == {"0", "1"}
    assert _overlapping_on_one_device(records) == []
    # Five 0.6 s jobs on two devices need at least three rounds.
    assert max(end for _, _, end in records) - min(start for _, start, _ in records) >= 3 * 0.6 - 0.05


def test_multi_gpu_jobs_get_all_their_devices_at_once_and_never_share_one(tmp_path):
    env = {**os.environ, "PIXSUP_GPUS": "0,1,2", "PIXSUP_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    jobs = [_launch(tmp_path, f"job{i}", env, gpus=2) for i in range(3)]
    assert [job.wait(timeout=60) for job in jobs] == [0] * 3
    records = [(set(devices.split(",")), start, end) for devices, start, end in _records(tmp_path)]
    assert len(records) == 3 and all(len(devices) == 2 for devices, _, _ in records)
    # Two pairs out of three devices always share one: the jobs must have run one after another.
    assert [(a, b) for i, a in enumerate(records) for b in records[i + 1 :] if a[1] < b[2] and b[1] < a[2]] == []
    too_many = subprocess.run(
        [sys.executable, "-m", "pixsup.runtime.gpu_slot", "--gpus", "4", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert too_many.returncode == 2 and "4 GPUs asked for, 3 exist (0,1,2)" in too_many.stderr


def test_lock_is_released_when_the_job_is_killed(tmp_path):
    env = {**os.environ, "PIXSUP_GPUS": "0", "PIXSUP_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    stuck = _launch(tmp_path, "stuck", env, seconds=60)
    time.sleep(1.0)
    stuck.kill()
    stuck.wait()
    follower = _launch(tmp_path, "follower", env, seconds=0.1)
    assert follower.wait(timeout=30) == 0
    assert _records(tmp_path)[0][0] == "0"


def test_scheduler_choice_and_cpu_machines_run_unchanged():
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "3", "PIXSUP_GPUS": "0,1"}) is None
    assert visible_devices({"PIXSUP_GPUS": "none"}) is None
    assert visible_devices({"PIXSUP_GPUS": "2, 5"}) == ["2", "5"]
    assert visible_devices({"PATH": "/nonexistent"}) is None  # no nvidia-smi: CPU


def test_snakemake_never_puts_two_gpu_jobs_on_one_device(tmp_path):
    """Four GPU jobs under `snakemake --cores 4 --resources gpu=2` on two fake devices."""
    (tmp_path / "record.py").write_text(RECORD)
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(f"""
        rule all:
            input: expand("out/{{i}}.txt", i=range(4))

        rule job:
            output: "out/{{i}}.txt"
            resources: gpu=1
            shell: "{sys.executable} -m pixsup.runtime.gpu_slot -- {sys.executable} record.py {{output}} 1.0"
    """)
    )
    env = {**tool_env(), "PIXSUP_GPUS": "0,1", "PIXSUP_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = _records(tmp_path / "out")
    assert len(records) == 4 and {device for device, _, _ in records} == {"0", "1"}
    assert _overlapping_on_one_device(records) == []
