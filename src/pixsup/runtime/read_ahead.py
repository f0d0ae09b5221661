"""Reading the next files while the current one is scored.

Evaluation reads two files per image and then counts pixels. PIL's PNG
decoder and zlib release the GIL, so a reader thread decoding the next items
runs beside the counting instead of before it, and a sweep over a split takes
about as long as reading its files (docs/performance.md has the figures).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def read_ahead(
    read: Callable[[Item], Result], items: Iterable[Item], depth: int = 8, threads: int = 2
) -> Iterator[tuple[Item, Result]]:
    """``(item, read(item))`` in the order of ``items``, with up to ``depth`` reads running ahead.

    An exception raised by ``read`` surfaces when its item's turn comes, so
    errors arrive in order, as in a plain loop. ``depth=0`` reads in the
    caller's thread (no threads at all).
    """
    if depth <= 0:
        for item in items:
            yield item, read(item)
        return
    pending: deque[tuple[Item, Future]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="read_ahead") as pool:
        try:
            for item in source:
                pending.append((item, pool.submit(read, item)))
                if len(pending) > depth:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            # Stopped early (an error or a closed generator): drop the reads nobody will use.
            for _, future in pending:
                future.cancel()
