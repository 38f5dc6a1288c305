"""Concurrent single-row statements, coalesced into one statement per batch.

Creates, secret reads with their audit rows, and Gets that arrive while
earlier batches are in flight wait and go together in the next one: one round
trip, one statement and (for writes) one commit, one WAL flush, for the lot,
instead of one each. Nothing waits on a timer, so a call that finds a free
flush slot goes at once, alone; batches only form under load, when they pay.
Each caller still gets its own result, or its own exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# A flush returns, per item, its result or the exception for that item alone.
Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]

# Batches of one kind the database works on at once, across all the workers:
# one being written while the next forms. More, smaller batches cost more
# statements, commits and wake-ups for the same rows, so the workers share
# these two rather than take two each (docs/benchmarks.md, decisions).
SERVICE_BATCHES_IN_FLIGHT = 2


def batches_in_flight_per_worker(workers: int) -> int:
    """One worker's share of SERVICE_BATCHES_IN_FLIGHT, at least one."""
    return max(1, SERVICE_BATCHES_IN_FLIGHT // max(1, workers))


class Coalescer(Generic[T, R]):
    __slots__ = ("_flush", "_in_flight", "_max_batch", "_max_in_flight", "_on_batch", "_pending", "_tasks")

    def __init__(
        self,
        flush: Flush[T, R],
        *,
        max_batch: int = 64,
        max_in_flight: int = SERVICE_BATCHES_IN_FLIGHT,
        on_batch: Callable[[int], object] | None = None,
    ) -> None:
        """on_batch: told each batch's size (a metric)."""
        self._flush = flush
        self._on_batch = on_batch
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            # A task of its own: the write completes even when this caller is
            # cancelled, and its neighbours in the batch are not cancelled with it.
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                if self._on_batch is not None:
                    self._on_batch(len(batch))
                try:
                    outcomes: Sequence[R | BaseException] = await self._flush([item for item, _ in batch])
                except BaseException as exc:  # the flush itself failed: every item shares the error
                    self._settle(batch, [exc] * len(batch))
                    if not isinstance(exc, Exception):  # cancelled: shutting down
                        pending, self._pending = self._pending, []
                        self._settle(pending, [exc] * len(pending))
                        raise
                    continue
                self._settle(batch, outcomes)
        finally:
            self._in_flight -= 1

    @staticmethod
    def _settle(batch: list[tuple[T, asyncio.Future[R]]], outcomes: Sequence[R | BaseException]) -> None:
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the caller was cancelled; the write stands
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
