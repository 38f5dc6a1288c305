"""The audit trail partitioned, as an operator upgrading a populated
database meets it: the migration swaps tables in a moment while writers
keep writing; worker 0 proves and attaches the old rows without stopping
them, and makes the days ahead; `audit list` sees old and new rows
throughout; `audit prune` drops whole partitions, never inside the
retention floor."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.store.audit_partitions import (
    DAYS_AHEAD,
    PruneRefused,
    attach_unpartitioned,
    ensure_partitions,
    partition_name,
    prune,
)
from hostauth.store.migrate import migrate
from tests.support.cli import run_cli
from tests.support.db import create_database, fetch_rows, fetch_value
from tests.support.processes import start_server, wait_serving
from tests.support.requests import create_request
from tests.support.serving import TEST_KEYRING_JSON, service_account_key
from tests.support.wire import wires_of

OLD_ROWS = 200_000


async def _populated_before_partitioning(dsn: str) -> None:
    """A database as the release before partitioning left it, with a
    trail of OLD_ROWS over the last 60 days."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, upto=4)
        await conn.execute(
            """INSERT INTO audit_events
                   (at, request_id, method, token_id, principal, subject_id, credential_id, outcome)
               SELECT now() - (i * interval '26 seconds'), md5(i::text), 'GetHostAuthenticationTokenValue',
                      gen_random_uuid(), 4, gen_random_uuid(), 'api_key:old', 'ok'
               FROM generate_series(1, $1) i""",
            OLD_ROWS,
        )
    finally:
        await conn.close()


async def test_a_populated_trail_moves_onto_partitions_while_calls_are_written(
    admin_dsn: str, log_dir: Path
) -> None:
    dsn = await create_database(admin_dsn)
    await _populated_before_partitioning(dsn)
    server = start_server(
        log_dir, {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON}, args=("--workers", "2")
    )
    try:
        await wait_serving(server)
        key = await service_account_key(dsn)
        written = 0
        deadline = time.monotonic() + 60
        while not await fetch_value(dsn, "SELECT attached FROM audit_partitioning"):  # writers meanwhile
            assert time.monotonic() < deadline, server.log.read_text()
            for wire in wires_of(server, key):
                await wire.call(
                    "CreateHostAuthenticationToken",
                    create_request(),
                    pb.CreateHostAuthenticationTokenResponse,
                )
                written += 1
        for wire in wires_of(server, key):  # and after
            await wire.call(
                "CreateHostAuthenticationToken", create_request(), pb.CreateHostAuthenticationTokenResponse
            )
            written += 1
        total = await fetch_value(dsn, "SELECT count(*) FROM audit_events")
        assert total == OLD_ROWS + written
        partitions = {
            r
            for (r,) in await fetch_rows(
                dsn, "SELECT relid::text FROM pg_partition_tree('audit_events') WHERE isleaf"
            )
        }
        today = datetime.now(UTC)
        ahead = {partition_name(today + timedelta(days=i)) for i in range(DAYS_AHEAD + 1)}
        assert ahead | {"audit_events_unpartitioned", "audit_events_default"} <= partitions
        assert await fetch_value(dsn, "SELECT count(*) FROM audit_events_default") == 0
        newest = await run_cli(dsn, "audit", "list", "--limit", "3", "--json")
        assert '"CreateHostAuthenticationToken"' in newest.stdout
        oldest = await run_cli(
            dsn, "audit", "list", "--until", (today - timedelta(days=59)).isoformat(), "--json"
        )
        assert '"api_key:old"' in oldest.stdout
        assert "the audit rows from before partitioning are attached" in server.log.read_text()
    finally:
        server.stop()


async def test_prune_drops_whole_partitions_and_never_inside_the_floor(admin_dsn: str) -> None:
    dsn = await create_database(admin_dsn)
    await _populated_before_partitioning(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        refused = await run_cli(dsn, "audit", "prune", "--before", datetime.now(UTC).isoformat())
        assert refused.returncode == 1
        assert "inside the retention floor of 30 day(s)" in refused.stderr
        far = datetime.now(UTC) - timedelta(days=400)
        unattached = await run_cli(dsn, "audit", "prune", "--before", far.isoformat())
        assert "not attached yet" in unattached.stderr
        await ensure_partitions(conn)
        assert await attach_unpartitioned(conn)
        cutover: datetime = await conn.fetchval("SELECT cutover FROM audit_partitioning")
        later = cutover + timedelta(days=40)  # as if 40 days had passed
        with pytest.raises(PruneRefused, match="retention floor"):
            await prune(conn, cutover + timedelta(days=20), 30, now=later)
        pruned = await prune(conn, cutover + timedelta(days=2), 30, now=later)
        day = datetime(cutover.year, cutover.month, cutover.day, tzinfo=UTC)
        assert pruned.dropped == sorted(
            ["audit_events_unpartitioned", partition_name(day), partition_name(day + timedelta(days=1))]
        )
        assert pruned.rows == OLD_ROWS
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
        assert await conn.fetchval(
            "SELECT to_regclass('audit_events_id_seq') IS NOT NULL"
        )  # the sequence stays
    finally:
        await conn.close()
