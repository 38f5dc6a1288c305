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
