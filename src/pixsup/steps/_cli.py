"""What every step's command line shares: params loading, logging, and errors as one clear line."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..errors import CamFileError, CheckpointError, DataError, NonFiniteLossError, WeightsNotFoundError
from ..provenance import StepRecord
from ..runtime.launch_env import launch_rank

# Errors caused by inputs: reported as one line naming the file or key, no traceback.
USER_ERRORS = (
    ConfigError,
    DataError,
    CheckpointError,
    CamFileError,
    WeightsNotFoundError,
    NonFiniteLossError,
    FileNotFoundError,
)


def parser(step: str, module_doc: str | None) -> argparse.ArgumentParser:
    """An argument parser for ``python -m pixsup.steps.<step>`` described by the step module's docstring."""
    return argparse.ArgumentParser(
        prog=f"python -m pixsup.steps.{step}",
        description=module_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_params_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        required=True,
        help="resolved params YAML (the whole params.yaml, or only the sections this step reads)",
    )


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", default=None, help="also write the log to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """What every training step (pixsup.engine.fit) takes besides its inputs."""
    p.add_argument("--losses", default=None, help="per-iteration loss CSV (default: <out>.losses.csv)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument(
        "--stop-after-epoch",
        type=int,
        default=None,
        help="end after this epoch, keeping the resume checkpoint (for time-sliced jobs)",
    )


def record_training(record: StepRecord, out: str, summary: dict[str, Any], extra: dict[str, Any]) -> None:
    """``<out>.meta.json`` of a finished training, written by rank 0 only."""
    if summary["finished"] and launch_rank() == 0:
        record.write(out, extra={**extra, "summary": summary})


def setup_logging(log_file: str | None, rank: int = 0) -> None:
    """INFO to stderr and ``log_file``; a rank other than 0 of a multi-process step logs only warnings,
    to stderr, so the log reads as that of one process."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    prefix = f"[rank {rank}] " if rank else ""
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s {prefix}%(name)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )


def run(body: Callable[[], int]) -> int:
    """Run a step body; input errors become one line ``error: <message>`` and exit status 2 (config) or 1.

    Besides the named input errors, a ValueError (our checks) or OSError (a refused or full disk)
    is reported as one line too; set PIXSUP_TRACEBACK=1 to see the traceback instead."""
    try:
        return body()
    except ConfigError as exc:
        logging.getLogger("pixsup").error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        logging.getLogger("pixsup").error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        # A check of ours, or a file the system refused: one line (PIXSUP_TRACEBACK=1 shows where).
        if os.environ.get("PIXSUP_TRACEBACK"):
            raise
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            # A full disk: the atomic writers left nothing half-written behind.
            message = f"no space left on the device writing {exc.filename or 'an output'}"
        else:
            message = str(exc) or type(exc).__name__
        logging.getLogger("pixsup").error("%s", message)
        print(f"error: {message}", file=sys.stderr)
        return 1
