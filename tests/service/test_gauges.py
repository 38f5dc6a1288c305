"""The gauges read from the database, as an operator's dashboard shows them:
expired tokens without a refresh token by host kind, keys by state, rows
left to rewrap; and the sampled pool and database gauges."""

from __future__ import annotations

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.telemetry.gauges import count_fleet, sample_pool
from tests.support.requests import create_request, secret
from tests.support.wire import Wire

PAST = Timestamp(seconds=1_600_000_000)  # 2020


def _gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def _create(wire: Wire, host: str, *, refresh: bool) -> None:
    request = create_request(host=host, expires_at=PAST, refresh_token=secret("ghr_") if refresh else None)
    await wire.call("CreateHostAuthenticationToken", request, pb.CreateHostAuthenticationTokenResponse)


async def test_expired_tokens_without_refresh_are_counted_by_host_kind(
    wire: Wire, pool: asyncpg.Pool
) -> None:
    await count_fleet(pool)
    before = {
        kind: _gauge("hostauth_tokens_expired_without_refresh", host_kind=kind)
        for kind in ("github", "gitlab", "other")
    }
    await _create(wire, "github.com", refresh=False)
    await _create(wire, "github.example.com", refresh=False)
    await _create(wire, "gitlab.example.com", refresh=False)
    await _create(wire, "git.example.org", refresh=False)
    await _create(wire, "github.com", refresh=True)  # can be refreshed: not counted
    await count_fleet(pool)
    after = {kind: _gauge("hostauth_tokens_expired_without_refresh", host_kind=kind) for kind in before}
    assert {kind: after[kind] - before[kind] for kind in before} == {"github": 2, "gitlab": 1, "other": 1}
    assert not [
        labels
        for (name, labels) in _series()
        if name == "hostauth_tokens_expired_without_refresh" and "example" in str(labels)
    ]


def _series() -> list[tuple[str, dict[str, str]]]:
    return [(s.name, s.labels) for family in REGISTRY.collect() for s in family.samples]


async def test_keys_and_rewrap_come_from_the_registry(pool: asyncpg.Pool) -> None:
    await count_fleet(pool)
    states = dict(await pool.fetch("SELECT state, count(*) FROM encryption_keys GROUP BY state"))
    for state in ("primary", "active", "retired"):
        assert _gauge("hostauth_encryption_keys", state=state) == states.get(state, 0), state
    pending = await pool.fetchval(
        """SELECT count(*) FROM host_authentication_tokens t, encryption_keys k
           WHERE k.state = 'primary' AND (t.token_kek_id <> k.id OR t.refresh_token_kek_id <> k.id)"""
    )
    assert _gauge("hostauth_rewrap_pending_rows") == pending
    assert _gauge("hostauth_database_gauges_updated_timestamp_seconds") > 0


async def test_sampled_gauges_follow_the_pool_and_the_probe(pool: asyncpg.Pool) -> None:
    async with pool.acquire():
        sample_pool(pool, database_ok=True)
        assert _gauge("hostauth_db_pool_connections", state="in_use") >= 1
        assert _gauge("hostauth_database_up") == 1
    sample_pool(None, database_ok=False)
    assert _gauge("hostauth_database_up") == 0
