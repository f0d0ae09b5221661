"""`snakemake --cores all --profile slurm` on a real single-node SLURM cluster (slurmctld, slurmd, munge).

The cluster runs on this machine with its own CPUs and memory and two fake
GPUs (tests/slurm_cluster.py). Every assertion about SLURM is checked against
SLURM itself: the job ids Snakemake reports must be in SLURM's job completion
records, and every artefact's meta.json must name the SLURM job that wrote it.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pixsup.checkpoints import save_cam_net
from pixsup.config import parse_params
from pixsup.data.synthetic import generate_synthetic
from pixsup.models import create_model

from slurm_cluster import CONF_DIR, LocalSlurmCluster, jobcomp_records
from workflow_repo import REPO, TINY_PARAMS, copy_repo, jobs_by_rule, merged, run, tool_env

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

SLURM_SNAKEMAKE = ["timeout", "-s", "INT", "-k", "60", "1500", "snakemake", "--cores", "all", "--profile", "slurm"]
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+)")
LOCAL_RULES = {"write_params", "gather_cams", "all"}
GPU_STEPS = {"train_cam", "make_cams", "train_irn", "make_pseudo_masks", "train_seg", "make_seg_preds"}
# Values that describe a run rather than its results.
VOLATILE_KEYS = {"seconds", "seconds_this_run"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalSlurmCluster(tmp_path_factory.mktemp("slurm-state"))
    seconds = cluster.start()
    print(f"\nSLURM cluster up in {seconds:.1f} s (pids {cluster.pids})")
    yield cluster
    pids = dict(cluster.pids)
    cluster.stop()
    left = [name for name, pid in pids.items() if Path(f"/proc/{pid}").exists()]
    assert not left, f"daemons still running after stop: {left}"
    assert not (CONF_DIR / "slurm.conf").exists()


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The tiny config's whole workflow, as a user types it, through sbatch."""
    repo = copy_repo(tmp_path_factory.mktemp("slurm") / "repo")
    started = time.perf_counter()
    result = run(SLURM_SNAKEMAKE, repo, timeout=1700)
    seconds = time.perf_counter() - started
    print(f"\ntiny workflow through SLURM: {seconds:.1f} s")
    return repo, result.stdout + result.stderr


def _records_of(cluster: LocalSlurmCluster, repo: Path) -> list[dict[str, str]]:
    return [r for r in jobcomp_records(cluster.jobcomp_log) if r.get("WorkDir") == str(repo)]


def test_every_job_ran_as_a_slurm_job_and_slurm_recorded_it(cluster, slurm_run):
    repo, output = slurm_run
    counts = jobs_by_rule(output)
    expected = sum(n for rule, n in counts.items() if rule not in LOCAL_RULES)
    submitted = set(SUBMITTED.findall(output))
    assert len(submitted) == expected > 40, counts
    records = {r["JobId"]: r for r in _records_of(cluster, repo)}
    assert set(records) == submitted
    assert {r["JobState"] for r in records.values()} == {"COMPLETED"}

    metas = list((repo / "results").rglob("*.meta.json"))
    assert len(metas) > 30
    for path in metas:
        meta = json.loads(path.read_text())
        slurm = meta["slurm"]
        assert slurm is not None and slurm["job_id"] in submitted, path
        if meta["step"] in GPU_STEPS:
            # SLURM gave the job one of the node's two (fake) GPUs.
            assert slurm["cuda_visible_devices"] in ("0", "1"), path


def _comparable(path: Path) -> bool:
    # Provenance, the report's README (date, hashes), PDFs (creation time)
    # and Snakemake's directory markers describe the run, not its results.
    return not (
        path.name.endswith(".meta.json") or path.suffix in (".pdf", ".snakemake_timestamp") or path.name == "README.md"
    )


def _drop_volatile(value):
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


def _same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return _drop_volatile(a) == _drop_volatile(b)


def _same_content(a: Path, b: Path) -> bool:
    # Torch files compare by their tensors: the zip inside names its folder after the (temporary) file name.
    if a.suffix in (".pt", ".pth"):
        return _same_tensors(
            torch.load(a, map_location="cpu", weights_only=False), torch.load(b, map_location="cpu", weights_only=False)
        )
    if a.suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            return x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    if a.suffix == ".png":
        with Image.open(a) as x, Image.open(b) as y:
            return np.array_equal(np.asarray(x), np.asarray(y))
    if a.suffix == ".json":
        return _drop_volatile(json.loads(a.read_text())) == _drop_volatile(json.loads(b.read_text()))
    if a.suffix == ".tar":
        with tarfile.open(a) as x, tarfile.open(b) as y:
            return x.getnames() == y.getnames() and all(
                x.extractfile(m).read() == y.extractfile(m).read() for m in x.getmembers() if m.isfile()
            )
    return a.read_bytes() == b.read_bytes()


