"""The audit trail: every secret read (allowed or refused) and every write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import grpc
import pytest
from prometheus_client import REGISTRY

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.crypto import Sealer, SecretContext
from hostauth.store import ApiKeyStore
from tests.support.cli import run_cli
from tests.support.integrations import new_runner, sealed_read
from tests.support.lifecycle import create, delete, get, get_value, update
from tests.support.requests import create_request, secret
from tests.support.sensitive import leaks
from tests.support.serving import make_api_key
from tests.support.wire import SERVICE, ConnectWire, GrpcWire, RpcError, Wire, refused_with_headers

P = identity_pb2


async def events(pool: asyncpg.Pool, token_id: str) -> list[tuple[str, str, int, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT method, outcome, principal, credential_id FROM audit_events "
            "WHERE token_id = $1 ORDER BY id",
            UUID(token_id),
        )
    return [(r["method"], r["outcome"], r["principal"], r["credential_id"]) for r in rows]


async def test_every_write_and_secret_read_is_recorded(wire: Wire, pool: asyncpg.Pool) -> None:
    token = await create(wire)
    await get(wire, token.id)  # a plain read is not audited
    await update(wire, token.id, token=secret("gho_"))
    await get_value(wire, token.id)
    await delete(wire, token.id)
    with pytest.raises(RpcError):
        await get_value(wire, token.id)
    rows = await events(pool, token.id)
    assert [(m, o) for m, o, _, _ in rows] == [
        ("CreateHostAuthenticationToken", "ok"),
        ("UpdateHostAuthenticationToken", "ok"),
        ("GetHostAuthenticationTokenValue", "ok"),
        ("DeleteHostAuthenticationToken", "ok"),
        ("GetHostAuthenticationTokenValue", "not_found"),
    ]
    assert {p for _, _, p, _ in rows} == {P.PRINCIPAL_SERVICE_ACCOUNT}
    assert all(c.startswith("api_key:") for _, _, _, c in rows)


async def test_refused_reads_and_writes_are_recorded(
    wire: Wire, pool: asyncpg.Pool, api_keys: ApiKeyStore
) -> None:
    user = uuid4()
    as_user = wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, user))
    own = await create(as_user, create_request(subject=None))
    others = await create(wire)
    for call in (
        get_value(as_user, own.id),
        get_value(as_user, others.id),
        update(as_user, others.id, token="t"),
    ):
        with pytest.raises(RpcError):
            await call
    assert [(m, o) for m, o, _, _ in await events(pool, own.id)] == [
        ("CreateHostAuthenticationToken", "ok"),
        ("GetHostAuthenticationTokenValue", "permission_denied"),
    ]
    refused = [(m, o, p) for m, o, p, _ in await events(pool, others.id)][1:]
    assert refused == [
        ("GetHostAuthenticationTokenValue", "not_found", P.PRINCIPAL_USER),
        ("UpdateHostAuthenticationToken", "not_found", P.PRINCIPAL_USER),
    ]
    # A refused Create has no token id: find it by who asked.
    with pytest.raises(RpcError):
        await create(as_user, create_request())
    async with pool.acquire() as conn:
        outcomes = await conn.fetch(
            "SELECT method, outcome, token_id FROM audit_events WHERE subject_id = $1 ORDER BY id", user
        )
    assert (outcomes[-1]["method"], outcomes[-1]["outcome"], outcomes[-1]["token_id"]) == (
        "CreateHostAuthenticationToken",
        "permission_denied",
        None,
    )


async def test_request_id_is_recorded(wires: dict[str, Wire], pool: asyncpg.Pool) -> None:
    wire = wires["connect-proto"]
    assert isinstance(wire, ConnectWire)
    token = await create(wire)
    response = await wire.post(
        "GetHostAuthenticationTokenValue",
        pb.GetHostAuthenticationTokenValueRequest(id=token.id).SerializeToString(),
        {"content-type": "application/proto", "x-request-id": "trace-42"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-42"
    async with pool.acquire() as conn:
        rid = await conn.fetchval(
            "SELECT request_id FROM audit_events "
            "WHERE token_id = $1 AND method = 'GetHostAuthenticationTokenValue'",
            UUID(token.id),
        )
    assert rid == "trace-42"


@pytest.fixture
async def failing_audit(pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A token whose audit rows cannot be written (a trigger refuses them)."""
    token_id = str(uuid4())
    async with pool.acquire() as conn:
        await conn.execute(
            f"""CREATE FUNCTION fail_audit_{token_id.replace("-", "")}() RETURNS trigger AS $$
                BEGIN
                  IF NEW.token_id = '{token_id}' THEN RAISE EXCEPTION 'audit store unavailable'; END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER fail_audit_{token_id.replace("-", "")} BEFORE INSERT ON audit_events
                FOR EACH ROW EXECUTE FUNCTION fail_audit_{token_id.replace("-", "")}();"""
        )
    yield token_id
    async with pool.acquire() as conn:
        name = f"fail_audit_{token_id.replace('-', '')}"
        await conn.execute(f"DROP TRIGGER {name} ON audit_events; DROP FUNCTION {name}();")


