"""The database a command runs against: DATABASE_URL, or (--dev) the embedded one."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from hostauth.config import Settings
from hostauth.runtime.embedded_pg import PORT, EmbeddedPostgres
from hostauth.store import connect_pool
from hostauth.store.database import connect_once

log = logging.getLogger(__name__)


def running_embedded_dsn(data_dir: Path) -> str | None:
    """The DSN of an embedded server already running on data_dir (say, `make
    run` in another terminal), from its postmaster.pid; None if there is none."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready" or not lines[4]:
        return None
    return f"postgresql://postgres@/postgres?host={lines[4]}&port={lines[3] or PORT}"


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """A DSN for as long as the block runs.

    Call it from the main thread: an embedded server it starts is tied to the
    thread that started it (parent-death signal).
    """
    if settings.database_url is not None:
        yield settings.database_url
        return
    data_dir = settings.data_dir / "pgdata"
    dsn = running_embedded_dsn(data_dir)
    if dsn is not None:
        yield dsn
        return
    with EmbeddedPostgres(data_dir) as pg:
        log.info("embedded PostgreSQL in %s", data_dir)
        yield pg.dsn


async def admin_pool(settings: Settings, dsn: str, *, max_size: int = 1) -> asyncpg.Pool:
    """The small pool of an administrative command, with the configured timeout."""
    return await connect_pool(dsn, min_size=1, max_size=max_size, timeout_s=settings.db_timeout_s)


# Connections kept free of the service's for an operator (psql, a migration
# by hand, monitoring), besides the server's own reserved ones.
OPERATOR_RESERVE = 5


class ConnectionBudgetError(Exception):
    """The service's pools would need more connections than it may have."""


async def check_connection_budget(settings: Settings, dsn: str, workers: int) -> None:
    """Workers x pool size against HOSTAUTH_DB_MAX_CONNECTIONS, or (unset)
    against what the server allows one client at most: max_connections less
    its reserved connections and an operator's reserve. With N replicas, set
    HOSTAUTH_DB_MAX_CONNECTIONS to their share."""
    needed = workers * settings.db_pool_size
    if settings.db_max_connections is not None:
        if needed > settings.db_max_connections:
            raise ConnectionBudgetError(
                f"{workers} worker(s) x HOSTAUTH_DB_POOL_SIZE {settings.db_pool_size} = {needed} database"
                f" connections, more than HOSTAUTH_DB_MAX_CONNECTIONS ({settings.db_max_connections}):"
                " lower the pool size or the workers, or raise the budget"
            )
        return
    conn = await connect_once(dsn, settings.db_timeout_s)
    try:
        row = await conn.fetchrow(
            """SELECT current_setting('max_connections')::int AS max,
                      current_setting('superuser_reserved_connections')::int
                      + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved"""
        )
    finally:
        await conn.close()
    assert row is not None
    allowed = row["max"] - row["reserved"] - OPERATOR_RESERVE
    if needed > allowed:
        raise ConnectionBudgetError(
            f"{workers} worker(s) x HOSTAUTH_DB_POOL_SIZE {settings.db_pool_size} = {needed} database"
            f" connections, more than the database allows ({row['max']} max_connections, less"
            f" {row['reserved']} reserved and {OPERATOR_RESERVE} for operators = {allowed}): lower the pool"
            " size or the workers, raise max_connections, or set HOSTAUTH_DB_MAX_CONNECTIONS to this"
            " replica's share"
        )
