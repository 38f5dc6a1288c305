"""Key lifecycle: registry checks at start-up, rotate / rewrap / retire online."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.auth.caller import Call, Caller
from hostauth.core.service import HostAuthService
from hostauth.crypto import KeyProviders, LocalKeyring, Sealer
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.keys.registry import FORGET_AFTER, Heartbeat, register_and_check
from hostauth.keys.rotation import rewrap, rotate
from hostauth.runner_client import RunnerKey
from hostauth.runtime.assembly import postgres_core
from hostauth.store import ApiKeyStore, connect_pool
from hostauth.store.encryption_keys import KeyStore, ReplicaRow, RewrapRow
from tests.support.cli import run_cli
from tests.support.db import create_database
from tests.support.integrations import integration_request
from tests.support.lifecycle import create, get_value, update
from tests.support.processes import ROOT, start_server, wait_serving
from tests.support.requests import create_request, secret
from tests.support.serving import make_api_key
from tests.support.wire import ConnectWire, GrpcWire, Wire

HEARTBEAT_S = "0.2"


def keyring_json(*key_ids: str, primary: str) -> str:
    keys = {k: json.loads(generate_keyring_json(k))["keys"][k] for k in key_ids}
    return json.dumps({"primary": primary, "keys": keys})


@dataclass
class KeyEnv:
    dsn: str
    both: str  # keyring JSON with k-old (primary) and k-new
    pool: asyncpg.Pool
    sealer: Sealer
    core: HostAuthService
    store: KeyStore

    def env(self, keyring: str | None = None) -> dict[str, str]:
        return {
            "DATABASE_URL": self.dsn,
            "HOSTAUTH_KEYRING": keyring or self.both,
            "HOSTAUTH_HEARTBEAT_S": HEARTBEAT_S,
        }


@pytest.fixture
async def key_env(admin_dsn: str, admin_call: Call) -> AsyncIterator[KeyEnv]:
    dsn = await create_database(admin_dsn)
    both = keyring_json("k-old", "k-new", primary="k-old")
    pool = await connect_pool(dsn)
    keys = KeyProviders.local(LocalKeyring.from_json(both, source="test"))
    store = KeyStore(pool)
    sealer = Sealer(keys, await register_and_check(keys, store))
    core = await postgres_core(pool, sealer)
    yield KeyEnv(dsn, both, pool, sealer, core, store)
    await pool.close()


async def seed(env: KeyEnv, call: Call, count: int) -> dict[str, str]:
    """Tokens sealed under the current primary: id -> token secret."""
    written = {}
    for _ in range(count):
        req = create_request()
        answer = await env.core.create_host_authentication_token(req, call)
        written[answer.token.id] = req.token
    return written


async def kek_ids(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT token_kek_id AS k, count(*) AS n FROM host_authentication_tokens GROUP BY 1"
        )
    return {r["k"]: r["n"] for r in rows}


async def test_start_refused_when_rows_use_a_key_it_lacks(
    key_env: KeyEnv, admin_call: Call, tmp_path: Path
) -> None:
    await seed(key_env, admin_call, 3)
    server = start_server(tmp_path, key_env.env(keyring_json_with(key_env, "k-new")))
    assert server.proc.wait(timeout=60) == 1
    log = server.log.read_text()
    assert "rows use key(s) this server does not have: k-old" in log
    assert "the primary key k-old is not configured here" in log


async def test_start_refused_when_key_material_is_wrong(key_env: KeyEnv, tmp_path: Path) -> None:
    impostor = keyring_json("k-old", primary="k-old")  # the same id, other material
    server = start_server(tmp_path, key_env.env(impostor))
    assert server.proc.wait(timeout=60) == 1
    assert "does not match the database's check for key(s): k-old" in server.log.read_text()


async def test_retire_refuses_while_rows_use_the_key(key_env: KeyEnv, admin_call: Call) -> None:
    await seed(key_env, admin_call, 3)
    env = key_env.env()
    refused = await run_cli_env(env, "keys", "retire", "k-old")
    assert refused.returncode == 1
    assert "key k-old is primary" in refused.stderr
    assert (await run_cli_env(env, "keys", "rotate", "k-new")).returncode == 0
    refused = await run_cli_env(env, "keys", "retire", "k-old")
    assert refused.returncode == 1
    assert "key k-old is still used by 3 row(s)" in refused.stderr
    status = await run_cli_env(env, "keys", "status")
    assert "k-old  active  ciphertexts=6" in status.stdout  # token and refresh token of 3 rows
    assert "k-new  primary  ciphertexts=0" in status.stdout


async def test_integration_client_secrets_rotate_with_the_tokens(key_env: KeyEnv, admin_call: Call) -> None:
    """A client secret under the old key holds the key until rewrapped, and
    reads back after: retire never strands an integration."""
    runner = RunnerKey.generate()
    runner_id = uuid4()
    as_runner = Call(Caller(identity_pb2.PRINCIPAL_RUNNER, runner_id, "test:runner"), "test-request")
    await key_env.core.runners.signup(ri.SignupRequest(public_key=runner.public_der), as_runner)
    req = integration_request(str(runner_id))
    made = await key_env.core.integrations.create(req, admin_call)
    env = key_env.env()
    assert (await run_cli_env(env, "keys", "rotate", "k-new")).returncode == 0
    refused = await run_cli_env(env, "keys", "retire", "k-old")
    assert "key k-old is still used by 1 row(s)" in refused.stderr
    status = await run_cli_env(env, "keys", "status")
    assert "k-old  active  ciphertexts=1" in status.stdout
    rewrapped = await run_cli_env(env, "keys", "rewrap")
    assert rewrapped.returncode == 0, rewrapped.stderr
    assert "rewrap: 1 row(s) to re-wrap under k-new" in rewrapped.stderr
    assert (await run_cli_env(env, "keys", "retire", "k-old")).returncode == 0
    async with key_env.pool.acquire() as conn:
        assert await conn.fetchval("SELECT client_secret_kek_id FROM scm_integrations") == "k-new"
    got = await key_env.core.integrations.get(pb.GetSCMIntegrationRequest(id=made.id), admin_call)
    assert runner.open(got.integration.oauth.encrypted_client_secret) == req.oauth_plaintext_client_secret


async def run_cli_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hostauth", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_update_during_rewrap_is_never_overwritten(key_env: KeyEnv, admin_call: Call) -> None:
    written = await seed(key_env, admin_call, 10)
    await rotate(key_env.sealer.keys, key_env.store, "k-new", float(HEARTBEAT_S))
    key_env.sealer.set_primary("k-new")
    target = next(iter(written))
    client_value = secret("gho_client_")
    hooked = False

    async def client_writes(batch: list[RewrapRow]) -> None:
        nonlocal hooked
        if not hooked:  # between the rewrap's read and its write
            hooked = True
            assert UUID(target) in {row.id for row in batch}
            await key_env.core.update_host_authentication_token(
                pb.UpdateHostAuthenticationTokenRequest(id=target, token=client_value), admin_call
            )

    progress = io.StringIO()
    done = await rewrap(
        key_env.sealer, key_env.store, batch_size=100, before_write=client_writes, out=progress
    )
    assert "10/10 rows" in progress.getvalue()
    assert hooked
    assert done == 10  # 9 in the first pass, the client's row in the second
    value = await key_env.core.get_host_authentication_token_value(
        pb.GetHostAuthenticationTokenValueRequest(id=target), admin_call
    )
    assert value.token == client_value
    assert await kek_ids(key_env.pool) == {"k-new": 10}


async def test_rewrap_killed_half_way_finishes_when_run_again(key_env: KeyEnv, admin_call: Call) -> None:
    written = await seed(key_env, admin_call, 40)
    env = key_env.env()
    assert (await run_cli_env(env, "keys", "rotate", "k-new")).returncode == 0

    proc = subprocess.Popen(  # noqa: ASYNC220 # read line by line below, in a thread
        [sys.executable, "-m", "hostauth", "keys", "rewrap", "--batch-size", "5", "--pause-ms", "300"],
        cwd=ROOT,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = await asyncio.to_thread(proc.stderr.readline)
    while "rows (" not in line:  # the first committed batch
        line = await asyncio.to_thread(proc.stderr.readline)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    half = await kek_ids(key_env.pool)
    assert 0 < half.get("k-new", 0) < 40, half

    again = await run_cli_env(env, "keys", "rewrap", "--batch-size", "7")
    assert again.returncode == 0, again.stderr
    assert "rows/s" in again.stderr
    assert await kek_ids(key_env.pool) == {"k-new": 40}
    async with key_env.pool.acquire() as conn:  # a rewrap is no client write: etags stay
        assert await conn.fetchval("SELECT array_agg(DISTINCT version) FROM host_authentication_tokens") == [
            1
        ]
    for token_id, token in written.items():
        value = await key_env.core.get_host_authentication_token_value(
            pb.GetHostAuthenticationTokenValueRequest(id=token_id), admin_call
        )
        assert value.token == token
    assert (await run_cli_env(env, "keys", "retire", "k-old")).returncode == 0


async def test_rotate_refused_while_a_live_replica_lacks_the_key(key_env: KeyEnv, tmp_path: Path) -> None:
    server = start_server(tmp_path, key_env.env(keyring_json_with(key_env, "k-old")))
    try:
        await wait_serving(server)
        refused = await run_cli_env(key_env.env(), "keys", "rotate", "k-new")
    finally:
        server.stop()
    assert refused.returncode == 1
    assert "do not hold key k-new" in refused.stderr


async def test_replicas_long_silent_are_forgotten_at_a_start(key_env: KeyEnv) -> None:
    """A killed worker never says it leaves: its row stayed for good."""
    gone, recent = uuid4(), uuid4()
    async with key_env.pool.acquire() as conn:
        for replica, age in ((gone, FORGET_AFTER + timedelta(minutes=1)), (recent, FORGET_AFTER / 2)):
            await conn.execute(
                "INSERT INTO replicas (id, key_ids, primary_key_id, heartbeat_at)"
                " VALUES ($1, $2, $3, now() - $4::interval)",
                replica,
                ["k-old"],
                "k-old",
                age,
            )
    beat = Heartbeat(key_env.store, key_env.sealer, 1.0)
    await beat.start()
    async with key_env.pool.acquire() as conn:
        left = {r["id"] for r in await conn.fetch("SELECT id FROM replicas")}
    assert left == {recent, beat.replica_id}


class _OutFor(KeyStore):
    """A key store whose heartbeats fail the first `failures` times."""

    def __init__(self, pool: asyncpg.Pool, failures: int) -> None:
        super().__init__(pool)
        self.failures, self.calls = failures, 0

    async def heartbeat(self, replica: ReplicaRow) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("the database is out")
        await super().heartbeat(replica)


async def test_a_failing_heartbeat_is_said_once_not_every_beat(
    key_env: KeyEnv, caplog: pytest.LogCaptureFixture
) -> None:
    store = _OutFor(key_env.pool, failures=6)
    running = asyncio.create_task(Heartbeat(store, key_env.sealer, 0.01).run())
    try:
        for _ in range(500):
            if store.calls > 8:
                break
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert store.calls > 8
    said = [r.getMessage() for r in caplog.records if r.name == "hostauth.keys.registry"]
    assert [m for m in said if m.startswith("heartbeat")] == [
        "heartbeat failed: ConnectionRefusedError; retrying every 0.01 s",
        "heartbeat is back",
    ]


def keyring_json_with(env: KeyEnv, *key_ids: str) -> str:
    """The env's keyring narrowed to some of its keys (same material)."""
    doc = json.loads(env.both)
    return json.dumps({"primary": key_ids[0], "keys": {k: doc["keys"][k] for k in key_ids}})


