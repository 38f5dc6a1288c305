"""A pooled connection that an error of unknown state never goes back to the pool."""

from __future__ import annotations

import contextlib
from types import TracebackType

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hostauth.store.outage import breaks_connection


def drop(conn: PoolConnectionProxy[asyncpg.Record]) -> None:
    """Close a pooled connection at once; its pool slot becomes free."""
    with contextlib.suppress(asyncpg.InterfaceError):  # the pool took a lost one back itself
        conn.terminate()


class Waiting:
    """How many are waiting for a pooled connection in this process (a metric)."""

    count = 0


class pooled:  # noqa: N801 # used as a function: `async with pooled(pool) as conn`
    """pool.acquire(), except that a connection a statement failed on in a way
    that leaves its protocol state unknown (a half-lost connection, asyncpg's
    InternalClientError) is terminated rather than handed to the next caller.
    A plain class: a generator-based context manager costs a few per cent of
    a cheap request."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: PoolConnectionProxy[asyncpg.Record] | None = None

    async def __aenter__(self) -> PoolConnectionProxy[asyncpg.Record]:
        Waiting.count += 1
        try:
            self._conn = await self._pool.acquire()
        finally:
            Waiting.count -= 1
        return self._conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if exc is not None and breaks_connection(exc):
            drop(conn)
            with contextlib.suppress(asyncpg.InterfaceError):  # taken back already
                await self._pool.release(conn)
            return
        await self._pool.release(conn)


async def ping(pool: asyncpg.Pool) -> None:
    """One round trip through the pool (readiness); raises what the call met."""
    async with pooled(pool) as conn:
        await conn.fetchval("SELECT 1")
