"""Atomic writes for every artefact the pipeline produces.

Each writer renders into a temporary file in the destination folder and
renames it into place, so a crash never leaves a half-written output that a
rerun would mistake for a finished one. A write that fails on a full disk raises
``OSError(ENOSPC)`` naming the output, whichever library was writing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
# This machine's name as temporary files carry it: letters, digits and dashes only.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[^.]+\.tmp[^/]*$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writers on this host left in ``folder`` when they were killed
    (their process is gone); those of running writers, and of other hosts, stay. Returns the removed."""
    removed = []
    for candidate in Path(folder).glob(".*.tmp*"):
        match = _TEMPORARY.match(candidate.name)
        if match and match["host"] == _HOST and not _alive(int(match["pid"])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix of ``path`` so that libraries which
    choose a format by extension (PIL, numpy) behave as for the real name, and
    names the host and process writing it (``.<name>.<host>-<pid>.<random>.tmp<suffix>``),
    so that :func:`remove_stale_temporaries` can tell a killed writer's file
    from a running one's. DVC ignores these files (``.dvcignore``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{_HOST}-{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; artefacts get the usual permissions of a new file.
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        full = _disk_full(exc, path.parent)
        tmp_path.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        raise


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space: ENOSPC, or a writer (torch.save) that reports
    it as a RuntimeError while the folder's file system has (next to) nothing left."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return isinstance(exc, RuntimeError) and shutil.disk_usage(folder).free < 1 << 20


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_npz(path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` (an ``.npz``) atomically."""
    saver = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            saver(handle, **arrays)


def save_png(path: str | os.PathLike, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a uint8 array as PNG: grayscale, or palette mode when ``palette`` is given."""
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: PNG labels must be uint8, got {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{path}: a label PNG takes a 2-D array, got shape {array.shape}")
    height, width = array.shape
    image = Image.frombytes("P" if palette is not None else "L", (width, height), np.ascontiguousarray(array).tobytes())
    if palette is not None:
        image.putpalette(palette)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_jpeg(path: str | os.PathLike, array: np.ndarray, quality: int = 95) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG", quality=quality)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