def test_outputs_equal_a_local_run(slurm_run, tiny_workflow_run):
    repo, _ = slurm_run
    cluster_files = {p.relative_to(repo) for p in (repo / "results").rglob("*") if p.is_file() and _comparable(p)}
    local_files = {
        p.relative_to(tiny_workflow_run)
        for p in (tiny_workflow_run / "results").rglob("*")
        if p.is_file() and _comparable(p)
    }
    assert cluster_files == local_files
    assert len(cluster_files) > 200
    differing = sorted(str(p) for p in cluster_files if not _same_content(repo / p, tiny_workflow_run / p))
    assert not differing, differing[:20]


def _running_job(comment_prefix: str, timeout: float) -> str:
    """The id of the running SLURM job whose comment (Snakemake's rule tag) starts with ``comment_prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True)
        for line in listing.stdout.splitlines():
            job_id, _, comment = line.partition(" ")
            if comment.startswith(comment_prefix):
                return job_id
        time.sleep(0.5)
    raise AssertionError(f"no running SLURM job for {comment_prefix} within {timeout:.0f} s")


def test_cancelled_training_job_is_retried_and_resumes_from_its_checkpoint(cluster, tmp_path):
    # Enough epochs that the job is still training after its first checkpoint.
    params = merged(TINY_PARAMS, {"cam_train": {"epochs": 12}})
    repo = copy_repo(tmp_path / "repo", params)
    model = repo / "results" / "synthetic" / "seed0" / "support" / "model.pt"
    resume = model.with_name("model.pt.resume.pt")
    target = str(model.relative_to(repo))
    with subprocess.Popen(
        SLURM_SNAKEMAKE + [target],
        cwd=repo,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as snakemake:
        job_id = _running_job("rule_train_cam", timeout=300)
        deadline = time.monotonic() + 300
        while not resume.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert resume.exists(), "no resume checkpoint was written"
        subprocess.run(["scancel", job_id], check=True)
        output, _ = snakemake.communicate(timeout=900)
    assert snakemake.returncode == 0, output[-6000:]

    train_records = [
        r
        for r in _records_of(cluster, repo)
        if r["JobId"] in SUBMITTED.findall(output) and int(r["JobId"]) >= int(job_id)
    ]
    states = [r["JobState"] for r in sorted(train_records, key=lambda r: int(r["JobId"]))]
    assert states == ["CANCELLED", "COMPLETED"], states
    log = (repo / "logs" / "synthetic" / "seed0" / "train_cam" / "support.log").read_text()
    resumed = re.findall(r"resum\w* .*epoch (\d+)", log)
    assert resumed and 1 <= int(resumed[-1]) < 12, log[-2000:]
    assert not resume.exists()

    # The interrupted model equals one trained without interruption.
    losses = (repo / "results" / "synthetic" / "seed0" / "support" / "losses.csv").read_text().splitlines()
    iterations = [int(line.split(",")[1]) for line in losses[1:]]
    assert iterations == list(range(1, len(iterations) + 1))
    threads = re.search(r"rule train_cam:.*?threads: (\d+)", output, re.S).group(1)
    reference = tmp_path / "reference.pt"
    subprocess.run(
        [
            "python",
            "-m",
            "pixsup.steps.train_cam",
            "--params",
            str(repo / "results" / "synthetic" / "seed0" / "params" / "train_cam.yaml"),
            "--root",
            str(repo / "data" / "synthetic" / "VOC2012"),
            "--split",
            "train_aug",
            "--variant",
            "support",
            "--out",
            str(reference),
            "--quiet",
        ],
        env={**tool_env(), "OMP_NUM_THREADS": threads},
        check=True,
        cwd=repo,
    )
    assert _same_content(model, reference)


def test_gpu_jobs_get_their_own_fake_gpu_and_a_third_waits(cluster):
    jobs = [
        subprocess.run(
            ["sbatch", "--parsable", "--gpus=1", "-t", "5", "-o", "/dev/null", "--wrap", "sleep 60"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for _ in range(3)
    ]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = dict(
                line.split()
                for line in subprocess.run(
                    ["squeue", "-h", "-j", ",".join(jobs), "-o", "%i %T"], capture_output=True, text=True
                ).stdout.splitlines()
            )
            if sorted(states.values()) == ["PENDING", "RUNNING", "RUNNING"]:
                break
            time.sleep(0.5)
        assert sorted(states.values()) == ["PENDING", "RUNNING", "RUNNING"], states
        # The running two hold different GPUs (scontrol -d shows the index each was given).
        indices = set()
        for job_id, state in states.items():
            if state == "RUNNING":
                details = subprocess.run(
                    ["scontrol", "show", "job", "-d", job_id], capture_output=True, text=True, check=True
                ).stdout
                indices.add(re.search(r"gpu(?::\w+)?:1\(IDX:(\d+)\)", details).group(1))
        assert indices == {"0", "1"}
    finally:
        subprocess.run(["scancel", *jobs], check=False)


def _processes_naming(text: str) -> list[int]:
    """Running processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(proc.name))
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile
    return found


