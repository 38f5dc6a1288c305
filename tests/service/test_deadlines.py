"""A call stuck on the database: a deadline cuts it short on every wire, and a
client that leaves does not stop a write already on its way."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg
import pytest
from google.protobuf.message import Message

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.runtime.serve import Running
from tests.support.lifecycle import create, get
from tests.support.requests import create_request, secret
from tests.support.wire import SERVICE, GrpcWire, RpcError, Wire

DEADLINE_S = 0.3


async def lock_tokens(dsn: str) -> asyncpg.Connection:
    """A connection whose open transaction locks the tokens table: every
    statement on it waits until the connection closes."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN; LOCK TABLE host_authentication_tokens IN ACCESS EXCLUSIVE MODE")
    return conn


def _requests(token_id: str) -> dict[str, tuple[Message, type[Message]]]:
    return {
        "CreateHostAuthenticationToken": (create_request(), pb.CreateHostAuthenticationTokenResponse),
        "GetHostAuthenticationToken": (
            pb.GetHostAuthenticationTokenRequest(id=token_id),
            pb.GetHostAuthenticationTokenResponse,
        ),
        "GetHostAuthenticationTokenValue": (
            pb.GetHostAuthenticationTokenValueRequest(id=token_id),
            pb.GetHostAuthenticationTokenValueResponse,
        ),
        "ListHostAuthenticationTokens": (
            pb.ListHostAuthenticationTokensRequest(),
            pb.ListHostAuthenticationTokensResponse,
        ),
        "UpdateHostAuthenticationToken": (
            pb.UpdateHostAuthenticationTokenRequest(id=token_id, token=secret("gho_")),
            pb.UpdateHostAuthenticationTokenResponse,
        ),
        "DeleteHostAuthenticationToken": (
            pb.DeleteHostAuthenticationTokenRequest(id=token_id),
            pb.DeleteHostAuthenticationTokenResponse,
        ),
    }


METHODS = list(_requests(str(UUID(int=0))))


@pytest.mark.parametrize("method", METHODS)
async def test_a_deadline_ends_a_call_stuck_on_the_database(
    wire: Wire, database_dsn: str, method: str
) -> None:
    await _stuck_until_the_deadline(wire, database_dsn, method)


@pytest.mark.parametrize("method", ["GetHostAuthenticationToken", "ListHostAuthenticationTokens"])
async def test_a_deadline_ends_a_connect_get_stuck_on_the_database(
    wires: dict[str, Wire], database_dsn: str, method: str
) -> None:
    await _stuck_until_the_deadline(wires["connect-get"], database_dsn, method)


async def _stuck_until_the_deadline(wire: Wire, database_dsn: str, method: str) -> None:
    created = create_request()
    token = await create(wire, created)
    request, response_type = _requests(token.id)[method]
    locker = await lock_tokens(database_dsn)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RpcError) as raised:
            # The client's own limit is far longer: on Connect, only the
            # server's deadline can end this call in time.
            await asyncio.wait_for(wire.call(method, request, response_type, timeout_s=DEADLINE_S), 10)
        waited = asyncio.get_running_loop().time() - started
        # The server learns of the deadline a moment after the client does
        # (grpc.aio delivers the cancel on its own thread); the lock is held
        # that long more, so that a write the server fails to call off would
        # commit once it is released, rather than the release racing the cancel.
        await asyncio.sleep(0.5)
    finally:
        await locker.close()  # ends the locking transaction
    assert raised.value.code == "deadline_exceeded", raised.value
    assert DEADLINE_S <= waited < 5
    # A write past its deadline is called off on every wire: once unlocked,
    # the token is as it was.
    await asyncio.sleep(0.3)
    value = await wire.call(
        "GetHostAuthenticationTokenValue",
        pb.GetHostAuthenticationTokenValueRequest(id=token.id),
        pb.GetHostAuthenticationTokenValueResponse,
    )
    assert value.token == created.token


async def _post_and_leave(running: Running, method: str, body: bytes, credential: str) -> None:
    """A Connect proto POST over HTTP/1.1, closed before any answer comes."""
    host, port = running.http.host, running.http.port
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST /{SERVICE}/{method} HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/proto\r\nconnect-protocol-version: 1\r\n"
        f"authorization: Bearer {credential}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    with pytest.raises(TimeoutError):  # no answer: the call waits on the locked table
        await asyncio.wait_for(reader.read(1), 0.3)
    writer.transport.abort()  # a reset, not a polite close
    await asyncio.sleep(0.1)


