"""Traces as a collector receives them: a call with a W3C traceparent, over
gRPC and over Connect, gives a server span in that trace under the caller's
span, with the request id, and child spans for its database statements
(SQL text, no parameter values) and its audit write, exported over
OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import json_format

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_configuration_pb2_grpc as pb_grpc
from hostauth.core.policy import READ_SECRETS
from hostauth.telemetry.calls import SERVICE
from tests.support.db import create_database
from tests.support.otlp import Receiver, attributes, descendants
from tests.support.processes import ServerProcess, start_server, wait_serving
from tests.support.requests import create_request
from tests.support.sensitive import leaks
from tests.support.serving import TEST_KEYRING_JSON, service_account_key

GET_VALUE = "GetHostAuthenticationTokenValue"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def _traceparent() -> tuple[bytes, bytes, str]:
    trace_id, span_id = secrets.token_bytes(16), secrets.token_bytes(8)
    return trace_id, span_id, f"00-{trace_id.hex()}-{span_id.hex()}-01"


async def _get_value(server: ServerProcess, wire: str, key: str, token_id: str, traceparent: str) -> str:
    """GetValue with that traceparent; the answer's request id."""
    headers = {"authorization": f"Bearer {key}", "traceparent": traceparent}
    request = pb.GetHostAuthenticationTokenValueRequest(id=token_id)
    if wire == "grpc":
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            call = pb_grpc.RunnerConfigurationServiceStub(channel).GetHostAuthenticationTokenValue(
                request, metadata=tuple(headers.items())
            )
            await call
            return next(str(v) for k, v in await call.trailing_metadata() or () if k == "x-request-id")
    encoding = wire.removeprefix("connect-")
    body = json_format.MessageToJson(request).encode() if encoding == "json" else request.SerializeToString()
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://127.0.0.1:{server.http_port}/{SERVICE}/{GET_VALUE}",
            content=body,
            headers={**headers, "content-type": f"application/{encoding}"},
        )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-request-id"]


@pytest.mark.parametrize("wire", ["grpc", "connect-json", "connect-proto"])
async def test_a_traced_call_exports_its_server_span_and_database_children(
    admin_dsn: str, log_dir: Path, receiver: Receiver, wire: str
) -> None:
    dsn = await create_database(admin_dsn)
    env = {
        "DATABASE_URL": dsn,
        "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
        "HOSTAUTH_WORKERS": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "hostauth-under-test",
    }
    server = start_server(log_dir, env)
    try:
        await wait_serving(server)
        key = await service_account_key(dsn, READ_SECRETS)
        create = create_request()
        async with httpx.AsyncClient() as http:
            created = await http.post(
                f"http://127.0.0.1:{server.http_port}/{SERVICE}/CreateHostAuthenticationToken",
                content=json_format.MessageToJson(create).encode(),
                headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            )
        token_id = created.json()["token"]["id"]
        trace_id, parent_id, traceparent = _traceparent()
        request_id = await _get_value(server, wire, key, token_id, traceparent)

        for _ in range(100):
            spans = receiver.of_trace(trace_id)
            if any(s.kind == s.SPAN_KIND_SERVER for s in spans) and len(spans) >= 3:
                break
            await asyncio.sleep(0.1)
        (root,) = [s for s in spans if s.kind == s.SPAN_KIND_SERVER]
        assert root.name == f"{SERVICE}/{GET_VALUE}"
        assert root.parent_span_id == parent_id  # under the caller's span
        said = attributes(root)
        assert said["rpc.method"] == GET_VALUE
        assert said["hostauth.request_id"] == request_id
        assert said["hostauth.transport"] == {"grpc": "grpc"}.get(wire, wire.replace("-", "_"))
        children = list(descendants(spans, root))
        names = {s.name for s in children}
        assert "audit.write" in names, names
        statements = [attributes(s) for s in children if "db.statement" in attributes(s)]
        assert statements, names
        assert any("audit_events" in s["db.statement"] for s in statements)
        resources = {r["service.name"] for r, _ in receiver.spans}
        assert resources == {"hostauth-under-test"}
        for _, span in receiver.spans:  # no secret in any span, of any trace
            text = str(span)
            assert not leaks(text), leaks(text)
            assert key not in text
            assert create.token not in text
    finally:
        server.stop()
