"""The audit stream a SIEM reads: with HOSTAUTH_AUDIT_SINK=file:..., two
workers append one JSON line per audit row, each naming a row that is in
the database (the record), none interleaved; a sink that cannot be opened
stops the start with one line."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import pytest

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.core.policy import READ_SECRETS
from tests.support.db import create_database, fetch_rows
from tests.support.processes import failed_start, start_server, wait_serving
from tests.support.requests import create_request
from tests.support.sensitive import leaks
from tests.support.serving import TEST_KEYRING_JSON, service_account_key
from tests.support.wire import RpcError, wires_of


async def test_every_audit_row_is_also_a_json_line_on_the_sink(
    admin_dsn: str, log_dir: Path, tmp_path: Path
) -> None:
    dsn = await create_database(admin_dsn)
    sink = tmp_path / "audit.jsonl"
    env = {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON, "HOSTAUTH_AUDIT_SINK": f"file:{sink}"}
    server = start_server(log_dir, env, args=("--workers", "2"))
    try:
        await wait_serving(server)
        key = await service_account_key(dsn, READ_SECRETS)
        for _ in range(3):
            for wire in wires_of(server, key):
                created = await wire.call(
                    "CreateHostAuthenticationToken",
                    create_request(),
                    pb.CreateHostAuthenticationTokenResponse,
                )
                await wire.call(
                    "GetHostAuthenticationTokenValue",
                    pb.GetHostAuthenticationTokenValueRequest(id=created.token.id),
                    pb.GetHostAuthenticationTokenValueResponse,
                )
                with pytest.raises(RpcError):  # refused, and audited as such
                    await wire.call(
                        "DeleteHostAuthenticationToken",
                        pb.DeleteHostAuthenticationTokenRequest(id=str(uuid4())),
                        pb.DeleteHostAuthenticationTokenResponse,
                    )
    finally:
        server.stop()
    text = sink.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # each line one whole JSON object
    rows = await fetch_rows(dsn, "SELECT request_id, method, outcome, token_id FROM audit_events")
    assert len(rows) == 27
    in_database = sorted((r["request_id"], r["method"], r["outcome"]) for r in rows)
    assert sorted((e["request_id"], e["method"], e["outcome"]) for e in lines) == in_database
    assert {e["outcome"] for e in lines} == {"ok", "not_found"}
    assert all(
        e["principal"] == "PRINCIPAL_SERVICE_ACCOUNT" and e["credential_id"].startswith("api_key:")
        for e in lines
    )
    assert not leaks(text), leaks(text)
    assert key not in text


async def test_a_sink_that_cannot_be_opened_stops_the_start(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
        "HOSTAUTH_AUDIT_SINK": f"file:{tmp_path}/missing/audit.jsonl",
    }
    line = await failed_start(env, 2)
    missing = tmp_path / "missing" / "audit.jsonl"
    assert line == f"hostauth: HOSTAUTH_AUDIT_SINK: cannot open {missing}: No such file or directory"
