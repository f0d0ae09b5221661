"""Write ``dvc.yaml`` from the Snakemake plan, so DVC's stages never drift from the workflow.

Each DVC stage runs one Snakemake target. Its jobs are those Snakemake plans for
that target (``snakemake <target> --forceall --dry-run``) less those of the
stages before it; the stage's

- ``deps`` are the files those jobs read that they do not write (code, the
  outputs of earlier stages, the rule files), and ``data.root`` after the first;
  on VOC (``data.dataset: voc12``) the first also reads the archive that
  ``data.dvc`` versions, which prepare_data unpacks;
- ``outs``/``metrics`` are the files they write (a CAM folder stands for its
  ``index.json``, since the per-image files are written beside it);
- ``params`` are the values their steps read (``pixsup.config.STEP_KEYS``), and
  ``experiment.seeds`` where they write a training run's files.

The plan depends on params.yaml (the training runs, the dataset, the variants,
the mask methods, the shards), so rerun this after changing those; ``--check`` exits 1 when the
committed file differs (the tests run it).

Example:
  python -m pixsup.workflow_dvc            # rewrite dvc.yaml
  python -m pixsup.workflow_dvc --check    # exit 1 when dvc.yaml is stale
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import STEP_KEYS, load_params, step_keys
from .files import write_text

# Stage name -> the Snakemake target it runs, in pipeline order.
STAGES: dict[str, str] = {
    "prepare_data": "dataset",
    "pretrain_backbone": "pretrained",
    "train_cam": "cam_models",
    "make_cams": "cam_seeds",
    "eval_cams": "seed_metrics",
    "make_pseudo_masks": "mask_metrics",
    "train_seg": "segmentation",
    "make_report": "all",
}

HEADER = """\
# DVC's view of the pipeline: a few coarse stages, each a Snakemake target, so the
# fine DAG is written once (in the Snakefile) and Snakemake decides what inside a
# stage must rerun. Outputs are `persist: true`: DVC must not delete them before a
# stage runs, or Snakemake would recompute everything.
# GENERATED from Snakemake's plan by `python -m pixsup.workflow_dvc`; do not edit.
# Rerun it after changing the workflow or the shape of the plan in params.yaml
# (experiment.seeds, data.dataset, pseudo_labels.variants/compare_methods, cam_infer.num_shards).
"""


@dataclass
class Job:
    rule: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(", ") if item.strip()]


def planned_jobs(repo: Path, target: str) -> list[Job]:
    """The jobs ``snakemake <target> --forceall --dry-run`` lists, with their files."""
    printed = subprocess.run(
        [sys.executable, "-m", "snakemake", target, "--forceall", "--dry-run", "--cores", "1"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if printed.returncode != 0:
        raise SystemExit(f"error: snakemake {target} --dry-run failed:\n{printed.stderr[-2000:]}")
    jobs: list[Job] = []
    for line in printed.stdout.splitlines():
        rule = re.match(r"^(?:local)?rule (\w+):$", line)
        if rule:
            jobs.append(Job(rule.group(1)))
            continue
        entry = re.match(r"^    (input|output): (.*)$", line)
        if entry and jobs:
            kind, value = entry.groups()
            setattr(jobs[-1], f"{kind}s", _split(value))
    return [job for job in jobs if job.rule != target]


def _rule_files(repo: Path) -> dict[str, str]:
    defined: dict[str, str] = {}
    for path in sorted((repo / "workflow" / "rules").glob("*.smk")):
        for name in re.findall(r"^(?:rule (\w+):|use rule \w+ as (\w+))", path.read_text(), re.M):
            name = "".join(name)
            defined[name] = path.relative_to(repo).as_posix()
    return defined


def _imported_files(repo: Path) -> list[str]:
    """The files ``data.dvc`` versions (the raw VOC archive), as repository paths."""
    path = repo / "data.dvc"
    return [out["path"] for out in yaml.safe_load(path.read_text())["outs"]] if path.is_file() else []


def dvc_stages(repo: Path) -> dict[str, dict]:
    """The ``stages`` mapping of dvc.yaml for the workflow and params.yaml in ``repo``."""
    params = load_params(repo / "params.yaml")
    results = f"results/{params.data.dataset}/"

    def template(path: str) -> str:
        # A CAM folder's index stands for the folder: its per-image files are written beside it.
        if re.search(r"/cams/[^/]+/index(\.shard-\d+-of-\d+)?\.json$", path):
            path = path.rsplit("/", 1)[0]
        return path.replace(results, "results/${data.dataset}/", 1) if path.startswith(results) else path

    rule_files = _rule_files(repo)
    done: set[tuple[str, ...]] = set()
    stages: dict[str, dict] = {}
    for number, (name, target) in enumerate(STAGES.items()):
        jobs = [job for job in planned_jobs(repo, target) if tuple(job.outputs) not in done]
        if not jobs:
            continue  # pretrain_backbone where cam_train loads ImageNet weights instead
        done |= {tuple(job.outputs) for job in jobs}
        written = {template(path) for job in jobs for path in job.outputs}
        read = {template(path) for job in jobs for path in job.inputs} - written
        rules = {job.rule for job in jobs}
        if not number and params.data.dataset == "voc12":
            read |= set(_imported_files(repo))
        deps = (["${data.root}"] if number else []) + sorted(
            read | {rule_files[rule] for rule in rules}, key=lambda p: (p.startswith("src/"), p)
        )
        keys = {key for rule in rules & set(STEP_KEYS) for key in step_keys(rule, params)}
        if any(re.search(r"/seed\d+/", path) for path in written):
            keys.add("experiment.seeds")  # the runs this stage's jobs belong to
        keys = sorted(keys)
        stage: dict = {"cmd": f"snakemake --cores all {target}", "deps": deps, "params": keys}
        outs = [{"${data.root}": {"persist": True}}] if not number else []
        metrics = []
        for path in sorted(written):
            cached = path.endswith((".pt", ".pth")) or "/paper/" in path
            entry = {path: {"persist": True} if cached else {"persist": True, "cache": False}}
            # DVC reads metrics as JSON/YAML: other files under metrics/ (per-image arrays) are outs.
            (metrics if "/metrics/" in path and path.endswith(".json") else outs).append(entry)
        if outs:
            stage["outs"] = outs
        if metrics:
            stage["metrics"] = metrics
        stages[name] = stage
    return stages


def render(stages: dict[str, dict]) -> str:
    body = yaml.safe_dump({"stages": stages}, sort_keys=False, default_flow_style=False, indent=2, width=120)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pixsup.workflow_dvc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", default=".", help="repository root (default: .)")
    parser.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml differs from the plan")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    text = render(dvc_stages(repo))
    path = repo / "dvc.yaml"
    if args.check:
        if not path.is_file() or path.read_text() != text:
            print(f"{path} is not what the Snakemake plan gives; run: python -m pixsup.workflow_dvc")
            return 1
        print(f"{path}: matches the Snakemake plan")
        return 0
    write_text(path, text)
    print(f"wrote {path} ({len(text.splitlines())} lines, {len(STAGES)} stages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
