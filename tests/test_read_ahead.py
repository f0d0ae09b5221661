"""read_ahead: the evaluators' reader threads keep a plain loop's order and errors."""

from __future__ import annotations

import threading
import time

import pytest

from pixsup.runtime.read_ahead import read_ahead


@pytest.mark.parametrize("depth", [0, 1, 3, 50])
def test_results_come_in_input_order(depth):
    def slow_for_even(n: int) -> int:
        time.sleep(0.002 if n % 2 == 0 else 0)  # even items finish after the odd ones started later
        return n * n

    assert list(read_ahead(slow_for_even, range(20), depth=depth)) == [(n, n * n) for n in range(20)]


def test_reads_run_in_other_threads_and_ahead_of_the_consumer():
    taken: list[int] = []
    reader_threads: set[str] = set()

    def items():
        for n in range(10):
            taken.append(n)
            yield n

    def read(n: int) -> int:
        reader_threads.add(threading.current_thread().name)
        return n

    results = read_ahead(read, items(), depth=3)
    assert next(results) == (0, 0)
    # The first item came out only once three more had been handed to the readers.
    assert taken == [0, 1, 2, 3]
    assert list(results) == [(n, n) for n in range(1, 10)]
    assert reader_threads and threading.current_thread().name not in reader_threads


def test_an_error_surfaces_at_its_items_turn():
    def read(n: int) -> int:
        if n == 5:
            raise ValueError("item 5 is corrupt")
        return n

    seen = []
    with pytest.raises(ValueError, match="item 5 is corrupt"):
        for item, _ in read_ahead(read, range(10), depth=4):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_closing_early_cancels_the_queued_reads():
    release = threading.Event()
    done: list[int] = []

    def read(n: int) -> int:
        release.wait(5)
        done.append(n)
        return n

    results = read_ahead(read, range(100), depth=20, threads=1)
    release.set()
    assert next(results) == (0, 0)
    results.close()
    # At most the reads that had started finish; the other queued ones never run.
    assert len(done) < 100
