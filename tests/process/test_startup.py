"""The service as separate processes: concurrent start-up on an empty database, and
the README's calls against `serve --dev`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.store import ApiKeyStore, connect_pool
from hostauth.store.migrate import load_migrations
from tests.support.db import create_database
from tests.support.processes import ROOT, ServerProcess, start_server, wait_serving
from tests.support.requests import create_request
from tests.support.sensitive import leaks, remember
from tests.support.serving import TEST_KEYRING_JSON, make_api_key
from tests.support.wire import ConnectWire, GrpcWire


async def test_two_servers_started_at_once_on_an_empty_database_both_serve(
    admin_dsn: str, log_dir: Path
) -> None:
    dsn = await create_database(admin_dsn)
    env = {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON}
    servers = [start_server(log_dir, env), start_server(log_dir, env)]
    try:
        await asyncio.gather(*(wait_serving(s) for s in servers))
        pool = await connect_pool(dsn, min_size=1, max_size=1)
        key = await make_api_key(ApiKeyStore(pool), identity_pb2.PRINCIPAL_SERVICE_ACCOUNT, uuid4())
        await pool.close()
        for server in servers:
            for wire in (
                GrpcWire(f"127.0.0.1:{server.grpc_port}", key),
                ConnectWire(f"http://127.0.0.1:{server.http_port}", "proto", credential=key),
            ):
                req = create_request()
                answer = await wire.call(
                    "CreateHostAuthenticationToken", req, pb.CreateHostAuthenticationTokenResponse
                )
                assert answer.token.runner_id == req.runner_id
                await wire.close()
    finally:
        logs = [s.stop() for s in servers]
    conn = await asyncpg.connect(dsn)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        tokens = await conn.fetchval("SELECT count(*) FROM host_authentication_tokens")
    finally:
        await conn.close()
    assert [r["version"] for r in versions] == [m.version for m in load_migrations()]
    assert tokens == 4
    assert sum("applied migration" in log for log in logs) == 1  # exactly one server applied them
    for log in logs:
        assert leaks(log) == []


def readme_commands() -> list[str]:
    """The shell commands of the README's "Try it" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [b.strip() for b in blocks if "curl" in b]


def test_readme_has_the_three_calls() -> None:
    commands = readme_commands()
    assert len(commands) == 3
    assert any("buf curl" in c and "--protocol grpc" in c for c in commands)
    assert any("buf curl" in c and "--protocol grpc" not in c for c in commands)
    assert any(c.startswith("curl") for c in commands)


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_readme_call_works(dev_server: ServerProcess, dev_api_key: str, index: int) -> None:
    command = readme_commands()[index]
    for literal in re.findall(r"gh[or]_x+", command):
        remember(literal)
    command = command.replace("127.0.0.1:8080", f"127.0.0.1:{dev_server.http_port}")
    command = command.replace("127.0.0.1:9090", f"127.0.0.1:{dev_server.grpc_port}")
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        env={**os.environ, "HOSTAUTH_DEV_API_KEY": dev_api_key},
    )
    assert result.returncode == 0, result.stderr.decode()
    answer = json.loads(result.stdout)
    token = answer["token"]
    assert token["host"] == "github.com"
    assert token["runnerId"] == "d2c94c27-3b76-4a42-b88c-95a85e392c68"
    assert "refreshToken" not in token
    assert b"gho_" not in result.stdout
    assert b"ghr_" not in result.stdout
