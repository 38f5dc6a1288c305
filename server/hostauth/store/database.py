"""The asyncpg pool, with the schema brought up to date before first use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import asyncpg

from hostauth.config import DEFAULT_DB_TIMEOUT_S
from hostauth.store.migrate import migrate as run_migrations
from hostauth.store.outage import DatabaseUnreachable, where

log = logging.getLogger(__name__)

# How long closing waits for pooled connections to come back.
CLOSE_WAIT_S = 2.0


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool. The store keeps
    no session state (no SET, LISTEN or session advisory locks), so unlike
    asyncpg's default (a RESET ALL round trip per release) only a transaction
    left open by a cancelled request needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


# How long connecting, and then any one statement, may take before the call
# fails (as an outage: unavailable) instead of waiting on a database that
# does not answer.


async def connect_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    timeout_s: float = DEFAULT_DB_TIMEOUT_S,
    migrate: bool = True,
) -> asyncpg.Pool:
    """The pool, after bringing the schema up to date (migrate=False: someone
    already did, the supervisor for its workers). DatabaseUnreachable names
    the database a connection could not be made to."""
    if migrate:
        # Migrations run on a connection of their own, without the statement
        # timeout: one may rewrite a large table, or wait for another starter's.
        conn = await _connect(asyncpg.connect(dsn, timeout=timeout_s), dsn)
        try:
            await run_migrations(conn)
        finally:
            await conn.close()
    pool: asyncpg.Pool = await _connect(
        asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            reset=_reset,
            timeout=timeout_s,
            command_timeout=timeout_s,
            # No idle-connection timer: asyncpg would arm and cancel one on every
            # acquire and release. Idle connections cost the server little.
            max_inactive_connection_lifetime=0,
        ),
        dsn,
    )
    return pool


T = TypeVar("T")


async def connect_once(dsn: str, timeout_s: float) -> asyncpg.Connection:
    """One connection, with no statement timeout; DatabaseUnreachable names
    the database when it cannot be made (refused, or its certificate not
    trusted)."""
    conn: asyncpg.Connection = await _connect(asyncpg.connect(dsn, timeout=timeout_s), dsn)
    return conn


async def _connect(connecting: Awaitable[T], dsn: str) -> T:
    try:
        return await connecting
    except TimeoutError:
        raise  # said as such by the caller, with the setting that bounds it
    except OSError as exc:
        raise DatabaseUnreachable(
            f"cannot connect to the database at {where(dsn)}: {exc.strerror or exc}"
        ) from exc


async def close_pool(pool: asyncpg.Pool, wait_s: float = CLOSE_WAIT_S) -> bool:
    """Close the pool, waiting at most wait_s for connections in use; True if
    every one came back. A connection never given back (a bug) would
    otherwise hold the process open for ever."""
    try:
        await asyncio.wait_for(pool.close(), wait_s)
    except TimeoutError:  # close() terminated the pool when cancelled
        log.warning("database connections still in use after %g s; closed them", wait_s)
        return False
    return True
