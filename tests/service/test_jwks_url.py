"""JWT keys from a JWKS URL (HOSTAUTH_JWT_JWKS_URL), as an identity provider
serves them: fetched at start and then from the cache; fetched again, once,
for a token naming a new key id, however many such calls arrive together,
and not again within the refetch interval; a fetch is bounded by its
timeout and a failed one keeps the keys in use."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hostauth.auth import jwt_verifier
from hostauth.auth.jwt_verifier import JwtSettings, JwtVerifier
from hostauth.errors import Unauthenticated
from tests.support.jwts import AUDIENCE, ISSUER, Issuer


class JwksServer:
    """Serves the issuer's JWKS file on loopback, counting the fetches."""

    def __init__(self, jwks_file: Path) -> None:
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                server.fetches += 1
                body = jwks_file.read_bytes()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_port}/.well-known/jwks.json"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer(tmp_path / "jwks.json")


@pytest.fixture
def served(issuer: Issuer) -> Iterator[JwksServer]:
    server = JwksServer(issuer.jwks_file)
    yield server
    server.close()


def _verifier(url: str) -> JwtVerifier:
    return JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=url))


async def test_keys_are_fetched_at_start_then_served_from_the_cache(
    issuer: Issuer, served: JwksServer
) -> None:
    verifier = _verifier(served.url)
    assert served.fetches == 1
    for _ in range(5):
        caller = await verifier.verify_async(issuer.token(uuid.uuid4(), "PRINCIPAL_RUNNER"))
        assert caller.credential_id.startswith("jwt:")
    assert served.fetches == 1


async def test_a_new_key_id_is_fetched_once_for_all_callers_then_not_again_for_a_while(
    issuer: Issuer, served: JwksServer
) -> None:
    verifier = _verifier(served.url)
    issuer.add_key("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    tokens = [issuer.token(uuid.uuid4(), "PRINCIPAL_RUNNER", kid="rsa-2") for _ in range(10)]
    callers = await asyncio.gather(*(verifier.verify_async(t) for t in tokens))
    assert len(callers) == 10
    assert served.fetches == 2  # the start's, and one for the new key id
    issuer.add_key("rsa-3", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    with pytest.raises(Unauthenticated, match="unknown key"):
        await verifier.verify_async(issuer.token(uuid.uuid4(), "PRINCIPAL_RUNNER", kid="rsa-3"))
    assert served.fetches == 2  # within the refetch interval: an unknown kid does not fetch again


async def test_an_unreachable_endpoint_keeps_the_keys_in_use(
    issuer: Issuer, served: JwksServer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = _verifier(served.url)
    served.close()
    issuer.add_key("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    with pytest.raises(Unauthenticated):
        await verifier.verify_async(issuer.token(uuid.uuid4(), "PRINCIPAL_RUNNER", kid="rsa-2"))
    assert "JWT keys not fetched from" in caplog.text
    assert (await verifier.verify_async(issuer.token(uuid.uuid4(), "PRINCIPAL_RUNNER"))).credential_id


async def test_a_fetch_is_bounded_by_its_timeout(
    issuer: Issuer, served: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = _verifier(served.url)
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(jwt_verifier, "JWKS_TIMEOUT_S", 0.5)
        stuck = _verifier(f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json")
        started = time.monotonic()
        with pytest.raises(Unauthenticated):
            await stuck.verify_async(issuer.token(uuid.uuid4(), "PRINCIPAL_RUNNER"))
        assert time.monotonic() - started < 3.0
    assert (await verifier.verify_async(issuer.token(uuid.uuid4(), "PRINCIPAL_RUNNER"))).credential_id


def test_a_jwks_url_must_be_http_or_https() -> None:
    with pytest.raises(ValueError, match="HOSTAUTH_JWT_JWKS_URL"):
        JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="file:///etc/passwd")
