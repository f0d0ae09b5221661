"""Training as several processes: two CPU ranks under gloo give the weights of one process.

The two-process run starts once per module, through ``python -m pixsup.runtime.launch
--nproc 2`` (torchrun), and runs ``tests/ddp_worker.py``, which trains through
the step commands; the same trainings run here in one process for reference.
Weights may differ by float rounding only (summation order of the all-reduces):
measured at most 1.3e-5 on these runs, so the bound is 1e-4 (per-rank BatchNorm
or per-rank RCM prototypes give differences of 1e-2 and more, docs/distributed.md).
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pixsup.cam.training import train_cam
from pixsup.config import ConfigError, parse_params
from pixsup.engine import epoch_loader
from pixsup.pseudo_labels.boundary import train_irn
from pixsup.runtime.distributed import Ranks
from pixsup.runtime.launch import launch_command
from pixsup.runtime.launch import main as launch_main
from pixsup.runtime.launch_env import first_host, launch_env, launch_rank, slurm_master_port
from pixsup.segmentation.training import train_seg

from conftest import SMALL_RAW, write_params

WORKER = Path(__file__).with_name("ddp_worker.py")
TOLERANCE = 1e-4

PARAMS = copy.deepcopy(SMALL_RAW)
PARAMS["cam_train"]["rcm"] = {"memory": 3}  # earlier batches' prototypes as negatives, one across the resume
PARAMS["pseudo_labels"] = {
    "irn": {
        "backbone": "tiny",
        "pretrained": "cam",
        "epochs": 2,
        "batch_size": 8,
        "num_workers": 0,
        "resize_long": [56, 72],
        "crop_size": 64,
    }
}
PARAMS["seg_train"] = {
    "backbone": "tiny",
    "pretrained": "none",
    "aspp_rates": [1, 2],
    "epochs": 2,
    "batch_size": 8,
    "num_workers": 0,
    "lr": 0.01,
    "crop_size": 64,
}
EMA_PARAMS = copy.deepcopy(PARAMS)
EMA_PARAMS["cam_train"].update(support={"kind": "ema", "ema_momentum": 0.9}, warmup_epochs=1)


def _single_process_env() -> dict[str, str]:
    """This environment without anything a launcher set, so the children decide for themselves."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLURM_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_voc):
    """Single-process trainings in ``single/``, the two-process ones in ``ddp/`` and each rank's report."""
    folder = tmp_path_factory.mktemp("ddp")
    write_params(folder / "params.yaml", PARAMS)
    write_params(folder / "params_ema.yaml", EMA_PARAMS)
    single = folder / "single"
    cam_cfg, ema_cfg = parse_params(PARAMS).cam_train, parse_params(EMA_PARAMS).cam_train
    started = time.perf_counter()
    train_cam(cam_cfg, small_voc, "train_aug", "support", single / "support.pt", progress=False)
    train_cam(
        cam_cfg, small_voc, "train_aug", "full", single / "full.pt", support_ckpt=single / "support.pt", progress=False
    )
    train_cam(ema_cfg, small_voc, "train_aug", "full", single / "ema.pt", progress=False)
    train_seg(
        parse_params(PARAMS).seg_train,
        small_voc,
        "train_aug",
        small_voc / "SegmentationClassAug",
        single / "seg.pt",
        progress=False,
    )
    # Ground truth stands in for confident labels: only the training is compared.
    train_irn(
        parse_params(PARAMS).pseudo_labels.irn,
        small_voc,
        "train_aug",
        small_voc / "SegmentationClassAug",
        single / "irn.pt",
        cam_checkpoint=single / "support.pt",
        progress=False,
    )
    single_seconds = time.perf_counter() - started

    started = time.perf_counter()
    env = {**_single_process_env(), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixsup.runtime.launch",
            "--nproc",
            "2",
            "--",
            sys.executable,
            str(WORKER),
            str(folder),
            str(small_voc),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    print(
        f"\none process: {single_seconds:.1f} s for 5 trainings; two processes (launch included): "
        f"{time.perf_counter() - started:.1f} s for 10 trainings"
    )
    reports = [json.loads((folder / "reports" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"folder": folder, "single": single, "ddp": folder / "ddp", "reports": reports, "stderr": done.stderr}


def _model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _max_difference(a: Path, b: Path) -> float:
    first, second = _model(a), _model(b)
    assert first.keys() == second.keys()
    return max((first[k].double() - second[k].double()).abs().max().item() for k in first)


def _loss_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(path)))


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "single_name, ddp_name",
    [
        ("support.pt", "baseline.pt"),  # cls only
        ("full.pt", "full.pt"),  # RCM (prototypes, memory) and MAM against a trained SupportNet
        ("ema.pt", "ema.pt"),  # against an EMA SupportNet, after a warm-up epoch
        ("seg.pt", "seg.pt"),  # DeepLab on masks
        ("irn.pt", "irn.pt"),  # IRN's boundary branch on labels
    ],
)
def test_two_processes_train_the_weights_of_one(runs, single_name, ddp_name):
    assert [code for report in runs["reports"] for code in report["codes"].values()] == [0] * 2 * 11
    difference = _max_difference(runs["single"] / single_name, runs["ddp"] / ddp_name)
    print(f"{ddp_name}: max |weight difference| one vs two processes = {difference:.2e}")
    assert difference <= TOLERANCE
    single_rows = _loss_rows(runs["single"] / f"{single_name}.losses.csv")
    ddp_rows = _loss_rows(runs["ddp"] / f"{ddp_name}.losses.csv")
    # The logged losses are the global batch's (all-reduced), not rank 0's half.
    assert len(single_rows) == len(ddp_rows) == 2 * (24 // 8)
    for one, two in zip(single_rows, ddp_rows):
        assert one.keys() == two.keys()
        assert all(float(one[k]) == pytest.approx(float(two[k]), abs=1e-5) for k in one), (one, two)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "name, training", [("resumed.pt", "cam"), ("seg_resumed.pt", "seg"), ("irn_resumed.pt", "irn")]
)
def test_resumed_two_process_run_ends_as_the_uninterrupted_one(runs, name, training):
    uninterrupted = {"cam": "full.pt", "seg": "seg.pt", "irn": "irn.pt"}[training]
    # After the stop both ranks saw rank 0's resume checkpoint and no final weights.
    assert [r["stopped_with_resume_checkpoint"][training] for r in runs["reports"]] == [True, True]
    assert _max_difference(runs["ddp"] / uninterrupted, runs["ddp"] / name) == 0.0
    assert _loss_rows(runs["ddp"] / f"{name}.losses.csv") == _loss_rows(runs["ddp"] / f"{uninterrupted}.losses.csv")


