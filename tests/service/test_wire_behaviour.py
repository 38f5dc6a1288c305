"""Wire details that must hold on every transport: compression, GET, size
limit, unknown fields, and the old JSON client's headers."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator
from urllib.parse import quote
from uuid import uuid4

import grpc
import pytest

from bench.http_servers import SERVERS
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.core.service import HostAuthService
from hostauth.runtime.serve import Extras, Running
from hostauth.store import ApiKeyStore
from tests.support.lifecycle import create
from tests.support.requests import create_request
from tests.support.serving import serving
from tests.support.wire import SERVICE, ConnectWire, RpcError, Wire, connect_error

CREATE = "CreateHostAuthenticationToken"
# Field 999, varint 1: a field this server does not know (a newer client's).
UNKNOWN_FIELD = bytes([0xB8, 0x3E, 0x01])


def connect_wire(wires: dict[str, Wire], name: str) -> ConnectWire:
    wire = wires[name]
    assert isinstance(wire, ConnectWire)
    return wire


@pytest.mark.parametrize("encoding", ["json", "proto"])
async def test_gzip_request_and_response(wires: dict[str, Wire], encoding: str) -> None:
    wire = connect_wire(wires, f"connect-{encoding}")
    req = create_request(scopes=[f"scope-{i}" for i in range(100)])  # big enough to be worth compressing
    body = (
        req.SerializeToString()
        if encoding == "proto"
        else json.dumps(
            {"runnerId": req.runner_id, "host": req.host, "token": req.token, "scopes": list(req.scopes)}
        ).encode()
    )
    response = await wire.http.post(
        f"/{SERVICE}/{CREATE}",
        content=gzip.compress(body),
        headers=wire.auth_headers(
            {
                "content-type": f"application/{encoding}",
                "content-encoding": "gzip",
                "accept-encoding": "gzip",
                "connect-protocol-version": "1",
            }
        ),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-encoding"] == "gzip"
    answer = pb.CreateHostAuthenticationTokenResponse()
    if encoding == "proto":
        answer.ParseFromString(response.content)  # httpx has undone the gzip
    else:
        from google.protobuf import json_format

        json_format.Parse(response.content, answer)
    assert answer.token.runner_id == req.runner_id
    assert list(answer.token.scopes) == list(req.scopes)


async def test_proto_request_without_protocol_version_header(wires: dict[str, Wire]) -> None:
    wire = connect_wire(wires, "connect-proto")
    req = create_request()
    response = await wire.post(CREATE, req.SerializeToString(), {"content-type": "application/proto"})
    assert response.status_code == 200
    assert (
        pb.CreateHostAuthenticationTokenResponse.FromString(response.content).token.runner_id == req.runner_id
    )


async def test_connect_get_with_json_encoding(wires: dict[str, Wire]) -> None:
    wire = connect_wire(wires, "connect-json")
    created = await create(wire)
    message = quote(json.dumps({"id": created.id}))
    response = await wire.http.get(
        f"/{SERVICE}/GetHostAuthenticationToken?connect=v1&encoding=json&message={message}",
        headers=wire.auth_headers({}),
    )
    assert response.status_code == 200, response.text
    assert response.json()["token"]["id"] == created.id


@pytest.mark.parametrize("method", ["GetHostAuthenticationTokenValue", "CreateHostAuthenticationToken"])
async def test_connect_get_is_refused_for_methods_with_side_effects(
    wires: dict[str, Wire], method: str
) -> None:
    wire = connect_wire(wires, "connect-proto")
    created = await create(wire)
    message = base64.urlsafe_b64encode(
        pb.GetHostAuthenticationTokenValueRequest(id=created.id).SerializeToString()
    )
    response = await wire.http.get(
        f"/{SERVICE}/{method}?connect=v1&encoding=proto&base64=1&message={message.decode().rstrip('=')}",
        headers=wire.auth_headers({}),
    )
    assert response.status_code == 405
    assert b"gho_" not in response.content


async def test_two_mib_body_is_resource_exhausted(wire: Wire) -> None:
    req = create_request(token="x" * (2 << 20))
    with pytest.raises(RpcError) as caught:
        await wire.call(CREATE, req, pb.CreateHostAuthenticationTokenResponse)
    assert caught.value.code == "resource_exhausted"
    assert "xxxx" not in caught.value.message


async def _in_chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_connect_body_of_no_announced_length_is_read_in_chunks(wires: dict[str, Wire]) -> None:
    """A chunked body (no content-length) reaches connectrpc part by part
    (server/hostauth/transport/rsgi_bridge.py): a small one is answered, and an
    oversized one refused, the refusal read by a client that sends its whole
    body first (the server drains it: without that, 3 runs in 4 met a reset)."""
    wire = connect_wire(wires, "connect-proto")
    headers = wire.auth_headers({"content-type": "application/proto"})
    small = create_request()
    response = await wire.http.post(
        f"/{SERVICE}/{CREATE}", content=_in_chunks(small.SerializeToString(), 7), headers=headers
    )
    assert response.status_code == 200, response.text
    created = pb.CreateHostAuthenticationTokenResponse.FromString(response.content).token
    assert (created.runner_id, created.host) == (small.runner_id, small.host)
    big = create_request(token="z" * (8 << 20)).SerializeToString()
    response = await wire.http.post(
        f"/{SERVICE}/{CREATE}", content=_in_chunks(big, 64 << 10), headers=headers
    )
    assert connect_error(response).code == "resource_exhausted"


async def test_odd_bytes_in_a_path_or_a_header_are_answered_not_an_internal_error(
    wires: dict[str, Wire],
) -> None:
    """Percent-escapes that are not Latin-1 in a path, and a header value that
    is not UTF-8: a 404, and the call answered as if the header were absent
    (not_found for an id that is not there), never a 500 (the RSGI bridge once
    answered those paths with a bare 500)."""
    wire = connect_wire(wires, "connect-json")
    for path in (f"/{SERVICE}/%E2%82%AC", "/%FF%FE"):
        response = await wire.http.post(path, content=b"{}", headers={"content-type": "application/json"})
        assert response.status_code == 404, path
    for name in ("x-request-id", "user-agent"):  # what the server reads, and what it ignores
        response = await wire.http.post(
            f"/{SERVICE}/GetHostAuthenticationToken",
            content=json.dumps({"id": str(uuid4())}).encode(),
            headers={**wire.auth_headers({"content-type": "application/json"}), name: b"caf\xe9"},
        )
        assert connect_error(response).code == "not_found", (name, response.text)
        assert response.headers["x-request-id"] != "caf\ufffd"  # an id of its own, not the odd one


@pytest.mark.parametrize("encoding", ["json", "proto"])
async def test_gzip_bomb_is_resource_exhausted(wires: dict[str, Wire], encoding: str) -> None:
    wire = connect_wire(wires, f"connect-{encoding}")
    body = create_request(token="y" * (4 << 20)).SerializeToString()
    if encoding == "json":
        body = json.dumps({"host": "h", "token": "y" * (4 << 20)}).encode()
    compressed = gzip.compress(body)
    assert len(compressed) < (1 << 20)  # small on the wire, large unpacked
    response = await wire.post(
        CREATE, compressed, {"content-type": f"application/{encoding}", "content-encoding": "gzip"}
    )
    assert connect_error(response).code == "resource_exhausted"


async def test_unknown_json_field_is_invalid_argument(wires: dict[str, Wire]) -> None:
    wire = connect_wire(wires, "connect-json")
    body = json.dumps(
        {"runnerId": "d2c94c27-3b76-4a42-b88c-95a85e392c68", "host": "h", "token": "t", "colour": 1}
    )
    response = await wire.post(CREATE, body.encode(), {"content-type": "application/json"})
    error = connect_error(response)
    assert error.code == "invalid_argument"
    assert "colour" in error.message


async def test_malformed_json_is_invalid_argument(wires: dict[str, Wire]) -> None:
    wire = connect_wire(wires, "connect-json")
    response = await wire.post(CREATE, b'{"runnerId": ', {"content-type": "application/json"})
    print("ODD", response.status_code, response.text)
    assert connect_error(response).code == "invalid_argument"


async def test_unknown_proto_field_is_ignored_over_connect(wires: dict[str, Wire]) -> None:
    wire = connect_wire(wires, "connect-proto")
    req = create_request()
    response = await wire.post(
        CREATE, req.SerializeToString() + UNKNOWN_FIELD, {"content-type": "application/proto"}
    )
    assert response.status_code == 200, response.text
    assert (
        pb.CreateHostAuthenticationTokenResponse.FromString(response.content).token.runner_id == req.runner_id
    )


async def test_unknown_proto_field_is_ignored_over_grpc(running: Running, admin_key: str) -> None:
    req = create_request()
    async with grpc.aio.insecure_channel(str(running.grpc)) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{CREATE}")  # raw bytes both ways
        raw = await call(
            req.SerializeToString() + UNKNOWN_FIELD, metadata=(("authorization", f"Bearer {admin_key}"),)
        )
    assert pb.CreateHostAuthenticationTokenResponse.FromString(raw).token.runner_id == req.runner_id


async def test_garbage_proto_is_invalid_argument_over_connect(wires: dict[str, Wire]) -> None:
    wire = connect_wire(wires, "connect-proto")
    response = await wire.post(CREATE, b"\xff\xff\xff", {"content-type": "application/proto"})
    print("ODD", response.status_code, response.text)
    assert connect_error(response).code == "invalid_argument"


async def test_garbage_proto_is_invalid_argument_over_grpc(running: Running) -> None:
    async with grpc.aio.insecure_channel(str(running.grpc)) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{CREATE}")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Traceback" not in (caught.value.details() or "")


@pytest.mark.parametrize("server", sorted(SERVERS))
async def test_every_http_server_answers_once_serve_has_started(
    core: HostAuthService, api_keys: ApiKeyStore, admin_key: str, database_dsn: str, server: str
) -> None:
    """granian and the servers the bench compares it with, called the moment
    serve() yields (granian
    binds its port a moment after it starts, and such a call was refused): a
    Create and its Get over Connect JSON and proto, and a header value that is
    not UTF-8 tolerated (the ASGI servers hand it over raw, and connectrpc
    answered it with a 500)."""
    extras = Extras(http_server=SERVERS[server])
    async with serving(core, api_keys, database_dsn, extras=extras) as running:
        for encoding in ("json", "proto"):
            wire = ConnectWire(running.http_url, encoding, credential=admin_key)
            try:
                request = create_request()
                made = await wire.call(CREATE, request, pb.CreateHostAuthenticationTokenResponse)
                got = await wire.call(
                    "GetHostAuthenticationToken",
                    pb.GetHostAuthenticationTokenRequest(id=made.token.id),
                    pb.GetHostAuthenticationTokenResponse,
                )
                assert got.token.host == request.host
                odd = {**wire.auth_headers({"content-type": "application/json"}), "x-request-id": b"\xff"}
                response = await wire.http.post(
                    f"/{SERVICE}/GetHostAuthenticationToken",
                    content=json.dumps({"id": str(uuid4())}).encode(),
                    headers=odd,
                )
                assert connect_error(response).code == "not_found", response.text
            finally:
                await wire.close()
