"""Logs as a log pipeline reads them: with HOSTAUTH_LOG_FORMAT=json every
line is one JSON object; with HOSTAUTH_ACCESS_LOG=on each call has one
access line naming method, transport, code, duration, request id,
principal and credential id, and never a secret."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from uuid import uuid4

from gitpod.v1 import runner_configuration_pb2 as pb
from tests.support.db import create_database
from tests.support.processes import start_server, wait_serving
from tests.support.requests import create_request
from tests.support.sensitive import leaks
from tests.support.serving import TEST_KEYRING_JSON, service_account_key
from tests.support.wire import refused_with_headers, wires_of

GET = "GetHostAuthenticationToken"


async def test_json_lines_and_one_access_line_per_call(admin_dsn: str, log_dir: Path) -> None:
    dsn = await create_database(admin_dsn)
    env = {
        "DATABASE_URL": dsn,
        "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
        "HOSTAUTH_LOG_FORMAT": "json",
        "HOSTAUTH_ACCESS_LOG": "on",
    }
    server = start_server(log_dir, env, args=("--workers", "2"))
    sent: dict[str, tuple[str, str, bool]] = {}  # request id: wire, code, with a credential
    try:
        await wait_serving(server)
        key = await service_account_key(dsn)
        wires = wires_of(server, key)
        missing = pb.GetHostAuthenticationTokenRequest(id=str(uuid4()))
        for wire in wires:
            await wire.call(
                "CreateHostAuthenticationToken", create_request(), pb.CreateHostAuthenticationTokenResponse
            )
            for code, headers in (
                ("Unauthenticated", []),
                ("NotFound", [("authorization", f"Bearer {key}")]),
            ):
                rid = secrets.token_hex(8)
                await refused_with_headers(wire, GET, missing, [*headers, ("x-request-id", rid)])
                sent[rid] = (wire.name, code, bool(headers))
    finally:
        text = server.stop()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # each a JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    access = [line for line in lines if line["logger"] == "hostauth.access"]
    assert len(access) == 3 * 3, access
    transports = {"grpc": "grpc", "connect-json": "connect_json", "connect-proto": "connect_proto"}
    for rid, (wire_name, code, with_credential) in sent.items():
        (line,) = [a for a in access if a["request_id"] == rid]
        assert (line["method"], line["transport"], line["code"]) == (GET, transports[wire_name], code)
        assert isinstance(line["duration_ms"], float)
        if with_credential:
            assert line["principal"] == "PRINCIPAL_SERVICE_ACCOUNT"
            assert line["credential_id"].startswith("api_key:")
        else:
            assert line["principal"] is None
    # The service's own warning of a refused call carries the request id too.
    warned = [line for line in lines if line["level"] == "WARNING" and line["request_id"] in sent]
    assert warned
    assert not leaks(text), leaks(text)
    assert key not in text