@pytest.mark.timeout(600)
def test_only_rank_zero_writes_files_and_logs(runs):
    rank0, rank1 = runs["reports"]
    assert rank1["written"] == []
    outputs = {"full.pt", "baseline.pt", "ema.pt", "seg.pt", "resumed.pt", "seg_resumed.pt", "irn.pt", "irn_resumed.pt"}
    finals = {f"ddp/{name}{suffix}" for name in outputs for suffix in ("", ".losses.csv", ".meta.json")}
    assert set(rank0["written"]) == finals | {f"ddp/{name}.resume.pt" for name in outputs}
    # No resume checkpoint, temporary file or second log left behind.
    assert {str(p.relative_to(runs["folder"])) for p in runs["ddp"].iterdir()} == finals | {"ddp/full.log"}
    meta = json.loads((runs["ddp"] / "full.pt.meta.json").read_text())
    assert meta["summary"]["processes"] == 2
    log = (runs["ddp"] / "full.log").read_text()
    assert [line.split(" INFO ")[1].split(":")[0] for line in log.splitlines() if "pixsup.engine INFO" in line] == [
        "full epoch 1/2",
        "full epoch 2/2",
    ]
    # Four CAM trainings, two segmentation and two boundary trainings ran their first epoch; rank 1 logged none.
    first_epochs = re.findall(r"pixsup\.engine INFO (\w+) epoch 1/2", runs["stderr"])
    assert sorted(first_epochs) == sorted(["full", "support", "full", "full", "seg", "seg", "irn", "irn"])
    assert "[rank 1]" not in runs["stderr"]