async def test_a_create_whose_client_left_is_still_written_and_audited(
    wires: dict[str, Wire], running: Running, admin_key: str, database_dsn: str
) -> None:
    req = create_request()
    locker = await lock_tokens(database_dsn)
    try:
        await _post_and_leave(running, "CreateHostAuthenticationToken", req.SerializeToString(), admin_key)
    finally:
        await locker.close()  # the write goes on, with nobody to answer
    conn = await asyncpg.connect(database_dsn)
    try:
        for _ in range(100):
            token_id: UUID | None = await conn.fetchval(
                "SELECT id FROM host_authentication_tokens WHERE runner_id = $1", UUID(req.runner_id)
            )
            if token_id is not None:
                break
            await asyncio.sleep(0.05)
        assert token_id is not None
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE token_id = $1 AND method = $2 AND outcome = 'ok'",
            token_id,
            "CreateHostAuthenticationToken",
        )
    finally:
        await conn.close()
    assert audited == 1
    # Every wire still answers, the one that lost its client included.
    for wire in wires.values():
        assert (await get(wire, str(token_id))).runner_id == req.runner_id


async def _grpc_call_and_leave(wire: Wire, method: str, request: Message, credential: str) -> None:
    """A gRPC call cancelled by its client before any answer comes."""
    assert isinstance(wire, GrpcWire)
    call = getattr(wire.stub, method)(request, metadata=(("authorization", f"Bearer {credential}"),))
    await asyncio.sleep(0.3)
    assert not call.done()  # no answer: the call waits on the locked table
    call.cancel()  # the client leaves: grpc.aio cancels the call on the server
    await asyncio.sleep(0.1)


@pytest.mark.parametrize("wire_name", ["grpc", "connect-proto"])
async def test_an_update_whose_client_left_is_still_applied(
    wires: dict[str, Wire], running: Running, admin_key: str, database_dsn: str, wire_name: str
) -> None:
    wire = wires[wire_name]
    token = await create(wire)
    new_value = secret("gho_")
    req = pb.UpdateHostAuthenticationTokenRequest(id=token.id, token=new_value)
    locker = await lock_tokens(database_dsn)
    try:
        if wire_name == "grpc":
            await _grpc_call_and_leave(wire, "UpdateHostAuthenticationToken", req, admin_key)
        else:
            body = req.SerializeToString()
            await _post_and_leave(running, "UpdateHostAuthenticationToken", body, admin_key)
    finally:
        await locker.close()  # the update goes on, with nobody to answer
    read = pb.GetHostAuthenticationTokenValueRequest(id=token.id)
    for _ in range(100):
        value = await wire.call(
            "GetHostAuthenticationTokenValue", read, pb.GetHostAuthenticationTokenValueResponse
        )
        if value.token == new_value:
            break
        await asyncio.sleep(0.05)
    assert value.token == new_value


@pytest.mark.parametrize("method", ["UpdateHostAuthenticationToken", "DeleteHostAuthenticationToken"])
async def test_a_grpc_write_cancelled_by_its_clients_deadline_is_called_off(
    wires: dict[str, Wire], admin_key: str, database_dsn: str, method: str
) -> None:
    """A client's deadline fires before the server's copy of it (counted from
    arrival) and resets the stream: the server saw a client that left, and
    finished the write later, after the client had been told it failed.
    Cancelling just before the deadline makes that order certain."""
    wire = wires["grpc"]
    assert isinstance(wire, GrpcWire)
    created = create_request()
    token = await create(wire, created)
    request, _ = _requests(token.id)[method]
    locker = await lock_tokens(database_dsn)
    try:
        call = getattr(wire.stub, method)(
            request, metadata=(("authorization", f"Bearer {admin_key}"),), timeout=0.6
        )
        await asyncio.sleep(0.5)
        assert not call.done()  # waiting on the locked table
        call.cancel()
        await asyncio.sleep(0.2)  # past the deadline on the server too
    finally:
        await locker.close()
    await asyncio.sleep(0.3)
    value = await wire.call(
        "GetHostAuthenticationTokenValue",
        pb.GetHostAuthenticationTokenValueRequest(id=token.id),
        pb.GetHostAuthenticationTokenValueResponse,
    )
    assert value.token == created.token  # neither changed nor deleted
