"""The database out: every method on every wire answers unavailable (for the
caller to retry), and the log gets a warning now and then, not a traceback
per call."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from server.auth.jwt_verifier import JwtSettings, JwtVerifier
from server.crypto import Sealer
from server.cursor import CursorCodec
from server.embedded_pg import EmbeddedPostgres
from server.errors import DATABASE_UNAVAILABLE
from server.service import HostAuthService
from server.store import ApiKeyStore, TokenStore, connect_pool, cursor_key
from tests.conftest import serving
from tests.db import create_database
from tests.jwts import AUDIENCE, ISSUER, Issuer
from tests.lifecycle import create, delete, get, get_value, list_page, update
from tests.wire import ConnectWire, GrpcWire, RpcError, Wire


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, to stop (started on the main thread)."""
    folder = Path(tempfile.mkdtemp(prefix="hostauth-outage-"))
    folder.chmod(0o755)
    pg = EmbeddedPostgres(folder / "pgdata", fsync=False)
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(folder, ignore_errors=True)


async def test_every_method_on_every_wire_answers_unavailable(
    own_postgres: EmbeddedPostgres, sealer: Sealer, jwt_issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    pg = own_postgres
    dsn = await create_database(pg.dsn)
    pool = await connect_pool(dsn)
    core = HostAuthService(TokenStore(pool), sealer, CursorCodec(await cursor_key(pool)))
    # A JWT needs no database to check, so every call gets as far as the core.
    jwt = JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwt_issuer.jwks_file))
    credential = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", scope="secrets:read")
    async with serving(core, ApiKeyStore(pool), dsn, http_server="granian", jwt=jwt) as running:
        wires: list[Wire] = [
            GrpcWire(str(running.grpc), credential),
            ConnectWire(running.http_url, "json", credential=credential),
            ConnectWire(running.http_url, "proto", credential=credential),
        ]
        token_id = (await create(wires[0])).id
        pg.stop()
        calls: dict[str, Callable[[Wire], Awaitable[object]]] = {
            "Create": create,
            "Get": lambda w: get(w, token_id),
            "List": lambda w: list_page(w, page_size=5),
            "Update": lambda w: update(w, token_id, scopes=["x"]),
            "Delete": lambda w: delete(w, token_id),
            "GetValue": lambda w: get_value(w, token_id),
        }
        caplog.set_level(logging.INFO)
        caplog.clear()
        for wire in wires:
            for name, call in calls.items():
                with pytest.raises(RpcError) as caught:
                    await call(wire)
                assert (caught.value.code, caught.value.message) == (
                    "unavailable",
                    DATABASE_UNAVAILABLE,
                ), (wire.name, name)
        for wire in wires:
            await wire.close()  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert 1 <= len(warnings) <= 2  # 18 calls within a few seconds
    pool.terminate()
