"""python -m benchmarks: every CPU stage ours against a plain baseline in the same run; a table and a JSON file.

Each stage first checks that ours and its baseline give the same output within
a stated tolerance, then times both, interleaved, and reports medians. The
records ({stage, metric, ours, baseline, ratio, target, met, check, note}) go
to --out, written atomically. Figures are ratios: absolute times depend on the
machine and on whatever else runs on it.

Stages: make_cams, train_cam, evaluation, random_walk, workflow, data_loading.
--gpu runs the GPU benchmark instead (benchmarks/gpu.py; needs CUDA).

Examples:
  python -m benchmarks                           # every stage (about 25 minutes on 2 cores)
  python -m benchmarks --only evaluation random_walk
  python -m benchmarks --quick --out /tmp/b.json # small inputs: a smoke run, not figures
  python -m benchmarks --workflow-root /tmp/copy # time the no-op workflow of another finished run
  python -m benchmarks --gpu
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pixsup.files import write_text

from . import data_loading, evaluation, inference_memory, make_cams, random_walk, train_cam, workflow
from .context import Options
from .measure import REPO, CheckFailed, Record, table

STAGES: dict[str, Callable[[Options], list[Record]]] = {
    "make_cams": make_cams.run,
    "inference_memory": inference_memory.run,
    "train_cam": train_cam.run,
    "evaluation": evaluation.run,
    "random_walk": random_walk.run,
    "workflow": workflow.run,
    "data_loading": data_loading.run,
}


def run_stages(names: list[str], options: Options) -> tuple[list[dict], list[str]]:
    """The records of the named stages, and the stages whose output check failed."""
    records, failed = [], []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            records += [r.as_json() for r in STAGES[name](options)]
        except CheckFailed as exc:
            failed.append(name)
            records.append(Record(name, "output check", None, None, check=f"FAILED: {exc}").as_json())
    return records, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", nargs="+", choices=list(STAGES), metavar="STAGE", help=f"run these stages only ({', '.join(STAGES)})"
    )
    parser.add_argument("--quick", action="store_true", help="small inputs: checks the benchmarks run, not speed")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="records JSON (default: results/benchmarks.json; with --gpu results/benchmarks_gpu.json)",
    )
    parser.add_argument(
        "--workflow-root",
        type=Path,
        default=None,
        help="a repository whose default workflow has finished (default: this one, if finished)",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="run the GPU benchmark (CAM training and make_cams with and without each optimisation)",
    )
    args = parser.parse_args(argv)
    if args.gpu:
        from . import gpu

        return gpu.main(args.out or REPO / "results" / "benchmarks_gpu.json", args.quick)
    records, failed = run_stages(args.only or list(STAGES), Options(args.quick, args.workflow_root))
    out = args.out or REPO / "results" / "benchmarks.json"
    write_text(out, json.dumps(records, indent=2) + "\n")
    print(table(records))
    print(f"\nwritten: {out}")
    if failed:
        print(f"error: output check failed in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
