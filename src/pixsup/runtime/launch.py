"""Run a training step as N processes, one per GPU: ``python -m pixsup.runtime.launch --nproc N -- <command ...>``.

How the command runs:
  N == 1                      the command itself (exec): nothing changes.
  N > 1, in a SLURM job       srun --nodes 1 --ntasks N --kill-on-bad-exit=1
  (SLURM_JOB_ID set)               [--cpus-per-task C --exact] [--overlap] <command ...>
                              C = SLURM_CPUS_ON_NODE // N, when set: the ranks split the job's
                              CPUs (without it srun would apply a cpus-per-task inherited
                              from the job to each of the N tasks). --overlap when this runs
                              inside a job step (SLURM_STEP_ID set, e.g. Snakemake's SLURM
                              executor): a nested step must share the running step's CPUs and
                              GPUs or it waits for them forever. Every task sees all the job's
                              GPUs and takes cuda:SLURM_LOCALID.
  N > 1, elsewhere            torchrun --standalone --nproc-per-node N --no-python -- <command ...>
                              (python -m torch.distributed.run of this interpreter); each rank
                              takes cuda:LOCAL_RANK of the visible devices.

The training steps (train_cam, train_irn, train_seg) read the launcher's environment
(pixsup.runtime.distributed): their batch_size stays the global batch, each process takes
batch_size / N, and only rank 0 writes outputs and logs. When OMP_NUM_THREADS is
set, each process gets OMP_NUM_THREADS // N threads (at least 1).

Examples:
  python -m pixsup.runtime.launch --nproc 4 -- python -m pixsup.steps.train_cam --params params.yaml \\
      --root data/voc12/VOC2012 --variant full --support results/voc12/support/model.pt \\
      --out results/voc12/full/model.pt
  python -m pixsup.runtime.launch --nproc 2 --dry-run -- python -m pixsup.steps.train_seg ...   # print, do not run
  # a Snakemake job on one machine (resources: gpu=N) first locks N free GPUs:
  python -m pixsup.runtime.gpu_slot --gpus N -- \\
      python -m pixsup.runtime.launch --nproc N -- python -m pixsup.steps.train_cam ...
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping


def _per_process_threads(env: Mapping[str, str], nproc: int) -> dict[str, str]:
    if "OMP_NUM_THREADS" not in env:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, int(env["OMP_NUM_THREADS"]) // nproc))}


def launch_command(nproc: int, command: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The argv that starts ``command`` as ``nproc`` processes, and the environment variables it changes."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    if not command:
        raise ValueError("no command to run: put it after --")
    if nproc == 1:
        return list(command), {}
    if env.get("SLURM_JOB_ID"):
        # No --ntasks-per-node: srun refuses it beside the job's --ntasks-per-gpu.
        argv = ["srun", "--nodes", "1", "--ntasks", str(nproc), "--kill-on-bad-exit=1"]
        if env.get("SLURM_CPUS_ON_NODE"):
            argv += ["--cpus-per-task", str(max(1, int(env["SLURM_CPUS_ON_NODE"]) // nproc)), "--exact"]
        if env.get("SLURM_STEP_ID"):
            argv.append("--overlap")
        return argv + list(command), _per_process_threads(env, nproc)
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "--no-python",
        "--",
    ]
    return argv + list(command), _per_process_threads(env, nproc)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, command = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        prog="python -m pixsup.runtime.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [--nproc N] [--dry-run] -- COMMAND [ARG ...]",
    )
    parser.add_argument("--nproc", type=int, default=1, metavar="N", help="processes (GPUs) to train with (default: 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the command that would run, run nothing")
    args = parser.parse_args(own)
    try:
        run, env_changes = launch_command(args.nproc, command, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    if args.dry_run:
        print(" ".join([f"{k}={shlex.quote(v)}" for k, v in env_changes.items()] + [shlex.join(run)]))
        return 0
    os.execvpe(run[0], run, {**os.environ, **env_changes})


if __name__ == "__main__":
    raise SystemExit(main())
