"""Process tuning (hostauth/runtime/tuning.py): the collector's settings and
SCHED_BATCH for threads that share one core."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from hostauth.runtime.tuning import YOUNG_THRESHOLD, freeze_startup_heap, schedule_as_batch, shares_one_core

T = TypeVar("T")


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_the_startup_heap_is_frozen_and_young_collections_are_rarer() -> None:
    survivors = [[i] for i in range(100)]  # containers: objects the collector tracks
    assert all(gc.is_tracked(s) for s in survivors)
    gc.unfreeze()
    young_before = gc.get_threshold()[0]
    freeze_startup_heap()
    # Frozen: in the permanent generation, which no collection visits.
    visited = {id(o) for o in gc.get_objects()}
    assert not [s for s in survivors if id(s) in visited]
    assert gc.get_freeze_count() >= len(survivors)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert young_before < YOUNG_THRESHOLD


def _in_a_thread(work: Callable[[], T]) -> T:
    """Run work in a thread of its own, so that its affinity and policy end with it."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join()
    return out[0]


def test_a_thread_on_one_cpu_shares_one_core_and_on_all_does_not() -> None:
    allowed = sorted(os.sched_getaffinity(0))

    def pinned() -> bool:
        os.sched_setaffinity(0, {allowed[0]})
        return shares_one_core()

    assert _in_a_thread(pinned) is True
    assert _in_a_thread(shares_one_core) is (len(allowed) == 1)


def test_batch_scheduling_applies_to_the_thread_and_the_threads_it_starts() -> None:
    def batch() -> tuple[bool, int, int]:
        applied = schedule_as_batch()
        started = _in_a_thread(lambda: os.sched_getscheduler(0))
        return applied, os.sched_getscheduler(0), started

    before = os.sched_getscheduler(0)
    assert _in_a_thread(batch) == (True, os.SCHED_BATCH, os.SCHED_BATCH)
    assert os.sched_getscheduler(0) == before  # the calling thread is left as it was
