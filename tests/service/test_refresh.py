"""Server-side OAuth refresh against a real token endpoint on loopback (TLS,
a test CA), strict as GitHub and GitLab are: once per refresh token however
many ask, the new refresh token stored before anyone sees the new access
token, a refused refresh token marked only when it is the stored one, and
an unreachable, slow or rate-limiting provider never marking anything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.crypto import Sealer
from hostauth.refresh.outbound import Outbound, parse_networks
from hostauth.runtime.assembly import postgres_core
from hostauth.store import ApiKeyStore
from tests.support.integrations import create_integration, integration_request
from tests.support.lifecycle import create, get_value, update
from tests.support.oauth_provider import Provider, running_provider
from tests.support.requests import create_request, secret
from tests.support.serving import serving
from tests.support.wire import ConnectWire, GrpcWire, Wire, outcome

NEEDS_SIGN_IN = "needs sign-in: the provider refused its refresh token"


@dataclass
class Setup:
    provider: Provider
    wires: list[Wire]
    pool: asyncpg.Pool


@pytest.fixture
async def refreshing(
    tmp_path: Path,
    pool: asyncpg.Pool,
    sealer: Sealer,
    api_keys: ApiKeyStore,
    database_dsn: str,
    admin_key: str,
) -> AsyncIterator[Setup]:
    async with running_provider(tmp_path) as provider:
        outbound = Outbound(
            allowed=parse_networks("127.0.0.0/8"), ca_file=str(provider.ca_file), timeout_s=1.0
        )
        core = await postgres_core(pool, sealer, outbound=outbound, refresh_window_s=300)
        async with serving(core, api_keys, database_dsn) as running:
            wires: list[Wire] = [
                GrpcWire(str(running.grpc), admin_key),
                ConnectWire(running.http_url, "json", credential=admin_key),
                ConnectWire(running.http_url, "proto", credential=admin_key),
            ]
            yield Setup(provider, wires, pool)
            for wire in wires:
                await wire.close()  # type: ignore[attr-defined]
        await outbound.close()


def at(seconds_from_now: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now))
    return stamp


async def oauth_token(
    setup: Setup, wire: Wire, *, expires_in_s: float, style: str = "github", issuer: str | None = None
) -> tuple[str, str]:
    """A token of source OAUTH through an integration at the provider: its id and refresh token."""
    runner_id = str(uuid4())
    integration_id = await create_integration(
        wire,
        integration_request(runner_id, scm_id=style, issuer_url=issuer or setup.provider.url),
    )
    refresh_token = setup.provider.grant()
    req = create_request(
        runner_id=runner_id,
        integration_id=integration_id,
        refresh_token=refresh_token,
        expires_at=at(expires_in_s),
        source=pb.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH,
    )
    return (await create(wire, req)).id, refresh_token


async def stored_refresh_token(setup: Setup, wire: Wire, token_id: str) -> str:
    return (await get_value(wire, token_id)).refresh_token


@pytest.mark.parametrize("index", [0, 1, 2], ids=["grpc", "connect-json", "connect-proto"])
async def test_many_readers_at_expiry_make_one_provider_call(refreshing: Setup, index: int) -> None:
    wire = refreshing.wires[index]
    refreshing.provider.delay_s = 0.3  # every reader arrives while the refresh is out
    token_id, _ = await oauth_token(refreshing, wire, expires_in_s=2)
    answers = await asyncio.gather(*(get_value(wire, token_id) for _ in range(50)))
    assert refreshing.provider.calls == 1
    ((access, refresh),) = refreshing.provider.issued
    assert {(a.token, a.refresh_token) for a in answers} == {(access, refresh)}
    # Stored (it is what a later read returns, without another call), and
    # the refresh token stored is the one the provider will take next.
    refreshing.provider.delay_s = 0
    later = await get_value(wire, token_id)
    assert (later.token, later.refresh_token) == (access, refresh)
    assert refresh in refreshing.provider.valid
    assert later.expires_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC) + timedelta(hours=7)
    assert refreshing.provider.calls == 1
    async with refreshing.pool.acquire() as conn:
        trail = await conn.fetch(
            "SELECT outcome FROM audit_events"
            " WHERE token_id = $1 AND method = 'RefreshHostAuthenticationToken'",
            UUID(token_id),
        )
    assert [r["outcome"] for r in trail] == ["ok"]


async def test_ten_reads_five_seconds_before_expiry_leave_a_valid_refresh_token(refreshing: Setup) -> None:
    """The peer's failure: ten concurrent reads at 5 s before expiry left
    the refresh token cleared and a failure recorded."""
    wire = refreshing.wires[1]
    refreshing.provider.delay_s = 0.2
    token_id, _ = await oauth_token(refreshing, wire, expires_in_s=5)
    answers = await asyncio.gather(*(get_value(wire, token_id) for _ in range(10)))
    assert len({a.token for a in answers}) == 1
    assert await stored_refresh_token(refreshing, wire, token_id) in refreshing.provider.valid


@pytest.mark.parametrize("style", ["github", "gitlab"])
async def test_a_spent_refresh_token_needs_sign_in_until_replaced(refreshing: Setup, style: str) -> None:
    wire = refreshing.wires[0]
    refreshing.provider.style = style
    token_id, refresh_token = await oauth_token(refreshing, wire, expires_in_s=-10, style=style)
    refreshing.provider.spend(refresh_token)  # used elsewhere: the provider no longer takes it
    code, message = await outcome(get_value(wire, token_id))
    assert code == "failed_precondition"
    assert NEEDS_SIGN_IN in message
    calls = refreshing.provider.calls
    assert calls == 1
    # Marked: the next read says so without asking the provider again.
    code, message = await outcome(get_value(wire, token_id))
    assert (code, refreshing.provider.calls) == ("failed_precondition", calls)
    # New secrets replace the refused ones.
    fresh = refreshing.provider.grant()
    await update(wire, token_id, token=secret("gho_"), refresh_token=fresh, expires_at=at(3600))
    assert (await get_value(wire, token_id)).refresh_token == fresh


@pytest.mark.parametrize("behaviour", ["stall", "rate_limit", "down"])
async def test_a_provider_that_stalls_rate_limits_or_is_down_marks_nothing(
    refreshing: Setup, behaviour: str
) -> None:
    wire = refreshing.wires[2]
    refreshing.provider.behaviour = behaviour
    valid_id, valid_refresh = await oauth_token(refreshing, wire, expires_in_s=60)
    expired_id, _ = await oauth_token(refreshing, wire, expires_in_s=-1)
    # Still valid: returned as it is.
    assert (await get_value(wire, valid_id)).refresh_token == valid_refresh
    # Expired: unavailable, to retry.
    code, message = await outcome(get_value(wire, expired_id))
    assert code == "unavailable", message
    # Nothing marked: once the provider answers again, both refresh.
    refreshing.provider.behaviour = "ok"
    assert (await get_value(wire, expired_id)).token in {a for a, _ in refreshing.provider.issued}
    assert (await get_value(wire, valid_id)).token in {a for a, _ in refreshing.provider.issued}


@pytest.mark.parametrize(
    "issuer",
    ["https://169.254.169.254", "https://10.0.0.1", "https://[::1]:1", "http://127.0.0.1:1"],
    ids=["cloud-metadata", "private", "loopback-v6", "plain-http"],
)
async def test_an_issuer_the_service_does_not_call_is_refused_before_any_request(
    refreshing: Setup, issuer: str
) -> None:
    wire = refreshing.wires[0]
    token_id, refresh_token = await oauth_token(refreshing, wire, expires_in_s=-1, issuer=issuer)
    code, message = await outcome(get_value(wire, token_id))
    assert code == "failed_precondition"
    assert "expired and cannot be refreshed" in message
    assert refresh_token not in message
    assert refreshing.provider.calls == 0
    # Nothing marked either.
    valid_id, valid_refresh = await oauth_token(refreshing, wire, expires_in_s=60, issuer=issuer)
    assert (await get_value(wire, valid_id)).refresh_token == valid_refresh


async def test_refresh_ahead_shares_the_once_only_rule_with_readers(
    refreshing: Setup, pool: asyncpg.Pool, sealer: Sealer
) -> None:
    """Worker 0's round (HOSTAUTH_REFRESH_AHEAD) and readers racing it: one call."""
    wire = refreshing.wires[1]
    refreshing.provider.delay_s = 0.3
    token_id, _ = await oauth_token(refreshing, wire, expires_in_s=60)
    outbound = Outbound(
        allowed=parse_networks("127.0.0.0/8"), ca_file=str(refreshing.provider.ca_file), timeout_s=1.0
    )
    core = await postgres_core(pool, sealer, outbound=outbound, refresh_window_s=300)
    assert core.refresher is not None
    before = (
        REGISTRY.get_sample_value(
            "hostauth_oauth_refreshes_total", {"provider": "github", "outcome": "refreshed"}
        )
        or 0.0
    )
    ahead, *reads = await asyncio.gather(
        core.refresher.refresh_due(limit=1000), *(get_value(wire, token_id) for _ in range(20))
    )
    assert refreshing.provider.calls == 1
    ((access, _),) = refreshing.provider.issued
    assert {r.token for r in reads} == {access}
    after = REGISTRY.get_sample_value(
        "hostauth_oauth_refreshes_total", {"provider": "github", "outcome": "refreshed"}
    )
    assert after == before + 1
    assert (REGISTRY.get_sample_value("hostauth_oauth_refresh_waiters_total") or 0) >= 1
    # Nothing left due: a second round calls no provider.
    await core.refresher.refresh_due(limit=1000)
    assert refreshing.provider.calls == 1
    await outbound.close()
    assert ahead in (0, 1)  # whoever won, the readers' or the round's refresh