@pytest.mark.timeout(600)
def test_weight_check_names_the_rank_that_differs(runs):
    assert [r["check_message"] for r in runs["reports"]] == [
        "the probe layer differs between rank 0 and rank 1 (first at weight)"
    ] * 2


@pytest.mark.timeout(120)
def test_srun_tasks_with_an_indivisible_batch_stop_with_a_clear_error(tmp_path, small_voc):
    """Two tasks as srun starts them (SLURM's variables only): the group forms, then both stop cleanly."""
    raw = copy.deepcopy(PARAMS)
    raw["cam_train"]["batch_size"] = 7
    params = write_params(tmp_path / "params.yaml", raw)
    job = str(os.getpid())
    tasks = []
    for rank in (0, 1):
        env = {
            **_single_process_env(),
            "OMP_NUM_THREADS": "1",
            "SLURM_JOB_ID": job,
            "SLURM_STEP_ID": "0",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": str(rank),
            "SLURM_STEP_NUM_TASKS": "2",
            "SLURM_STEP_NUM_NODES": "1",
        }
        tasks.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pixsup.steps.train_cam",
                    "--params",
                    str(params),
                    "--root",
                    str(small_voc),
                    "--variant",
                    "support",
                    "--out",
                    str(tmp_path / "m.pt"),
                    "--quiet",
                ],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    errors = [task.communicate(timeout=100)[1] for task in tasks]
    assert [task.returncode for task in tasks] == [2, 2], errors
    for err in errors:
        assert (
            "error: cam_train.batch_size 7 is the global batch and must divide among 2 processes "
            "(each takes cam_train.batch_size / processes): use a multiple of 2"
        ) in err
        assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [params]


def test_batch_that_does_not_divide_is_a_config_error():
    assert Ranks(rank=1, world_size=4).per_rank_batch(16, "seg_train.batch_size") == 4
    with pytest.raises(ConfigError, match="seg_train.batch_size 10 is the global batch .* multiple of 4"):
        Ranks(rank=1, world_size=4).per_rank_batch(10, "seg_train.batch_size")


def test_ranks_split_every_batch_of_the_single_process_loader():
    dataset = list(range(23))
    single = [
        batch.tolist()
        for batch in DataLoader(
            dataset, batch_size=6, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(7 * 1000 + 3)
        )
    ]
    assert [b.tolist() for b in epoch_loader(dataset, 6, 7, 3, 0, Ranks())] == single
    halves = [[b.tolist() for b in epoch_loader(dataset, 6, 7, 3, 0, Ranks(rank=r, world_size=2))] for r in (0, 1)]
    assert [first + second for first, second in zip(*halves)] == single
    assert all(len(batch) == 3 for half in halves for batch in half)


# ------------------------------------------------------------------ launch environment

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node7", "MASTER_PORT": "29400"}
SRUN = {
    "SLURM_JOB_ID": "1234",
    "SLURM_STEP_ID": "5",
    "SLURM_PROCID": "2",
    "SLURM_LOCALID": "2",
    "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_STEP_NUM_NODES": "1",
    "SLURM_NTASKS": "1",
}


