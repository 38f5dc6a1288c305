"""Worker 0 keeps the audit trail's partitions: at start and then hourly,
the next days' partitions are made, and (once, after the migration that
partitions the table) the rows from before are attached, on a connection of
its own with no statement timeout, since proving them reads them all."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from hostauth.log_repeats import Repeats
from hostauth.retry import backoff_s
from hostauth.store.audit_partitions import attach_unpartitioned, ensure_partitions, unpartitioned_pending

log = logging.getLogger(__name__)
_failures = Repeats(log)

EVERY_S = 3600.0


async def keep_audit_partitions(dsn: str, timeout_s: float) -> None:
    """For ever: the partitions ahead, and the old rows attached."""
    attempt = 0
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=timeout_s)
            try:
                await ensure_partitions(conn)
                if await unpartitioned_pending(conn):
                    await attach_unpartitioned(conn)
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            # The database's own words name tables and constraints, never a value.
            _failures.log("audit partitions not kept: %s: %s", type(exc).__name__, exc)
            attempt += 1
            await asyncio.sleep(backoff_s(attempt))
            continue
        attempt = 0
        await asyncio.sleep(EVERY_S)
