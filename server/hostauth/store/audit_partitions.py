"""The audit trail's partitions: one a day (UTC), made ahead by the service,
dropped whole by `hostauth audit prune`; and the rows written before the
table was partitioned, attached as one more partition once proven to lie
before the swap (migration 0005).

Attaching scans those rows once to prove the bound (VALIDATE CONSTRAINT,
which writers do not wait for: nothing writes to that table any more) and
builds the (id, at) index the partitioned table's key needs concurrently;
the ATTACH itself then takes a moment. One process does it at a time (an
advisory lock); until it is done, `audit list` reads both tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from hostauth.store.connection import Connection

log = logging.getLogger(__name__)

DAYS_AHEAD = 7
UNPARTITIONED = "audit_events_unpartitioned"
_LOCK_KEY = 0x6861756474  # "haudt": one attach or prune at a time, across replicas


def partition_name(day: datetime) -> str:
    return f"audit_events_{day.astimezone(UTC):%Y%m%d}"


def _midnight(when: datetime) -> datetime:
    when = when.astimezone(UTC)
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


async def ensure_partitions(conn: Connection, days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Today's partition and the next days', those missing; the names made."""
    existing = {r["name"] for r in await conn.fetch(_PARTITIONS)}
    today = _midnight(await conn.fetchval("SELECT now()"))
    made = []
    for i in range(days_ahead + 1):
        day = today + timedelta(days=i)
        name = partition_name(day)
        if name in existing:
            continue
        ends = day + timedelta(days=1)
        try:  # DDL takes no parameters: the bounds are the service's own datetimes
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF audit_events'
                f" FOR VALUES FROM ('{day.isoformat()}') TO ('{ends.isoformat()}')"
            )
        except asyncpg.CheckViolationError:
            # Rows of that day already sit in the default partition (no
            # partition was made for them in time): they stay there.
            log.error("audit partition %s not made: the default partition holds rows of its day", name)
            continue
        made.append(name)
    if made:
        log.info("audit partitions made ahead: %s", ", ".join(made))
    return made


_PARTITIONS = """
SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'audit_events'::regclass"""


async def unpartitioned_pending(conn: Connection) -> bool:
    """Whether the rows from before partitioning still wait to be attached."""
    return bool(await conn.fetchval("SELECT NOT attached FROM audit_partitioning"))


async def attach_unpartitioned(conn: Connection) -> bool:
    """Prove and attach the rows from before partitioning; True when done now.
    `conn` must have no statement timeout: the proof reads every old row."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
        return False
    try:
        if not await unpartitioned_pending(conn):
            return False
        cutover: datetime = await conn.fetchval("SELECT cutover FROM audit_partitioning")
        started = datetime.now(UTC)
        await conn.execute(f"ALTER TABLE {UNPARTITIONED} VALIDATE CONSTRAINT {UNPARTITIONED}_before")
        await conn.execute(
            f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {UNPARTITIONED}_id_at"
            f" ON {UNPARTITIONED} (id, at)"
        )
        async with conn.transaction():
            # Its key on id alone gives way to the trail's (id, at), just built.
            await conn.execute(f"ALTER TABLE {UNPARTITIONED} DROP CONSTRAINT IF EXISTS {UNPARTITIONED}_pkey")
            await conn.execute(
                f"ALTER TABLE audit_events ATTACH PARTITION {UNPARTITIONED}"
                f" FOR VALUES FROM (MINVALUE) TO ('{cutover.isoformat()}')"
            )
            await conn.execute("UPDATE audit_partitioning SET attached = true")
        log.info(
            "the audit rows from before partitioning are attached (%.1f s)",
            (datetime.now(UTC) - started).total_seconds(),
        )
        return True
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


@dataclass(frozen=True, slots=True)
class Pruned:
    dropped: list[str]
    rows: int


class PruneRefused(Exception):
    """A prune inside the retention floor, or before the old rows are attached."""


async def prune(
    conn: Connection, before: datetime, floor_days: int, *, now: datetime | None = None
) -> Pruned:
    """Drop every partition wholly before `before` (a day partition when its
    day has ended by then; the rows from before partitioning when the swap
    was); refuses when `before` is later than the retention floor allows
    (counted back from `now`, the database's clock unless given)."""
    now = now or await conn.fetchval("SELECT now()")
    if before > now - timedelta(days=floor_days):
        raise PruneRefused(
            f"--before {before.isoformat()} is inside the retention floor of {floor_days} day(s)"
            f" (HOSTAUTH_AUDIT_RETENTION_DAYS): the earliest allowed is"
            f" {(now - timedelta(days=floor_days)).isoformat()}"
        )
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
        raise PruneRefused("another prune or attach is running; try again")
    try:
        if await unpartitioned_pending(conn):
            raise PruneRefused(
                "the rows from before partitioning are not attached yet; a worker attaches them"
            )
        cutover: datetime = await conn.fetchval("SELECT cutover FROM audit_partitioning")
        doomed = []
        for name in sorted(r["name"] for r in await conn.fetch(_PARTITIONS)):
            if name == UNPARTITIONED:
                ends = cutover
            elif name.removeprefix("audit_events_").isdigit():
                ends = datetime.strptime(name[-8:], "%Y%m%d").replace(tzinfo=UTC) + timedelta(days=1)
            else:
                continue  # the default partition is never dropped
            if ends <= before:
                doomed.append(name)
        rows = 0
        for name in doomed:
            rows += await conn.fetchval(f'SELECT count(*) FROM "{name}"')
            async with conn.transaction():
                await conn.execute(f'ALTER TABLE audit_events DETACH PARTITION "{name}"')
                await conn.execute(f'DROP TABLE "{name}"')
        return Pruned(doomed, rows)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
