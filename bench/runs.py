"""One timed run of one method over one transport, with the load tool that
fits it, and the checks that a success really was one."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import asyncpg

from bench.fixture import Fixture, Service
from bench.gen.hostauth.bench.v1 import echo_pb2
from bench.load_tools import WARM_UP_S, Result, create_load, h2load, wrk
from gitpod.v1 import runner_configuration_pb2 as pb

SERVICE = "gitpod.v1.RunnerConfigurationService"
METHODS = ("Create", "GetValue", "Get", "List", "Echo")
TRANSPORTS = ("grpc", "connect-proto", "connect-json")


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def request_for(method: str, fixture: Fixture) -> tuple[str, object]:
    if method == "Echo":
        return "hostauth.bench.v1.EchoService/Echo", echo_pb2.EchoRequest(payload="x" * 32)
    if method == "GetValue":
        return f"{SERVICE}/GetHostAuthenticationTokenValue", pb.GetHostAuthenticationTokenValueRequest(
            id=fixture.token_id
        )
    if method == "Get":
        return f"{SERVICE}/GetHostAuthenticationToken", pb.GetHostAuthenticationTokenRequest(
            id=fixture.token_id
        )
    return f"{SERVICE}/ListHostAuthenticationTokens", pb.ListHostAuthenticationTokensRequest(
        pagination={"page_size": 25},
        filter=pb.ListHostAuthenticationTokensRequest.Filter(runner_id=fixture.runner_id),
    )


def create_lua(key: str, encoding: str, runner: str) -> str:
    """wrk script: every Create names a new host, so every one inserts."""
    subject = str(uuid.uuid4())
    if encoding == "json":
        body = (
            '\'{"runnerId": "'
            + runner
            + '", "subject": {"id": "'
            + subject
            + '", "principal": "PRINCIPAL_USER"}, '
            '"host": "git-\' .. host_n .. \'.example.com", '
            '"token": "gho_bench", "refreshToken": "ghr_bench"}\''
        )
    else:  # proto: length-delimited fields, all shorter than 128 bytes
        body = (
            "f(1, '" + runner + "') .. f(3, 'git-' .. host_n .. '.example.com') .. f(4, 'gho_bench') .. "
            "f(7, 'ghr_bench') .. f(10, f(1, '" + subject + "') .. string.char(0x10, 2))"
        )
    return f"""
