"""Shared fixtures: a small synthetic dataset and a params mapping that trains in seconds on a CPU."""

from __future__ import annotations

import copy
import fcntl
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from pixsup.config import parse_params
from pixsup.data.synthetic import generate_synthetic

# A shrunken copy of the real config (the data, CAM training and inference of the tiny workflow config,
# .test/config.yaml): same code paths, CPU-sized numbers.
_TINY = yaml.safe_load((Path(__file__).resolve().parents[1] / ".test" / "config.yaml").read_text())
SMALL_RAW = {
    "data": _TINY["data"],
    # From random initialisation: the step tests run in folders without pretrain_backbone's file (the workflow
    # tests run that step).
    "cam_train": {**_TINY["cam_train"], "pretrained": "none"},
    "cam_infer": {"scales": _TINY["cam_infer"]["scales"], "flip": _TINY["cam_infer"]["flip"]},
}


# One-epoch IRN and segmentation on the tiny backbone, for the step tests.
TINY_PSEUDO = {
    "irn": {
        "backbone": "tiny",
        "pretrained": "cam",
        "epochs": 1,
        "batch_size": 8,
        "num_workers": 0,
        "resize_long": [56, 72],
        "crop_size": 64,
    }
}
TINY_SEG = {
    "backbone": "tiny",
    "pretrained": "none",
    "aspp_rates": [1, 2],
    "epochs": 1,
    "batch_size": 8,
    "num_workers": 0,
    "lr": 0.01,
    "crop_size": 64,
}


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module of small-tensor tests (fast; the same sums on any machine), restored
    afterwards: set at import instead, it held for the whole session, and the quality tests ran on one thread
    where the workflow uses every core, so their numbers were not the workflow's."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_raw() -> dict:
    return copy.deepcopy(SMALL_RAW)


@pytest.fixture(scope="session")
def small_voc(tmp_path_factory) -> Path:
    """A VOC2012 folder of the synthetic generator at test size (24 train_aug, 12 train, 8 val)."""
    root = tmp_path_factory.mktemp("synthetic") / "VOC2012"
    generate_synthetic(root, parse_params(SMALL_RAW).data.synthetic, progress=False)
    return root


def write_params(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def tiny_workflow_run(tmp_path_factory) -> Path:
    """A repository copy on which `snakemake --cores all` has run the tiny config to the report.

    Tests may dry-run on it but must leave its files as they are: the SLURM
    tests compare their cluster run against it. With PIXSUP_TEST_SHARED_RUN set
    to a folder (./run-tests sets it), the pytest processes that run side by
    side build it there once, under a lock, and share it.
    """
    from workflow_repo import copy_repo, run

    shared = os.environ.get("PIXSUP_TEST_SHARED_RUN")
    folder = Path(shared) if shared else tmp_path_factory.mktemp("workflow")
    folder.mkdir(parents=True, exist_ok=True)
    repo, finished = folder / "repo", folder / "finished"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its process dies
        if not finished.exists():
            if repo.exists():
                shutil.rmtree(repo)  # left by a process that died while building it
            copy_repo(repo)
            started = time.perf_counter()
            run(["snakemake", "--cores", "all"], repo)
            print(f"\ntiny workflow, local run: {time.perf_counter() - started:.1f} s")
            finished.touch()
    return repo