def test_a_cancelled_gpu_step_leaves_no_process_and_frees_its_gpu(cluster, tmp_path):
    """scancel of make_cams while its loader worker runs: every process ends, and a job needing both GPUs starts."""
    root = tmp_path / "VOC2012"
    sizes = {"num_train": 16, "num_aug_extra": 0, "num_val": 2, "num_test": 0, "min_side": 320, "max_side": 400}
    generate_synthetic(root, parse_params({"data": {"synthetic": sizes}}).data.synthetic, progress=False)
    model = tmp_path / "model.pt"
    save_cam_net(model, create_model("tiny", proj_dim=8, pretrained="none"), "tiny", 8, {})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"cam_infer": {"scales": [1.0, 2.0, 3.0, 4.0], "num_workers": 1}}))
    cams = tmp_path / "cams"
    step = [sys.executable, "-m", "pixsup.runtime.gpu_slot", "--", sys.executable, "-m", "pixsup.steps.make_cams"]
    step += ["--params", str(params), "--root", str(root), "--split", "train", "--model", str(model)]
    step += ["--out", str(cams), "--device", "cpu", "--quiet"]
    sbatch = ["sbatch", "--parsable", "--gpus=1", "-t", "5", "-o", str(tmp_path / "job.out")]
    job_id = subprocess.run(
        [*sbatch, "--wrap", shlex.join(step)], capture_output=True, text=True, check=True
    ).stdout.strip()
    deadline = time.monotonic() + 180
    # The step and its forked loader worker share the command line.
    while len(processes := _processes_naming(str(cams))) < 2 or not list(cams.glob("*.npz")):
        assert time.monotonic() < deadline, f"make_cams never ran with its worker: {(tmp_path / 'job.out').read_text()}"
        time.sleep(0.1)
    cancelled = time.time()
    subprocess.run(["scancel", job_id], check=True)
    deadline = time.monotonic() + 30
    while (left := _processes_naming(str(cams))) and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = time.time() - cancelled
    assert not left, f"processes of the cancelled step still running: {left}"
    started = tmp_path / "started.txt"
    subprocess.run(
        ["sbatch", "--gpus=2", "-t", "5", "-o", "/dev/null", "--wrap", f"date +%s.%N > {shlex.quote(str(started))}"],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists() or not started.read_text().strip():
        assert time.monotonic() < deadline, "a job needing both GPUs did not start after the cancel"
        time.sleep(0.1)
    waited = float(started.read_text()) - cancelled
    print(f"\nscancel: {len(processes)} processes gone after {gone:.2f} s; a 2-GPU job started {waited:.2f} s after")
    assert not (cams / "index.json").exists()


def test_profile_names_the_site_settings_in_one_place():
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["jobs"] >= 1
    assert profile["slurm-status-command"] == "squeue"  # works without an accounting database
    assert profile["retries"] >= 1
    text = (REPO / "slurm" / "config.yaml").read_text()
    for setting in ("slurm_partition", "slurm_account", "gpu_model"):
        assert f"# {setting}" in text or f"#   train_cam: {{{setting}" in text, setting


def test_training_on_two_gpus_runs_as_two_slurm_tasks_and_matches_one(cluster, slurm_run, tmp_path):
    repo = copy_repo(tmp_path / "repo", merged(TINY_PARAMS, {"cam_train": {"gpus": 2}}))
    model = Path("results/synthetic/seed0/support/model.pt")
    output = run(SLURM_SNAKEMAKE + [str(model)], repo, timeout=1700)
    out = output.stdout + output.stderr
    resources = re.search(r"rule train_cam:.*?resources: ([^\n]*)", out, re.S).group(1).split(", ")
    assert {"gpu=2", "tasks=2", "tasks_per_gpu=1", "mpi=srun"} <= set(resources), resources
    meta = json.loads((repo / f"{model}.meta.json").read_text())
    assert meta["processes"] == 2
    # Rank 0 ran in an srun step of two tasks inside the job SLURM gave two GPUs.
    assert meta["slurm"]["step_tasks"] == "2" and meta["slurm"]["step_id"].isdigit()
    # Both GPUs of the job, or the one srun bound to this task.
    assert meta["slurm"]["cuda_visible_devices"] in ("0", "1", "0,1")
    record = next(r for r in _records_of(cluster, repo) if r["JobId"] == meta["slurm"]["job_id"])
    assert record["JobState"] == "COMPLETED"

    one_process = torch.load(slurm_run[0] / model, map_location="cpu", weights_only=False)["model"]
    two_processes = torch.load(repo / model, map_location="cpu", weights_only=False)["model"]
    worst = max((one_process[k].float() - two_processes[k].float()).abs().max().item() for k in one_process)
    print(f"\nmax |w(1 process) - w(2 processes)| = {worst:.2e}")
    assert worst <= 1e-4
