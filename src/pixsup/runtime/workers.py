"""What a worker process forked by a step (DataLoader worker, pool process) does first.

A worker inherits its parent's open descriptors, among them the GPU lock that
``pixsup.runtime.gpu_slot`` hands the step. A worker that outlived a killed
parent (SIGKILL, SIGTERM, a scheduler's cancel, the OOM killer) held that lock,
and the device, forever. So a worker closes the inherited lock descriptors and
asks the kernel to kill it when its parent dies (Linux's PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

# Set by pixsup.runtime.gpu_slot for the command it runs: the descriptors holding its device locks.
LOCK_FDS_VARIABLE = "PIXSUP_GPU_LOCK_FDS"
_PR_SET_PDEATHSIG = 1


def start_worker(_worker_id: int | None = None) -> None:
    """Run in every forked worker (DataLoader ``worker_init_fn``, pool ``initializer``)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before the request took effect
            os._exit(1)
    for fd in filter(None, os.environ.get(LOCK_FDS_VARIABLE, "").split(",")):
        try:
            os.close(int(fd))
        except OSError:
            pass  # already closed