def test_launch_env_from_torchrun_srun_or_nothing():
    torchrun = launch_env(TORCHRUN)
    assert (torchrun.rank, torchrun.world_size, torchrun.local_rank) == (3, 4, 1)
    assert (torchrun.master_addr, torchrun.master_port) == ("node7", 29400)
    srun = launch_env(SRUN)
    assert (srun.rank, srun.world_size, srun.local_rank) == (2, 4, 2)
    assert (srun.master_addr, srun.master_port) == ("127.0.0.1", 10000 + (1234 % 700) * 32 + 5)
    assert launch_rank(SRUN) == 2 and launch_rank(TORCHRUN) == 3 and launch_rank({}) == 0
    # A batch script carries SLURM_PROCID and SLURM_NTASKS too, but is one process.
    batch_script = {"SLURM_JOB_ID": "1234", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"}
    assert launch_env(batch_script) is None and launch_env({}) is None
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT are not"):
        launch_env({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_srun_master_on_several_nodes_and_ports_of_concurrent_steps():
    multi = {**SRUN, "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "gpu[007-008],cpu1"}
    assert launch_env(multi).master_addr == "gpu007"
    no_list = {**SRUN, "SLURM_STEP_NUM_NODES": "2", "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.5"}
    assert launch_env(no_list).master_addr == "10.0.0.5"
    assert launch_env({**SRUN, "MASTER_PORT": "23456"}).master_port == 23456
    assert first_host("a[3,5-6]b[09-10]") == "a3b09" and first_host("n1,n2") == "n1" and first_host("x") == "x"
    ports = {
        slurm_master_port({"SLURM_JOB_ID": str(job), "SLURM_STEP_ID": str(step)})
        for job in range(5000, 5700)
        for step in range(32)
    }
    assert len(ports) == 700 * 32 and min(ports) >= 10000 and max(ports) < 32768


# ------------------------------------------------------------------ launcher

STEP = ["python", "-m", "pixsup.steps.train_cam", "--params", "p.yaml"]


def test_one_process_runs_the_command_itself():
    assert launch_command(1, STEP, {"SLURM_JOB_ID": "9", "OMP_NUM_THREADS": "8"}) == (STEP, {})


def test_several_processes_off_slurm_use_torchrun():
    argv, env = launch_command(4, STEP, {"OMP_NUM_THREADS": "8"})
    assert argv == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "4",
        "--no-python",
        "--",
        *STEP,
    ]
    assert env == {"OMP_NUM_THREADS": "2"}
    assert launch_command(4, STEP, {})[1] == {}


def test_several_processes_in_a_slurm_job_use_srun():
    in_batch_script = {"SLURM_JOB_ID": "9", "SLURM_CPUS_ON_NODE": "16", "OMP_NUM_THREADS": "3"}
    argv, env = launch_command(4, STEP, in_batch_script)
    assert argv == [
        "srun",
        "--nodes",
        "1",
        "--ntasks",
        "4",
        "--kill-on-bad-exit=1",
        "--cpus-per-task",
        "4",
        "--exact",
        *STEP,
    ]
    assert env == {"OMP_NUM_THREADS": "1"}
    # Inside a job step (Snakemake's SLURM executor) the new step must overlap it.
    argv, _ = launch_command(2, STEP, {"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "0"})
    assert argv == ["srun", "--nodes", "1", "--ntasks", "2", "--kill-on-bad-exit=1", "--overlap", *STEP]


def test_launcher_dry_run_help_and_bad_arguments(capsys, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert launch_main(["--nproc", "2", "--dry-run", "--", *STEP]) == 0
    assert capsys.readouterr().out.strip() == (
        f"OMP_NUM_THREADS=2 {sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 "
        "--no-python -- python -m pixsup.steps.train_cam --params p.yaml"
    )
    with pytest.raises(SystemExit) as help_exit:
        launch_main(["--help"])
    assert help_exit.value.code == 0
    text = capsys.readouterr().out
    assert "srun --nodes 1 --ntasks N --kill-on-bad-exit=1" in text and "--overlap" in text and "torchrun" in text
    for bad, message in ((["--nproc", "0", "--", *STEP], "at least 1"), (["--nproc", "2"], "put it after --")):
        with pytest.raises(SystemExit):
            launch_main(bad)
        assert message in capsys.readouterr().err
