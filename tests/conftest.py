"""Fixtures: a real PostgreSQL (embedded, or DATABASE_URL), the service on
both transports in this event loop, and a client per wire."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from gitpod.v1 import identity_pb2
from hostauth.auth.caller import Call, Caller
from hostauth.auth.jwt_verifier import JwtSettings, JwtVerifier
from hostauth.core.policy import READ_SECRETS
from hostauth.core.service import HostAuthService
from hostauth.crypto import KeyProviders, LocalKeyring, Sealer
from hostauth.runtime.assembly import postgres_core
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from hostauth.runtime.serve import Running
from hostauth.store import ApiKeyStore, close_pool, connect_pool
from hostauth.telemetry.logs import CallContext, json_formatter
from tests.support.db import create_database
from tests.support.jwts import AUDIENCE, ISSUER, Issuer
from tests.support.sensitive import leaks
from tests.support.serving import TEST_KEYRING_JSON, make_api_key, serving
from tests.support.wire import READ_WIRES, WIRES, ConnectWire, GrpcWire, Wire

# Servers the tests start as processes name their own metrics port
# (tests/support/processes.py); any other start serves no metrics.
os.environ.setdefault("HOSTAUTH_METRICS_ADDR", "")


class _Collector(logging.Handler):
    """Every record as a text line, and as the JSON line of
    HOSTAUTH_LOG_FORMAT=json (with the event's fields: the access log's)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.addFilter(CallContext())
        self._json = json_formatter()
        self.lines: list[str] = []
        self.json_lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # includes any traceback
        self.json_lines.append(self._json.format(record))


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log() -> Iterator[_Collector]:
    """Every log line of the whole run, searched at the end for every secret
    and credential the tests made."""
    collector = _Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    previous = root.level
    root.setLevel(logging.DEBUG)
    # The capture sees the service's loggers from the first test to the last
    # (checked by canaries, not by counting lines at the end, so that a run of
    # log-free tests alone passes, and a handler lost mid-run fails it).
    canary = logging.getLogger("hostauth.tests")
    canary.debug("log capture canary: start")
    assert collector.lines == ["DEBUG hostauth.tests: log capture canary: start"]
    yield collector
    canary.debug("log capture canary: end")
    root.removeHandler(collector)
    root.setLevel(previous)
    leaked = [(line[:80], leaks(line)) for line in collector.lines + collector.json_lines if leaks(line)]
    assert not leaked, f"secrets or credentials in logs: {leaked[:5]}"
    # A background thread may log after the canary, so not lines[-1].
    assert "DEBUG hostauth.tests: log capture canary: end" in collector.lines


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL's, else a private embedded one."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    # Our own folder under /tmp, reachable by the unprivileged user the
    # server runs as when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="hostauth-test-"))
    folder.chmod(0o755)
    # Started here, on the main thread, which lives as long as the session.
    with EmbeddedPostgres(folder / "pgdata", fsync=False) as pg:
        yield pg.dsn
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
async def database_dsn(admin_dsn: str) -> str:
    """A fresh, empty database for this test session."""
    return await create_database(admin_dsn)


@pytest.fixture(scope="session")
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_pool(database_dsn)
    yield pool
    # Bounded: a connection never given back failed the run by hanging it.
    assert await close_pool(pool), "a pooled connection was never given back"


@pytest.fixture(scope="session")
def keyring() -> LocalKeyring:
    return LocalKeyring.from_json(TEST_KEYRING_JSON, source="tests")


@pytest.fixture(scope="session")
def sealer(keyring: LocalKeyring) -> Sealer:
    return Sealer(KeyProviders.local(keyring))


@pytest.fixture(scope="session")
async def core(pool: asyncpg.Pool, sealer: Sealer) -> HostAuthService:
    return await postgres_core(pool, sealer)


@pytest.fixture(scope="session")
def admin_call() -> Call:
    """For tests that drive the core directly: a service account that may read secrets."""
    caller = Caller(identity_pb2.PRINCIPAL_SERVICE_ACCOUNT, uuid4(), "test:admin", frozenset({READ_SECRETS}))
    return Call(caller, "test-request")


@pytest.fixture(scope="session")
def api_keys(pool: asyncpg.Pool) -> ApiKeyStore:
    return ApiKeyStore(pool)


@pytest.fixture(scope="session")
async def admin_key(api_keys: ApiKeyStore) -> str:
    """The credential the wire tests use: a service account with secrets:read."""
    return await make_api_key(api_keys, identity_pb2.PRINCIPAL_SERVICE_ACCOUNT, uuid4(), READ_SECRETS)


@pytest.fixture(scope="session")
def jwt_issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("jwks") / "jwks.json")


@pytest.fixture(scope="session")
async def running(
    core: HostAuthService, api_keys: ApiKeyStore, jwt_issuer: Issuer, database_dsn: str
) -> AsyncIterator[Running]:
    jwt = JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwt_issuer.jwks_file))
    async with serving(core, api_keys, database_dsn, jwt=jwt) as running:
        yield running


@pytest.fixture(scope="session")
async def wires(running: Running, admin_key: str) -> AsyncIterator[dict[str, Wire]]:
    grpc_wire = GrpcWire(str(running.grpc), admin_key)
    json_wire = ConnectWire(running.http_url, "json", credential=admin_key)
    proto_wire = ConnectWire(running.http_url, "proto", credential=admin_key)
    get_wire = ConnectWire(running.http_url, "proto", use_get=True, credential=admin_key)
    all_wires = (grpc_wire, json_wire, proto_wire, get_wire)
    yield {w.name: w for w in all_wires}
    for w in all_wires:
        await w.close()


@pytest.fixture(params=WIRES)
def wire(request: pytest.FixtureRequest, wires: dict[str, Wire]) -> Wire:
    return wires[request.param]


@pytest.fixture(params=READ_WIRES)
def read_wire(request: pytest.FixtureRequest, wires: dict[str, Wire]) -> Wire:
    """The three wires plus Connect GET, for cases that read with Get or List."""
    return wires[request.param]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """Where a test's server processes write their logs."""
    return tmp_path