async def test_rotation_under_load(key_env: KeyEnv, admin_call: Call, tmp_path: Path) -> None:
    """Writers and readers on a running server while rotate, rewrap and retire
    run: no request fails, every secret reads back as last written, and the
    old key is gone from every row."""
    last = await seed(key_env, admin_call, 150)
    history = {token_id: {token} for token_id, token in last.items()}
    server = start_server(tmp_path, key_env.env())
    failures: list[str] = []
    stop = asyncio.Event()
    counts = {"writes": 0, "reads": 0}
    try:
        await wait_serving(server)
        key = await make_api_key(
            ApiKeyStore(key_env.pool), identity_pb2.PRINCIPAL_SERVICE_ACCOUNT, uuid4(), "secrets:read"
        )
        wires: list[Wire] = [
            GrpcWire(f"127.0.0.1:{server.grpc_port}", key),
            ConnectWire(f"http://127.0.0.1:{server.http_port}", "proto", credential=key),
        ]
        ids = list(last)
        shards = [ids[i::2] for i in range(2)]  # each writer owns its tokens: "last" is well defined

        async def writer(wire: Wire, mine: list[str]) -> None:
            while not stop.is_set():
                try:
                    if random.random() < 0.2:
                        req = create_request()
                        token = await create(wire, req)
                        last[token.id] = req.token
                        history[token.id] = {req.token}
                        mine.append(token.id)
                    else:
                        token_id = random.choice(mine)
                        value = secret("gho_w_")
                        history[token_id].add(value)
                        await update(wire, token_id, token=value)
                        last[token_id] = value
                    counts["writes"] += 1
                except Exception as exc:  # noqa: BLE001 # counted, and the test fails
                    failures.append(f"write: {exc}")

        async def reader(wire: Wire) -> None:
            while not stop.is_set():
                token_id = random.choice(ids)
                try:
                    value = await get_value(wire, token_id)
                    if value.token not in history[token_id]:
                        failures.append(f"read {token_id}: a value never written")
                    counts["reads"] += 1
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"read: {exc}")

        tasks = [asyncio.create_task(writer(w, s)) for w, s in zip(wires, shards, strict=True)]
        tasks += [asyncio.create_task(reader(w)) for w in wires]
        await asyncio.sleep(0.5)
        env = key_env.env()
        steps = []
        for args in (
            ("keys", "rotate", "k-new"),
            ("keys", "rewrap", "--batch-size", "25"),
            ("keys", "retire", "k-old"),
        ):
            steps.append(await run_cli_env(env, *args))
            assert steps[-1].returncode == 0, (args, steps[-1].stderr)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)

        assert failures == []
        assert counts["writes"] > 20, counts
        assert counts["reads"] > 20, counts
        for token_id, value in last.items():
            assert (await get_value(wires[0], token_id)).token == value
        for wire in wires:
            await wire.close()  # type: ignore[attr-defined]
    finally:
        log = server.stop()
    assert "primary key is now k-new" in log
    async with key_env.pool.acquire() as conn:
        old = await conn.fetchval(
            "SELECT count(*) FROM host_authentication_tokens "
            "WHERE token_kek_id = 'k-old' OR refresh_token_kek_id = 'k-old'"
        )
        state = await conn.fetchval("SELECT state FROM encryption_keys WHERE id = 'k-old'")
    assert old == 0
    assert state == "retired"


