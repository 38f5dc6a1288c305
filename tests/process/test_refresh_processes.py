"""OAuth refresh across processes: two services of two workers each on one
database, and a refresh whose holder is killed mid-call."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from uuid import uuid4

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.core.policy import READ_SECRETS
from tests.service.test_refresh import NEEDS_SIGN_IN, at
from tests.support.db import create_database, fetch_rows, until_true
from tests.support.integrations import create_integration, integration_request
from tests.support.lifecycle import create, get_value
from tests.support.oauth_provider import Provider, running_provider
from tests.support.processes import ServerProcess, start_server, wait_serving
from tests.support.requests import create_request
from tests.support.sensitive import leaks
from tests.support.serving import TEST_KEYRING_JSON, service_account_key
from tests.support.wire import ConnectWire, GrpcWire, Wire, outcome


def env_for(dsn: str, provider: Provider, workers: int, timeout_s: float = 3.0) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
        "HOSTAUTH_WORKERS": str(workers),
        "HOSTAUTH_OAUTH_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HOSTAUTH_OAUTH_CA_FILE": str(provider.ca_file),
        "HOSTAUTH_OAUTH_TIMEOUT_S": str(timeout_s),
    }


def wires(server: ServerProcess, key: str) -> list[Wire]:
    url = f"http://127.0.0.1:{server.http_port}"
    return [GrpcWire(f"127.0.0.1:{server.grpc_port}", key), ConnectWire(url, "json", credential=key)]


async def oauth_token(wire: Wire, provider: Provider, expires_in_s: float) -> str:
    runner_id = str(uuid4())
    integration_id = await create_integration(wire, integration_request(runner_id, issuer_url=provider.url))
    req = create_request(
        runner_id=runner_id,
        integration_id=integration_id,
        refresh_token=provider.grant(),
        expires_at=at(expires_in_s),
        source=pb.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH,
    )
    return (await create(wire, req)).id


async def test_two_services_of_two_workers_make_one_provider_call(admin_dsn: str, tmp_path: Path) -> None:
    dsn = await create_database(admin_dsn)
    async with running_provider(tmp_path) as provider:
        provider.delay_s = 0.5
        servers = [start_server(tmp_path, env_for(dsn, provider, 2)) for _ in range(2)]
        try:
            await asyncio.gather(*(wait_serving(s) for s in servers))
            key = await service_account_key(dsn, READ_SECRETS)
            clients = [w for s in servers for w in wires(s, key)]
            token_id = await oauth_token(clients[0], provider, expires_in_s=3)
            answers = await asyncio.gather(
                *(get_value(clients[i % len(clients)], token_id) for i in range(200))
            )
            assert provider.calls == 1
            ((access, refresh),) = provider.issued
            assert {(a.token, a.refresh_token) for a in answers} == {(access, refresh)}
            assert refresh in provider.valid  # the stored refresh token is the live one
            rows = await fetch_rows(
                dsn,
                "SELECT outcome FROM audit_events WHERE method = 'RefreshHostAuthenticationToken'",
            )
            assert [r["outcome"] for r in rows] == ["ok"]  # no failure recorded
            for client in clients:
                await client.close()  # type: ignore[attr-defined]
        finally:
            for server in servers:
                assert leaks(server.stop()) == []  # no token, refresh token or client secret


async def _killed_mid_refresh(admin_dsn: str, tmp_path: Path, behaviour: str) -> tuple[str, str, Provider]:
    dsn = await create_database(admin_dsn)
    async with running_provider(tmp_path) as provider:
        holder = start_server(tmp_path, env_for(dsn, provider, 1, timeout_s=30))
        other = start_server(tmp_path, env_for(dsn, provider, 1, timeout_s=3))
        try:
            await asyncio.gather(wait_serving(holder), wait_serving(other))
            key = await service_account_key(dsn, READ_SECRETS)
            holder_wire, other_wire = wires(holder, key)[1], wires(other, key)[1]
            token_id = await oauth_token(holder_wire, provider, expires_in_s=-1)
            provider.behaviour = behaviour
            first = asyncio.create_task(outcome(get_value(holder_wire, token_id)))
            await asyncio.wait_for(provider.arrived.wait(), 30)
            holder.proc.send_signal(signal.SIGKILL)  # mid-call, the row lock held
            await asyncio.to_thread(holder.proc.wait)
            provider.behaviour = "ok"
            code, message = await outcome(get_value(other_wire, token_id))
            first.cancel()
            return code, message, provider
        finally:
            holder.stop()
            assert leaks(other.stop()) == []


async def test_a_refresh_whose_holder_is_killed_is_completed_by_the_next_reader(
    admin_dsn: str, tmp_path: Path
) -> None:
    code, message, provider = await _killed_mid_refresh(admin_dsn, tmp_path, "stall")
    assert (code, message) == ("ok", "")
    assert provider.calls == 2
    assert len(provider.issued) == 1


async def test_a_refresh_lost_with_its_holder_is_reported_as_needing_sign_in(
    admin_dsn: str, tmp_path: Path
) -> None:
    """The provider rotated the refresh token, and the answer died with the
    process: the loss is detected and said, never silent."""
    code, message, provider = await _killed_mid_refresh(admin_dsn, tmp_path, "rotate_then_stall")
    assert code == "failed_precondition"
    assert NEEDS_SIGN_IN in message
    assert provider.calls == 2


async def test_refresh_ahead_in_two_services_refreshes_a_token_once_before_any_read(
    admin_dsn: str, tmp_path: Path
) -> None:
    """HOSTAUTH_REFRESH_AHEAD=on in two services of two workers: worker 0 of
    each runs the round, the row lock lets one of them call the provider, and
    the token is fresh before anyone reads it."""
    dsn = await create_database(admin_dsn)
    async with running_provider(tmp_path) as provider:
        env = env_for(dsn, provider, 2) | {"HOSTAUTH_REFRESH_AHEAD": "on"}
        servers = [start_server(tmp_path, env) for _ in range(2)]
        try:
            await asyncio.gather(*(wait_serving(s) for s in servers))
            key = await service_account_key(dsn, READ_SECRETS)
            client = wires(servers[1], key)[1]
            token_id = await oauth_token(client, provider, expires_in_s=120)
            refreshed = (
                "SELECT credential_id, outcome FROM audit_events"
                " WHERE method = 'RefreshHostAuthenticationToken'"
            )
            await until_true(dsn, f"SELECT EXISTS ({refreshed})", within_s=40)  # a round every 15 s
            rows = await fetch_rows(dsn, refreshed)
            assert [(r["credential_id"], r["outcome"]) for r in rows] == [("service:refresh-ahead", "ok")]
            await asyncio.sleep(16)  # both services' next rounds: nothing left due
            assert provider.calls == 1
            ((access, refresh),) = provider.issued
            answer = await get_value(client, token_id)  # no wait, no call
            assert (answer.token, answer.refresh_token) == (access, refresh)
            assert provider.calls == 1
            await client.close()  # type: ignore[attr-defined]
        finally:
            for server in servers:
                assert leaks(server.stop()) == []