async def test_a_write_whose_audit_fails_is_rolled_back(
    wire: Wire, pool: asyncpg.Pool, failing_audit: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO host_authentication_tokens
               (id, runner_id, subject_principal, host, source, scopes, token_ciphertext, token_kek_id)
               VALUES ($1, $2, 0, 'github.com', 1, '{"before"}', '\\x00', 'test-key-1')""",
            UUID(failing_audit),
            uuid4(),
        )
    with pytest.raises(RpcError) as caught:
        await update(wire, failing_audit, scopes=["after"])
    assert caught.value.code == "internal"
    assert list((await get(wire, failing_audit)).scopes) == ["before"]  # same transaction: undone
    with pytest.raises(RpcError):
        await delete(wire, failing_audit)
    assert (await get(wire, failing_audit)).id == failing_audit  # still there


async def test_get_value_with_failing_audit_returns_no_secret(
    wire: Wire, pool: asyncpg.Pool, sealer: Sealer, failing_audit: str
) -> None:
    """A readable token: everything works except recording the read."""
    value = secret("gho_audited_")
    ciphertext = await sealer.seal(value.encode(), SecretContext(failing_audit, "token"))
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO host_authentication_tokens
               (id, runner_id, subject_principal, host, source, scopes, token_ciphertext, token_kek_id)
               VALUES ($1, $2, 0, 'github.com', 1, '{}', $3, 'test-key-1')""",
            UUID(failing_audit),
            uuid4(),
            ciphertext,
        )
    failures = REGISTRY.get_sample_value("hostauth_audit_write_failures_total") or 0.0
    with pytest.raises(RpcError) as caught:
        await get_value(wire, failing_audit)
    assert (caught.value.code, caught.value.message) == (
        "internal",
        "the read could not be recorded, so no secret is returned",
    )
    assert value not in caught.value.message
    # Counted: the read's audit row failed (the refusal's own row then fails too).
    assert (REGISTRY.get_sample_value("hostauth_audit_write_failures_total") or 0.0) - failures >= 1