async def test_generate_adds_a_key_to_a_keyring_file(tmp_path: Path) -> None:
    """It needs no database and no keyring: it may make the first one."""
    path = tmp_path / "keyring.json"
    unset = ("DATABASE_URL", "HOSTAUTH_KEYRING", "HOSTAUTH_KEYRING_FILE", "HOSTAUTH_KMS_KEY_ID")
    env = {k: v for k, v in os.environ.items() if k not in unset}

    async def generate(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hostauth", "keys", "generate", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    printed = await generate("--id", "k-0")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["primary"] == "k-0"
    first = await generate("--id", "k-1", "--keyring-file", str(path))
    assert first.returncode == 0, first.stderr
    added = await generate("--id", "k-2", "--keyring-file", str(path))
    assert added.returncode == 0, added.stderr
    doc = json.loads(path.read_text())
    assert doc["primary"] == "k-1"
    assert set(doc["keys"]) == {"k-1", "k-2"}
    assert path.stat().st_mode & 0o777 == 0o600
    ring = LocalKeyring.from_file(path)  # and it loads
    assert ring.key_ids == {"k-1", "k-2"}
    again = await generate("--id", "k-2", "--keyring-file", str(path))
    assert again.returncode == 1
    assert "already has a key k-2" in again.stderr


async def test_verify_says_whether_a_restored_database_is_readable_with_the_keys_here(
    key_env: KeyEnv, admin_call: Call
) -> None:
    await seed(key_env, admin_call, 3)
    whole = await run_cli(key_env.dsn, "keys", "verify", env={"HOSTAUTH_KEYRING": key_env.both})
    assert whole.returncode == 0, whole.stderr
    assert "k-old  primary  ciphertexts=6  ok" in whole.stdout  # a token and a refresh token each
    assert "every key the database uses has material here (6 ciphertexts)" in whole.stdout
    lacking = await run_cli(
        key_env.dsn, "keys", "verify", env={"HOSTAUTH_KEYRING": keyring_json_with(key_env, "k-new")}
    )
    assert lacking.returncode == 1
    assert "k-old  primary  ciphertexts=6  MISSING here" in lacking.stdout
    assert lacking.stderr.strip() == "hostauth: ciphertexts use key(s) with no material here: k-old"
    impostor = await run_cli(
        key_env.dsn, "keys", "verify", env={"HOSTAUTH_KEYRING": keyring_json("k-old", primary="k-old")}
    )
    assert impostor.returncode == 1
    assert "does not match the registry for: k-old" in impostor.stderr
    # Read-only: nothing registered, nothing changed.
    assert sorted(r.id for r in await key_env.store.keys()) == ["k-new", "k-old"]
