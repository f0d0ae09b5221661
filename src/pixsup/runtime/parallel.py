"""The per-image loop of the steps that write one file per image, in one process or several."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from .workers import start_worker

# The work of the running map_ids: forked workers inherit it, so it may be any callable
# (a closure over a loaded network, say), which a pool could not pickle.
_work: Callable[[str], Any] | None = None


def _call_work(image_id: str) -> Any:
    assert _work is not None
    return _work(image_id)


def map_ids(work: Callable[[str], Any], ids: list[str], workers: int, desc: str, progress: bool) -> Iterable[Any]:
    """``work(id)`` for every id, in order; ``workers`` > 1 uses that many forked processes.

    A worker killed from outside (the OOM killer picks the largest process) ends the loop
    with a ChildProcessError: a ``multiprocessing.Pool`` would replace it and wait for
    its lost images forever, holding the step's GPU.
    """
    global _work
    if workers <= 1:
        yield from (work(i) for i in tqdm(ids, desc=desc, unit="img", disable=not progress))
        return
    _work = work
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=start_worker)
    try:
        yield from tqdm(
            pool.map(_call_work, ids, chunksize=4), total=len(ids), desc=desc, unit="img", disable=not progress
        )
    except BrokenProcessPool:
        raise ChildProcessError(
            f"a worker process of '{desc}' was killed (by the OOM killer when memory ran out?); "
            "rerun the step, with fewer --workers if memory was short"
        ) from None
    finally:
        # After an error, the images not yet started are dropped, not processed first.
        pool.shutdown(wait=True, cancel_futures=True)
        _work = None