async def test_sealed_read_with_failing_audit_returns_no_secret(
    wire: Wire, pool: asyncpg.Pool, sealer: Sealer, api_keys: ApiKeyStore, failing_audit: str
) -> None:
    """The runner's read takes the same road: no record, no sealed box."""
    runner = await new_runner(wire, api_keys)
    subject = uuid4()
    value = secret("gho_sealed_audited_")
    ciphertext = await sealer.seal(value.encode(), SecretContext(failing_audit, "token"))
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO host_authentication_tokens
               (id, runner_id, subject_id, subject_principal, host, source, scopes, token_ciphertext,
                token_kek_id)
               VALUES ($1, $2, $3, 2, 'github.com', 1, '{}', $4, 'test-key-1')""",
            UUID(failing_audit),
            UUID(runner.id),
            subject,
            ciphertext,
        )
    with pytest.raises(RpcError) as caught:
        await sealed_read(runner.wire, runner.id, str(subject), "github.com")
    assert (caught.value.code, caught.value.message) == (
        "internal",
        "the read could not be recorded, so no secret is returned",
    )


async def test_no_audit_row_holds_a_secret_or_credential(pool: asyncpg.Pool, wire: Wire) -> None:
    await get_value(wire, (await create(wire)).id)
    async with pool.acquire() as conn:
        dump = await conn.fetchval("SELECT string_agg(a::text, E'\\n') FROM audit_events a")
    assert dump
    assert leaks(dump) == []
    for marker in ("gho_", "ghr_", "hak_", "eyJ"):
        assert marker not in dump


async def test_audit_cli_lists_newest_first_with_filters(wire: Wire, database_dsn: str) -> None:
    token = await create(wire)
    await get_value(wire, token.id)
    by_token = await run_cli(database_dsn, "audit", "list", "--token-id", token.id)
    assert by_token.returncode == 0, by_token.stderr
    lines = by_token.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "GetHostAuthenticationTokenValue" in lines[0]  # newest first
    assert "CreateHostAuthenticationToken" in lines[1]
    assert " ok " in lines[1]
    newest = await run_cli(database_dsn, "audit", "list", "--token-id", token.id, "--limit", "1", "--json")
    (event,) = [json.loads(line) for line in newest.stdout.splitlines()]
    assert (event["method"], event["token_id"], event["outcome"]) == (
        "GetHostAuthenticationTokenValue",
        token.id,
        "ok",
    )
    assert set(event) == {
        "at",
        "request_id",
        "method",
        "token_id",
        "integration_id",
        "outcome",
        "principal",
        "subject_id",
        "credential_id",
    }
    assert event["integration_id"] is None  # a token method
    before = await run_cli(
        database_dsn, "audit", "list", "--token-id", token.id, "--until", event["at"], "--json"
    )
    assert [json.loads(line)["method"] for line in before.stdout.splitlines()] == [
        "CreateHostAuthenticationToken"
    ]
    future = await run_cli(
        database_dsn, "audit", "list", "--token-id", token.id, "--since", "2999-01-01T00:00:00+00:00"
    )
    assert future.stdout.strip() == ""
    nobody = await run_cli(database_dsn, "audit", "list", "--subject", str(uuid4()))
    assert nobody.stdout.strip() == ""
    bad = await run_cli(database_dsn, "audit", "list", "--limit", "0")
    assert bad.returncode == 2
    assert "--limit" in bad.stderr


@pytest.mark.parametrize("outcome", ["ok", "not_found"])
async def test_grpc_answers_with_the_request_id_in_its_trailers(
    wires: dict[str, Wire], admin_key: str, outcome: str
) -> None:
    wire = wires["grpc"]
    assert isinstance(wire, GrpcWire)
    token_id = (await create(wire)).id if outcome == "ok" else str(uuid4())
    call = wire.stub.GetHostAuthenticationTokenValue(
        pb.GetHostAuthenticationTokenValueRequest(id=token_id),
        metadata=(("authorization", f"Bearer {admin_key}"), ("x-request-id", f"trace-{outcome}")),
    )
    if outcome == "ok":
        assert (await call).id == token_id
    else:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert ("x-request-id", f"trace-{outcome}") in tuple(await call.trailing_metadata() or ())


@pytest.mark.parametrize("bad_credential", [False, True])
@pytest.mark.parametrize("sent", ["trace-refused", None])
async def test_an_unauthenticated_answer_carries_the_request_id(
    wire: Wire, bad_credential: bool, sent: str | None
) -> None:
    """The id is settled before the credential is looked at, so an answer the
    authenticator refused (whose log line names the id) carries it as well."""
    headers = [("x-request-id", sent)] if sent else []
    if bad_credential:
        headers.append(("authorization", "Bearer hak_not_a_key_at_all_0000000000000000000000"))
    error, ids = await refused_with_headers(
        wire, "GetHostAuthenticationToken", pb.GetHostAuthenticationTokenRequest(id=str(uuid4())), headers
    )
    assert error.code == "unauthenticated"
    assert len(ids) == 1
    assert ids[0] == sent if sent else len(ids[0]) == 32


async def test_an_undecodable_grpc_request_carries_the_request_id(wires: dict[str, Wire]) -> None:
    wire = wires["grpc"]
    assert isinstance(wire, GrpcWire)
    call = wire.channel.unary_unary(f"/{SERVICE}/GetHostAuthenticationToken")(
        b"\xff\xff", metadata=(("x-request-id", "trace-undecodable"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("x-request-id", "trace-undecodable") in tuple(await call.trailing_metadata() or ())
