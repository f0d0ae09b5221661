"""Every GPU step, killed mid-run, frees its device within seconds and leaves no process behind.

How a step dies, and what delivers it:
  SIGKILL to the step   kill -9; the OOM killer when it picks the step; SLURM after KillWait
  SIGTERM to the step   kill; timeout; scancel (SLURM's own scancel test is in test_slurm.py)
  SIGKILL to a worker   the OOM killer when it picks a loader or pool worker: the step must
                        stop with an error, not wait for the lost worker forever

Each case runs the step as the workflow does (``python -m pixsup.runtime.gpu_slot -- python -m
pixsup.steps.<step> ...``) on a fake device, kills it once its workers run (or once it writes),
and then starts the next job on that device. The step's output must not look finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from pixsup.checkpoints import save_cam_net
from pixsup.config import parse_params
from pixsup.data.synthetic import generate_synthetic
from pixsup.models import create_model
from pixsup.steps import make_cams, make_ir_labels, make_pseudo_masks, train_irn, train_seg

from conftest import SMALL_RAW, TINY_PSEUDO, TINY_SEG, write_params

# A job that records which device it got and when.
RECORD = textwrap.dedent("""
    import os, sys, time
    open(sys.argv[1], "w").write(f"{os.environ.get('CUDA_VISIBLE_DEVICES')} {time.time()}")
""")

TINY = {
    **SMALL_RAW,
    "data": {
        "synthetic": {"num_train": 8, "num_aug_extra": 8, "num_val": 4, "num_test": 8, "min_side": 200, "max_side": 240}
    },
    "cam_infer": {"scales": [1.0], "flip": False},
    "pseudo_labels": TINY_PSEUDO,
    "seg_train": TINY_SEG,
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """The inputs of every GPU step: images, a CAM network, CAMs, IR labels, a boundary network, masks
    and a segmentation network (all tiny; the steps under test only need them to be valid)."""
    folder = tmp_path_factory.mktemp("signals")
    root = folder / "VOC2012"
    generate_synthetic(root, parse_params(TINY).data.synthetic, progress=False)
    params = write_params(folder / "params.yaml", TINY)
    torch.manual_seed(0)
    cam_model = folder / "cam.pt"
    save_cam_net(cam_model, create_model("tiny", proj_dim=8, pretrained="none"), "tiny", 8, {})
    files = {"folder": folder, "root": root, "params": params, "cam_model": cam_model}
    common = ["--params", str(params), "--root", str(root), "--quiet"]
    files["cams"] = folder / "cams"
    assert (
        make_cams.main([*common, "--split", "train_aug", "--model", str(cam_model), "--out", str(files["cams"])]) == 0
    )
    files["ir_labels"] = folder / "ir_labels"
    assert make_ir_labels.main([*common, "--cams", str(files["cams"]), "--out", str(files["ir_labels"])]) == 0
    files["irn"] = folder / "irn.pt"
    irn_args = ["--labels", str(files["ir_labels"]), "--cam-model", str(cam_model), "--out", str(files["irn"])]
    assert train_irn.main([*common, *irn_args]) == 0
    files["masks"] = folder / "masks"
    mask_args = ["--cams", str(files["cams"]), "--method", "cam", "--out", str(files["masks"])]
    assert make_pseudo_masks.main([*common, *mask_args]) == 0
    files["seg"] = folder / "seg.pt"
    seg_args = ["--split", "train_aug", "--masks", str(files["masks"]), "--cam-model", str(cam_model)]
    assert train_seg.main([*common, *seg_args, "--out", str(files["seg"])]) == 0
    return files


# step: (params changed for a run long enough to kill, arguments, whether it forks workers,
#        the file that exists only when the step finished)
def _cases(files: dict[str, Path], out: Path) -> dict[str, tuple[dict, list[str], bool, Path]]:
    # Small batches: an epoch holds more batches than a worker prefetches.
    long_training = {"epochs": 500, "num_workers": 1, "batch_size": 2}
    return {
        "pretrain_backbone": (
            {"pretrain": {"source": {"images_per_epoch": 64, "image_size": 48}, **long_training}},
            ["--out", str(out / "w.pth")],
            True,
            out / "w.pth",
        ),
        "train_cam": (
            {"cam_train": {**TINY["cam_train"], **long_training}},
            ["--variant", "support", "--out", str(out / "model.pt")],
            True,
            out / "model.pt",
        ),
        "make_cams": (
            {"cam_infer": {"scales": [1.0, 2.0, 3.0, 4.0], "num_workers": 1}},
            ["--split", "train_aug", "--model", str(files["cam_model"]), "--out", str(out)],
            True,
            out / "index.json",
        ),
        "train_irn": (
            {"pseudo_labels": {"irn": {**TINY["pseudo_labels"]["irn"], **long_training}}},
            ["--labels", str(files["ir_labels"]), "--cam-model", str(files["cam_model"]), "--out", str(out / "m.pt")],
            True,
            out / "m.pt",
        ),
        "make_pseudo_masks": (
            {},
            ["--cams", str(files["cams"]), "--method", "irn", "--irn", str(files["irn"]), "--out", str(out)]
            + ["--workers", "2"],
            True,
            out / "MANIFEST",
        ),
        "train_seg": (
            {"seg_train": {**TINY["seg_train"], **long_training}},
            ["--split", "train_aug", "--masks", str(files["masks"]), "--cam-model", str(files["cam_model"])]
            + ["--out", str(out / "m.pt")],
            True,
            out / "m.pt",
        ),
        "make_seg_preds": (
            {"seg_infer": {"scales": [1.0, 1.5, 2.0, 2.5, 3.0], "crf": True}},
            ["--split", "train_aug", "--mode", "ms", "--model", str(files["seg"]), "--out", str(out)],
            False,
            out / "MANIFEST",
        ),
        "make_test_submission": (
            {"seg_infer": {"scales": [1.0, 1.5, 2.0, 2.5, 3.0], "crf": True}},
            ["--split", "test", "--model", str(files["seg"]), "--out", str(out), "--tar", str(out.parent / "s.tar")],
            False,
            out.parent / "s.tar",
        ),
    }


GPU_STEPS = [
    "pretrain_backbone",
    "train_cam",
    "make_cams",
    "train_irn",
    "make_pseudo_masks",
    "train_seg",
    "make_seg_preds",
    "make_test_submission",
]
STEPS_WITH_WORKERS = GPU_STEPS[:6]


def _workers(pid: int) -> list[int]:
    """The forked workers of ``pid``: children running its command line (not a tool it executed)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    forked = []
    for child in children:
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes() == command:
                forked.append(child)
        except FileNotFoundError:
            pass  # ended meanwhile
    return forked


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start(chain: dict[str, Path], step: str, tmp_path: Path) -> tuple[subprocess.Popen, bool, Path, dict]:
    out = tmp_path / "out"
    changes, args, forks_workers, finished = _cases(chain, out)[step]
    raw = yaml.safe_load(chain["params"].read_text())
    for section, values in changes.items():
        raw[section] = values
    params = write_params(tmp_path / "params.yaml", raw)
    env = {**os.environ, "PIXSUP_GPUS": "0", "PIXSUP_GPU_LOCK_DIR": str(tmp_path / "locks"), "OMP_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = [sys.executable, "-m", "pixsup.runtime.gpu_slot", "--", sys.executable, "-m", f"pixsup.steps.{step}"]
    command += ["--params", str(params), "--quiet", *args]
    if step != "pretrain_backbone":  # it draws its images, it reads no dataset
        command += ["--root", str(chain["root"])]
    if step.startswith(("train_", "pretrain_")):
        command += ["--device", "cpu"]
    # stderr to a file: a pipe nobody reads would block the step once full.
    stderr = (tmp_path / "stderr.txt").open("w")
    step_process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)

    # Workers running, or (a step without workers) its first output begun. A worker is a forked child
    # seen twice 50 ms apart: a child forked to execute a tool (ldconfig) shares the command line briefly.
    def started() -> bool:
        if not forks_workers:
            return out.exists()
        seen = _workers(step_process.pid)
        time.sleep(0.05)
        return bool(seen) and set(seen) <= set(_workers(step_process.pid))

    deadline = time.monotonic() + 120
    while not started():
        assert step_process.poll() is None, f"{step} ended before it could be killed: {_stderr(tmp_path)}"
        assert time.monotonic() < deadline, f"{step} did not start its work within 120 s"
        time.sleep(0.005)
    return step_process, forks_workers, finished, env