async def test_refresh_ahead_pages_through_every_due_token_and_fetches_none_it_cannot_refresh(
    refreshing: Setup, pool: asyncpg.Pool, sealer: Sealer
) -> None:
    """Expired tokens (left to their readers) and tokens with no OAuth app
    to refresh them never fill a page, and a round goes on past its first
    page, so every due token is refreshed however many others there are."""
    wire = refreshing.wires[0]
    for _ in range(2):
        await oauth_token(refreshing, wire, expires_in_s=-60)
        no_app = create_request(
            runner_id=str(uuid4()),
            refresh_token=refreshing.provider.grant(),
            expires_at=at(30),
            source=pb.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH,
        )
        await create(wire, no_app)
    due = [await oauth_token(refreshing, wire, expires_in_s=120 + i) for i in range(3)]
    outbound = Outbound(
        allowed=parse_networks("127.0.0.0/8"), ca_file=str(refreshing.provider.ca_file), timeout_s=1.0
    )
    core = await postgres_core(pool, sealer, outbound=outbound, refresh_window_s=300)
    assert core.refresher is not None
    assert await core.refresher.refresh_due(limit=1) >= len(due)
    assert refreshing.provider.calls == len(due)
    issued = {access for access, _ in refreshing.provider.issued}
    for token_id, _ in due:  # stored: read back without another call
        assert (await get_value(wire, token_id)).token in issued
    assert refreshing.provider.calls == len(due)
    await outbound.close()