local n = 0
local started = 0
-- thread:set makes `tid` a global of each thread's own Lua state; a local of
-- the same name here would shadow it, and both threads would send one host.
function setup(thread) started = started + 1; thread:set("tid", started) end
local function f(field, value) return string.char(field * 8 + 2, #value) .. value end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/{encoding}"
wrk.headers["Connect-Protocol-Version"] = "1"
wrk.headers["Authorization"] = "Bearer {key}"
request = function()
  n = n + 1
  local host_n = tid .. "-" .. n
  return wrk.format(nil, "/{SERVICE}/CreateHostAuthenticationToken", nil, {body})
end
"""


def run_once(
    svc: Service,
    fixture: Fixture,
    method: str,
    transport: str,
    clients: int,
    seconds: float,
    rps: float = 0,
    *,
    warm_up: bool = True,
    in_phase: bool = False,
) -> Result:
    """One timed run; with warm_up, 0.3 s of the same load first, not counted.
    With rps, an open loop whose requests are spread over time, or, on
    h2load's rows with in_phase, sent as h2load sends them (bench.load_tools)."""
    if method == "Create":
        return create_run(svc, fixture, transport, clients, seconds, rps, warm_up=warm_up)
    path, message = request_for(method, fixture)
    auth = {"authorization": f"Bearer {fixture.key}"}
    if transport == "grpc":
        body = grpc_frame(message.SerializeToString())  # type: ignore[attr-defined]
        headers = {"content-type": "application/grpc", "te": "trailers", **auth}
        url = f"{svc.scheme}://127.0.0.1:{svc.grpc}/{path}"
        # Warm up in a run of its own: the DATA bytes of the measured run must
        # be its own for the success count below.
        if warm_up:
            h2load(
                url, body, headers, clients=clients, seconds=WARM_UP_S, http1=False, rps=rps, warm_up=False
            )
        result = h2load(
            url,
            body,
            headers,
            clients=clients,
            seconds=seconds,
            http1=False,
            rps=rps,
            warm_up=False,
            in_phase=in_phase,
        )
        return with_grpc_failures(result, grpc_response_bytes(svc, fixture, path, message))
    encoding = transport.split("-")[1]
    from google.protobuf import json_format

    body = message.SerializeToString() if encoding == "proto" else json_format.MessageToJson(message).encode()  # type: ignore[attr-defined,arg-type]
    headers = {"content-type": f"application/{encoding}", "connect-protocol-version": "1", **auth}
    return h2load(
        f"{svc.scheme}://127.0.0.1:{svc.http}/{path}",
        body,
        headers,
        clients=clients,
        seconds=seconds,
        http1=True,
        rps=rps,
        warm_up=warm_up,
        in_phase=in_phase,
    )


def create_run(
    svc: Service, fixture: Fixture, transport: str, clients: int, seconds: float, rps: float, *, warm_up: bool
) -> Result:
    """Creates under a runner of their own, each a new host; the rows found
    under that runner afterwards must cover every success."""
    runner = str(uuid.uuid4())
    if transport == "grpc" or rps:
        target = f"127.0.0.1:{svc.grpc}" if transport == "grpc" else f"127.0.0.1:{svc.http}"
        if svc.scheme == "https":
            if transport != "grpc" or rps:
                raise ValueError("over TLS, Create runs closed-loop: wrk for Connect, create_load for gRPC")
            target = f"tls:{target}"
        result = create_load(
            target, transport, fixture.key, runner, clients=clients, seconds=seconds, rps=rps, warm_up=warm_up
        )
    else:
        if warm_up:  # wrk has no warm-up of its own
            wrk(
                f"{svc.scheme}://127.0.0.1:{svc.http}",
                create_lua(fixture.key, transport.split("-")[1], str(uuid.uuid4())),
                clients=clients,
                seconds=WARM_UP_S,
            )
        result = wrk(
            f"{svc.scheme}://127.0.0.1:{svc.http}",
            create_lua(fixture.key, transport.split("-")[1], runner),
            clients=clients,
            seconds=seconds,
        )
    inserted = asyncio.run(count_rows(fixture.dsn, runner))
    # Every success wrote a row, the warm-up's too (calls still in flight when
    # the window closed may add rows: lenient by at most one per client).
    succeeded = result.requests - result.errors + result.warm_up_successes
    if inserted < succeeded:  # a success that wrote nothing
        result = dataclasses.replace(result, errors=result.errors + succeeded - inserted)
    return result


async def count_rows(dsn: str, runner: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM host_authentication_tokens WHERE runner_id = $1", uuid.UUID(runner)
        )
        return count
    finally:
        await conn.close()


_response_bytes: dict[str, int] = {}


def grpc_response_bytes(svc: Service, fixture: Fixture, path: str, message: object) -> int:
    """The DATA bytes one successful response of this call carries (its
    length-prefixed message): h2load counts any HTTP 200 as a success, and a
    gRPC error is an HTTP 200 with no message, so the DATA bytes received
    tell how many calls really succeeded."""
    if path not in _response_bytes:
        import grpc

        async def probe() -> bytes:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc}") as channel:
                # bytes in, bytes out
                call = channel.unary_unary(f"/{path}", request_serializer=None, response_deserializer=None)
                reply: bytes = await call(
                    message.SerializeToString(),  # type: ignore[attr-defined]
                    metadata=(("authorization", f"Bearer {fixture.key}"),),
                )
                return reply

        _response_bytes[path] = 5 + len(asyncio.run(probe()))
    return _response_bytes[path]


def with_grpc_failures(result: Result, response_bytes: int) -> Result:
    # Calls still in flight when the window closed may have their message in
    # and not be counted: at most one per client errs on the lenient side.
    succeeded = result.data_bytes // response_bytes
    if succeeded >= result.requests:
        return result
    return dataclasses.replace(result, errors=result.errors + result.requests - succeeded)
