"""The primary killed under load and its synchronous standby promoted: the
service finds the new primary through a multi-host DATABASE_URL
(target_session_attrs=read-write) by itself, answers unavailable meanwhile,
and loses no acknowledged write or its audit row."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from hostauth.crypto import Sealer
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from tests.support.db import create_database, fetch_value, make_standby_synchronous, until_true, with_database
from tests.support.jwts import Issuer
from tests.support.lifecycle import create
from tests.support.own_postgres import served_with_jwt
from tests.support.wire import RpcError, Wire


def _socket_dir(pg: EmbeddedPostgres) -> str:
    return parse_qs(urlsplit(pg.dsn).query)["host"][0]


class _Load:
    """Writers creating tokens until told to stop; what was acknowledged,
    and every failure by code."""

    def __init__(self, wires: list[Wire]) -> None:
        self.wires = wires
        self.acknowledged: list[str] = []
        self.failed: collections.Counter[str] = collections.Counter()
        self.last_success = 0.0
        self.stop = asyncio.Event()

    async def _writer(self, wire: Wire) -> None:
        while not self.stop.is_set():
            try:
                token = await create(wire)
            except RpcError as exc:
                self.failed[exc.code] += 1
                await asyncio.sleep(0.05)
                continue
            self.acknowledged.append(token.id)
            self.last_success = time.monotonic()

    async def run(self) -> None:
        await asyncio.gather(*(self._writer(w) for w in self.wires for _ in range(3)))


@pytest.fixture
def folder() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="hostauth-failover-"))
    made.chmod(0o755)  # reachable by the unprivileged user PostgreSQL runs as under root
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _kill(pg: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster; its backends notice and exit."""
    os.kill(int((pg.data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)


async def test_failover_to_the_promoted_standby_loses_nothing_acknowledged(
    sealer: Sealer, jwt_issuer: Issuer, caplog: pytest.LogCaptureFixture, folder: Path
) -> None:
    primary = EmbeddedPostgres(folder / "primary", fsync=True)  # synchronous_commit on
    standby: EmbeddedPostgres | None = None
    try:
        primary.start()
        name = urlsplit(await create_database(primary.dsn)).path.lstrip("/")
        standby = primary.standby(folder / "standby")
        standby.start()
        await make_standby_synchronous(primary.dsn)
        both = (
            f"postgresql://postgres@/{name}?host={_socket_dir(primary)},{_socket_dir(standby)}"
            "&port=5432,5432&target_session_attrs=read-write"
        )
        async with served_with_jwt(both, sealer, jwt_issuer, timeout_s=2.0) as wires:
            load = _Load(wires)
            running = asyncio.create_task(load.run())
            await asyncio.sleep(1.5)
            before = len(load.acknowledged)
            assert before > 0
            assert not load.failed
            _kill(primary)
            killed = time.monotonic()
            await asyncio.sleep(1.0)  # without a primary for a while
            await fetch_value(standby.dsn, "SELECT pg_promote()")
            await until_true(standby.dsn, "SELECT NOT pg_is_in_recovery()")
            while load.last_success < killed + 1.0:  # until writes land on the new primary
                assert time.monotonic() - killed < 30, f"no write since the kill; failed {load.failed}"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            load.stop.set()
            await running
        took = load.last_success - killed
        assert len(load.acknowledged) > before
        assert set(load.failed) <= {"unavailable"}, load.failed  # never internal
        new_primary = with_database(standby.dsn, name)
        conn = await asyncpg.connect(new_primary)
        try:
            stored = {
                str(r["id"])
                for r in await conn.fetch(
                    "SELECT id FROM host_authentication_tokens WHERE id = ANY($1::uuid[])", load.acknowledged
                )
            }
            audited = {
                str(r["token_id"])
                for r in await conn.fetch(
                    "SELECT token_id FROM audit_events WHERE method = 'CreateHostAuthenticationToken'"
                    " AND token_id = ANY($1::uuid[])",
                    load.acknowledged,
                )
            }
        finally:
            await conn.close()
        assert set(load.acknowledged) - stored == set()  # no acknowledged write lost
        assert set(load.acknowledged) - audited == set()  # nor its audit row
        assert "database back after" in caplog.text
        print(  # for the record in -s runs: the figures of this failover
            f"failover: {len(load.acknowledged)} acknowledged, failed {dict(load.failed)},"
            f" writes back {took:.1f} s after the kill"
        )
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
