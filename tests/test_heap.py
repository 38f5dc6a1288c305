"""The serving process's collector settings (server/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from server.heap import YOUNG_THRESHOLD, freeze_startup_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_the_startup_heap_is_frozen_and_young_collections_are_rarer() -> None:
    survivor = [object() for _ in range(100)]
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    freeze_startup_heap()
    assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
