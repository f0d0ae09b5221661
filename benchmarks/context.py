"""What the stages of a benchmark run are given: its size, and the finished workflow run some stages read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pixsup.config import Params, load_params

from .measure import REPO


@dataclass(frozen=True)
class Options:
    quick: bool = False  # small inputs: a smoke run, its figures meaningless
    workflow_root: Path | None = None  # a repository with a finished run; None: this one, if finished


@dataclass(frozen=True)
class FinishedRun:
    """A repository in which the default workflow has run to the end."""

    root: Path
    params: Params

    @property
    def data_root(self) -> Path:
        return self.root / self.params.data.root

    @property
    def results(self) -> Path:
        return self.root / "results" / self.params.data.dataset

    @property
    def first_run(self) -> Path:
        """The outputs of the first training run of experiment.seeds."""
        return self.results / f"seed{self.params.experiment.seeds[0]}"


def finished_run(options: Options) -> FinishedRun | str:
    """The finished run of ``options.workflow_root`` (default: this repository), or why there is none."""
    root = (options.workflow_root or REPO).resolve()
    if not (root / "params.yaml").is_file():
        return f"{root} holds no params.yaml"
    run = FinishedRun(root, load_params(root / "params.yaml"))
    summary = run.results / "paper" / "summary.json"
    if not summary.is_file():
        return f"{summary} missing: the workflow has not finished there (give --workflow-root)"
    return run
