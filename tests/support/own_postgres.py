"""A PostgreSQL of a test's own, to stop and start (the session's one stays
up), and the service on it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

from hostauth.auth.jwt_verifier import JwtSettings, JwtVerifier
from hostauth.crypto import Sealer
from hostauth.runtime.assembly import postgres_core
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from hostauth.store import ApiKeyStore, connect_pool
from tests.support.jwts import AUDIENCE, ISSUER, Issuer
from tests.support.serving import serving
from tests.support.wire import ConnectWire, GrpcWire, Wire


@contextlib.contextmanager
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """Started on the calling thread (the main one, in tests): see EmbeddedPostgres.start."""
    folder = Path(tempfile.mkdtemp(prefix="hostauth-own-pg-"))
    folder.chmod(0o755)  # reachable by the unprivileged user it runs as under root
    pg = EmbeddedPostgres(folder / "pgdata", fsync=False)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def served_with_jwt(
    dsn: str, sealer: Sealer, jwt_issuer: Issuer, *, timeout_s: float = 10.0
) -> AsyncIterator[list[Wire]]:
    """The service on dsn, and a client on each wire (gRPC, Connect JSON,
    Connect proto) with a JWT: it needs no database to check, so every call
    gets as far as the core."""
    pool = await connect_pool(dsn, timeout_s=timeout_s)
    core = await postgres_core(pool, sealer)
    jwt = JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwt_issuer.jwks_file))
    credential = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", scope="secrets:read")
    try:
        async with serving(core, ApiKeyStore(pool), dsn, jwt=jwt) as running:
            wires: list[Wire] = [
                GrpcWire(str(running.grpc), credential),
                ConnectWire(running.http_url, "json", credential=credential),
                ConnectWire(running.http_url, "proto", credential=credential),
            ]
            try:
                yield wires
            finally:
                for wire in wires:
                    await wire.close()  # type: ignore[attr-defined]
    finally:
        pool.terminate()
