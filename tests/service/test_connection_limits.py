"""What a client that connects and then sends slowly, or nothing, can hold:
idle and trickling connections are closed on both ports, a late body is
answered, thousands of idle connections leave calls served, and plaintext
HTTP/2 on the HTTP port is asked for, not assumed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.core.service import HostAuthService
from hostauth.runtime.serve import Running
from hostauth.store import ApiKeyStore
from tests.support.requests import create_request
from tests.support.serving import serving
from tests.support.wire import SERVICE, ConnectWire, GrpcWire, Wire

CREATE = "CreateHostAuthenticationToken"
TIMEOUT_S = 1.0  # the header and body timeouts of the servers here


@contextlib.asynccontextmanager
async def _served(
    core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str, **settings: object
) -> AsyncIterator[Running]:
    async with serving(
        core, api_keys, database_dsn, header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S, **settings
    ) as running:
        yield running


@contextlib.contextmanager
def _connections(port: int, count: int, first_bytes: bytes = b"") -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            if first_bytes:
                sock.sendall(first_bytes)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed it (what it sent before is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


async def _all_closed(sockets: list[socket.socket], within_s: float) -> int:
    """How many are still open after waiting up to within_s for all to close."""
    deadline = time.monotonic() + within_s
    while True:
        left = sum(not _closed_by_server(s) for s in sockets)
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


def _ports(running: Running) -> dict[str, int]:
    return {"http": running.http.port, "grpc": running.grpc.port}


@pytest.mark.parametrize("port", ["http", "grpc"])
@pytest.mark.parametrize("kind", ["idle", "half a request"])
async def test_connections_that_send_nothing_or_trickle_are_closed(
    core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str, port: str, kind: str
) -> None:
    """They were held for as long as the client kept them (60-90 s seen)."""
    first_bytes = {
        ("idle", "http"): b"",
        ("idle", "grpc"): b"",
        ("half a request", "http"): b"POST /x HTTP/1.1\r\nHost: x\r\n",
        ("half a request", "grpc"): b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the preface, no settings
    }[kind, port]
    async with _served(core, api_keys, database_dsn) as running:
        with _connections(_ports(running)[port], 20, first_bytes) as held:
            assert await _all_closed(held, within_s=TIMEOUT_S + 4) == 0


def _answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer with a Content-Length, or what came before a close."""
    sock.settimeout(TIMEOUT_S + 5)
    answer = b""
    with contextlib.suppress(TimeoutError):
        while chunk := sock.recv(65536):
            answer += chunk
            head, found, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if found and length and len(body) >= int(length[1]):
                break
    return answer


@pytest.mark.parametrize("announced", [True, False])
async def test_a_body_that_does_not_arrive_in_time_is_answered(
    core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str, admin_key: str, announced: bool
) -> None:
    """A body trickled or stalled held the call, and the worker's memory, for
    as long as the client liked."""
    length = b"Content-Length: 100\r\n" if announced else b"Transfer-Encoding: chunked\r\n"
    part = b"{" if announced else b"1\r\n{\r\n"
    async with _served(core, api_keys, database_dsn) as running:
        with _connections(running.http.port, 1) as (sock,):
            sock.sendall(
                f"POST /{SERVICE}/{CREATE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {admin_key}\r\n".encode()
                + length
                + b"\r\n"
                + part
            )
            started = time.monotonic()
            answer = await asyncio.to_thread(_answer, sock)  # the server runs on this loop
            took = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504"), answer[:200]
    assert json.loads(body) == {
        "code": "deadline_exceeded",
        "message": f"the request body did not arrive within {TIMEOUT_S:g} s",
    }
    assert took < TIMEOUT_S + 2


async def _creates(wires: list[Wire]) -> None:
    for wire in wires:
        request = create_request()
        answer = await wire.call(CREATE, request, pb.CreateHostAuthenticationTokenResponse, timeout_s=5)
        assert answer.token.host == request.host, wire.name


async def test_thousands_of_idle_connections_leave_calls_served(
    core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str, admin_key: str
) -> None:
    """300 idle connections made every new Connect call wait until its client
    gave up: the server took 128 at a time and queued the rest."""
    async with serving(core, api_keys, database_dsn) as running:
        wires: list[Wire] = [
            GrpcWire(str(running.grpc), admin_key),
            ConnectWire(running.http_url, "json", credential=admin_key),
            ConnectWire(running.http_url, "proto", credential=admin_key),
        ]
        try:
            with _connections(running.http.port, 2000), _connections(running.grpc.port, 2000):
                await asyncio.sleep(0.5)  # accepted, or queued behind the ones accepted
                await _creates(wires)
        finally:
            for wire in wires:
                await wire.close()  # type: ignore[attr-defined]


async def _h2c_create(running: Running, admin_key: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.http_url, http1=False, http2=True) as client:
        return await client.post(
            f"/{SERVICE}/{CREATE}",
            content=create_request().SerializeToString(),
            headers={"content-type": "application/proto", "authorization": f"Bearer {admin_key}"},
        )


async def test_connect_over_h2c_when_asked_for(
    core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str, admin_key: str
) -> None:
    """HOSTAUTH_HTTP_H2C: Connect over HTTP/2 without TLS (prior knowledge),
    the same answer as over HTTP/1.1."""
    async with _served(core, api_keys, database_dsn, http_h2c=True) as running:
        response = await _h2c_create(running, admin_key)
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200, response.text
    assert pb.CreateHostAuthenticationTokenResponse.FromString(response.content).token.host


async def test_plaintext_http2_is_refused_by_default(running: Running, admin_key: str) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.WriteError)):  # refused, or cut off mid-send
        await _h2c_create(running, admin_key)


async def test_oversized_headers_are_refused_on_http1(running: Running, admin_key: str) -> None:
    """Refused before the app sees them: answered 431, or (when the server
    stops reading while the client still sends) the connection is cut."""
    async with httpx.AsyncClient(base_url=running.http_url) as client:
        try:
            response = await client.post(
                f"/{SERVICE}/{CREATE}",
                content=b"{}",
                headers={"content-type": "application/json", "x-filler": "x" * (200 << 10)},
            )
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            return
    assert response.status_code == 431