def _stderr(tmp_path: Path) -> str:
    return (tmp_path / "stderr.txt").read_text()


def _next_job_waits(tmp_path: Path, env: dict, since: float) -> float:
    """Seconds from ``since`` until the next job on the device starts."""
    record = tmp_path / "follower.txt"
    follower = subprocess.run(
        [sys.executable, "-m", "pixsup.runtime.gpu_slot", "--", sys.executable, "-c", RECORD, str(record)],
        env=env,
        timeout=60,
    )
    assert follower.returncode == 0
    device, started = record.read_text().split()
    assert device == "0"
    return float(started) - since


def _assert_no_process_left(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if _running(pid)], "a worker outlived the step"


@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("step", GPU_STEPS)
def test_a_killed_gpu_step_frees_its_device_and_leaves_no_process(chain, tmp_path, step, signal_number):
    step_process, _, finished, env = _start(chain, step, tmp_path)
    workers = _workers(step_process.pid)
    killed = time.time()
    os.kill(step_process.pid, signal_number)
    assert step_process.wait(timeout=30) == -signal_number  # killed mid-run, not finished
    waited = _next_job_waits(tmp_path, env, killed)
    print(f"\n{step} {signal.Signals(signal_number).name}: the next job had the device {waited:.2f} s later")
    assert waited < 10
    _assert_no_process_left(workers)
    assert not finished.exists()


@pytest.mark.parametrize("step", STEPS_WITH_WORKERS)
def test_a_step_whose_worker_is_killed_stops_with_an_error_and_frees_its_device(chain, tmp_path, step):
    step_process, _, finished, env = _start(chain, step, tmp_path)
    workers = _workers(step_process.pid)
    # Stopped at once, before it can hand over all its work: the step has lost work when it is killed.
    os.kill(workers[0], signal.SIGSTOP)
    time.sleep(0.5)
    killed = time.time()
    os.kill(workers[0], signal.SIGKILL)
    code = step_process.wait(timeout=60)
    stderr = _stderr(tmp_path)
    assert code > 0, f"{step} went on without its worker (exit {code})"
    waited = _next_job_waits(tmp_path, env, killed)
    print(f"\n{step}, a worker SIGKILLed: the step stopped and the next job had the device {waited:.2f} s later")
    said = stderr.strip().splitlines()[-1]
    print("  it said:", said)
    assert "worker" in said
    assert waited < 30
    _assert_no_process_left(workers)
    assert not finished.exists()


def test_every_gpu_rule_of_the_workflow_is_tested_here():
    rules = Path(__file__).parents[1] / "workflow" / "rules"
    gpu_rules = set()
    for smk in rules.glob("*.smk"):
        for block in smk.read_text().split("\nrule ")[1:]:
            if "pixsup.runtime.gpu_slot" in block:
                gpu_rules.add(block.split(":", 1)[0])
    assert gpu_rules == set(GPU_STEPS)
