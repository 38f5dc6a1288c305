"""The gauges a worker samples rather than counts: its pool (each second),
whether its database answers (the readiness probe's last word), and, on
worker 0 only, counts read from the database at most once a minute (keys
by state, the primary key's age, rows left to rewrap, tokens expired
without a refresh token by host kind).

Host kinds keep that label bounded: a host is github, gitlab or bitbucket
when it is that service or (for GitHub Enterprise and self-managed GitLab)
a host whose first label names it; anything else is other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import asyncpg

from hostauth.log_repeats import Repeats
from hostauth.store.fleet import fleet_counts
from hostauth.store.pooled import Waiting
from hostauth.telemetry import metrics

log = logging.getLogger(__name__)
_failures = Repeats(log)

HOST_KINDS = ("github", "gitlab", "bitbucket", "other")
KEY_STATES = ("primary", "active", "retired")
SAMPLE_EVERY_S = 1.0
COUNT_EVERY_S = 60.0


def host_kind(host: str) -> str:
    name = host.lower().split(":")[0]
    first = name.split(".")[0]
    for kind in ("github", "gitlab", "bitbucket"):
        if first == kind or name.endswith(f".{kind}.com") or name in (f"{kind}.com", f"{kind}.org"):
            return kind
    return "other"


def sample_pool(pool: asyncpg.Pool | None, database_ok: bool) -> None:
    if pool is not None:
        size, idle = pool.get_size(), pool.get_idle_size()
        metrics.pool_connections.labels("in_use").set(size - idle)
        metrics.pool_connections.labels("idle").set(idle)
    metrics.pool_waiting.set(Waiting.count)
    metrics.database_up.set(1 if database_ok else 0)


async def count_fleet(pool: asyncpg.Pool) -> None:
    counts = await fleet_counts(pool)
    for state in KEY_STATES:
        metrics.encryption_keys.labels(state).set(counts.keys_by_state.get(state, 0))
    if counts.primary_age_s is not None:
        metrics.primary_key_age_seconds.set(counts.primary_age_s)
    metrics.rewrap_pending_rows.set(counts.rewrap_pending)
    by_kind = dict.fromkeys(HOST_KINDS, 0)
    for host, n in counts.expired_by_host.items():
        by_kind[host_kind(host)] += n
    for kind, n in by_kind.items():
        metrics.expired_without_refresh.labels(kind).set(n)
    metrics.database_gauges_updated.set(time.time())


async def sample_for_ever(
    pool: Callable[[], asyncpg.Pool | None],
    database_ok: Callable[[], bool],
    flush: Callable[[], None],
    *,
    count: bool,
) -> None:
    """Each second, sample and flush the calls' counts; with `count`, read the
    database's counts once a minute too (the first as soon as a pool is there)."""
    next_count = 0.0
    while True:
        flush()
        current = pool()
        sample_pool(current, database_ok())
        if count and current is not None and time.monotonic() >= next_count:
            try:
                await count_fleet(current)
            except Exception as exc:  # noqa: BLE001 # a gauge must never stop the service
                _failures.log("database gauges not computed: %s", type(exc).__name__)
                next_count = time.monotonic() + SAMPLE_EVERY_S * 5
            else:
                next_count = time.monotonic() + COUNT_EVERY_S
        await asyncio.sleep(SAMPLE_EVERY_S)


async def stop_sampling(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
