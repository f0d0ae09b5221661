"""Shared fixtures: a small synthetic dataset and a params mapping that trains in seconds on a CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pixsup.config import parse_params
from pixsup.data.synthetic import generate_synthetic

# A shrunken copy of the real config: same code paths, CPU-sized numbers.
SMALL_RAW = {
    "data": {
        "synthetic": {"num_train": 12, "num_aug_extra": 12, "num_val": 8, "num_test": 4, "min_side": 64, "max_side": 80}
    },
    "cam_train": {
        "backbone": "tiny",
        "pretrained": "none",
        "epochs": 2,
        "batch_size": 8,
        "num_workers": 0,
        "lr": 0.05,
        "augment": {"resize_long": [56, 72], "crop_size": 64},
        "mam": {"scales": [0.5, 1.0, 1.5]},
    },
    "cam_infer": {"scales": [1.0, 0.5], "flip": True},
}


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
    tests compare their cluster run against it.
    """
    import time

    from workflow_repo import copy_repo, run

    repo = copy_repo(tmp_path_factory.mktemp("workflow") / "repo")
    started = time.perf_counter()
    run(["snakemake", "--cores", "all"], repo)
    print(f"\ntiny workflow, local run: {time.perf_counter() - started:.1f} s")
    return repo