@pytest.mark.parametrize("behaviour", ["redirect", "huge"])
async def test_a_redirect_is_not_followed_and_a_huge_answer_not_read(
    refreshing: Setup, behaviour: str
) -> None:
    wire = refreshing.wires[0]
    refreshing.provider.behaviour = behaviour
    token_id, refresh_token = await oauth_token(refreshing, wire, expires_in_s=-1)
    code, _ = await outcome(get_value(wire, token_id))
    assert refreshing.provider.calls == 1  # one request, nothing followed
    assert code in ("failed_precondition", "unavailable")
    # Nothing marked: the refresh token still works once the provider behaves.
    refreshing.provider.behaviour = "ok"
    assert (await get_value(wire, token_id)).token in {a for a, _ in refreshing.provider.issued}
    assert refresh_token not in refreshing.provider.valid


async def test_gitlab_and_bitbucket_get_the_client_their_way(refreshing: Setup) -> None:
    wire = refreshing.wires[2]
    gitlab_id, _ = await oauth_token(refreshing, wire, expires_in_s=-1, style="gitlab")
    await get_value(wire, gitlab_id)
    form = refreshing.provider.last_form
    assert (form["grant_type"], form["client_id"] != "", "client_secret" in form) == (
        "refresh_token",
        True,
        True,
    )
    bitbucket_id, _ = await oauth_token(refreshing, wire, expires_in_s=-1, style="bitbucket")
    await get_value(wire, bitbucket_id)
    assert "client_secret" not in refreshing.provider.last_form
    assert refreshing.provider.last_authorization.startswith("Basic ")
