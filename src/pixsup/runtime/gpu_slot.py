"""Give a command one GPU of its own: ``python -m pixsup.runtime.gpu_slot -- <command ...>``.

``python -m pixsup.runtime.gpu_slot --gpus N -- <command ...>`` gives it N devices at once
(for ``python -m pixsup.runtime.launch --nproc N``): all N locks or none, so two jobs
waiting for devices never hold part of them each.

Snakemake's local executor counts ``gpu`` resources but does not say which
device a job should use, so two GPU jobs would both land on device 0. This
wrapper takes an exclusive lock on one free device slot, sets
``CUDA_VISIBLE_DEVICES`` to that device and replaces itself with the command
(``exec``). The lock is an ``flock`` on a file descriptor that the command
inherits, so it is held exactly as long as the command runs and the kernel
releases it however the command ends (even ``kill -9``).

Which devices exist, in this order:
1. ``CUDA_VISIBLE_DEVICES`` already set (SLURM, or by hand): the scheduler
   chose; the command runs unchanged.
2. ``PIXSUP_GPUS``: a comma-separated device list (``0,1``), or ``none``.
3. ``nvidia-smi --query-gpu=index``; no ``nvidia-smi`` or no device: CPU, the
   command runs unchanged.
When every device is taken, the wrapper waits for one to free up. Locks live
in ``PIXSUP_GPU_LOCK_DIR`` (default: ``$TMPDIR/pixsup-gpu-slots-<uid>``), shared
by every job of the machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .workers import LOCK_FDS_VARIABLE


def visible_devices(env: dict[str, str] | None = None) -> list[str] | None:
    """The devices to share out, or None when the command must run unchanged."""
    env = os.environ if env is None else env
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    listed = env.get("PIXSUP_GPUS")
    if listed is not None:
        devices = [d.strip() for d in listed.split(",") if d.strip()]
        return None if devices in ([], ["none"]) else devices
    if shutil.which("nvidia-smi") is None:
        return None
    query = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    devices = query.stdout.split() if query.returncode == 0 else []
    return devices or None


def lock_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    default = Path(tempfile.gettempdir()) / f"pixsup-gpu-slots-{os.getuid()}"
    return Path(env.get("PIXSUP_GPU_LOCK_DIR", default))


def acquire(
    devices: list[str], directory: Path, count: int = 1, poll_seconds: float = 0.5
) -> tuple[list[str], list[int]]:
    """Block until ``count`` devices' locks are free; return the devices and their open, locked descriptors."""
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        taken: list[tuple[str, int]] = []
        for device in devices:
            fd = os.open(directory / f"gpu{device}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            taken.append((device, fd))
            if len(taken) == count:
                return [d for d, _ in taken], [fd for _, fd in taken]
        for _, fd in taken:  # closing the descriptor releases its lock
            os.close(fd)
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    count = 1
    if argv[:1] == ["--gpus"] and len(argv) > 1 and argv[1].isdigit() and int(argv[1]) >= 1:
        count, argv = int(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    devices = visible_devices()
    if devices is not None:
        if count > len(devices):
            print(
                f"pixsup.runtime.gpu_slot: {count} GPUs asked for, {len(devices)} exist ({','.join(devices)})",
                file=sys.stderr,
            )
            return 2
        chosen, fds = acquire(devices, lock_dir(), count)
        for fd in fds:
            os.set_inheritable(fd, True)
        # The step's forked workers close these (pixsup.runtime.workers): only the step holds the device.
        os.environ[LOCK_FDS_VARIABLE] = ",".join(str(fd) for fd in fds)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
        print(
            f"pixsup.runtime.gpu_slot: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} for {argv[0]}",
            file=sys.stderr,
            flush=True,
        )
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
