"""Listen addresses as people write them, and plaintext refused beyond
loopback unless HOSTAUTH_ALLOW_PLAINTEXT says something else encrypts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hostauth.config import Address, ConfigError, Settings
from tests.support.processes import ROOT

BASE = {"DATABASE_URL": "postgresql://localhost/x"}


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        (":8080", "0.0.0.0", 8080, False),
        ("0.0.0.0:8080", "0.0.0.0", 8080, False),
        ("[::]:8080", "::", 8080, False),
        ("[::1]:9090", "::1", 9090, True),
        ("127.0.0.1:8080", "127.0.0.1", 8080, True),
        ("127.0.0.2:8080", "127.0.0.2", 8080, True),
        ("localhost:8080", "localhost", 8080, True),
        ("10.0.0.7:8080", "10.0.0.7", 8080, False),
        ("hostauth.internal:443", "hostauth.internal", 443, False),
    ],
)
def test_addresses_as_people_write_them(text: str, host: str, port: int, loopback: bool) -> None:
    addr = Address.parse(text, setting="HOSTAUTH_HTTP_ADDR")
    assert (addr.host, addr.port, addr.loopback) == (host, port, loopback)


@pytest.mark.parametrize("bad", ["8080", "::8080", "host:", "host:http", "[::1]:70000", "::1:8080"])
def test_a_malformed_address_names_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^HOSTAUTH_GRPC_ADDR must be host:port"):
        Settings.from_env({**BASE, "HOSTAUTH_GRPC_ADDR": bad})


@pytest.mark.parametrize("addr", ["0.0.0.0:8080", ":8080", "[::]:8080", "10.1.2.3:8080"])
def test_plaintext_beyond_loopback_is_refused_unless_allowed(addr: str) -> None:
    for name in ("HOSTAUTH_HTTP_ADDR", "HOSTAUTH_GRPC_ADDR"):
        settings = Settings.from_env({**BASE, name: addr})
        why = settings.plaintext_exposure()
        assert why is not None
        assert why.startswith(f"{name} is ")
        assert "HOSTAUTH_TLS_CERT_FILE" in why
        assert "HOSTAUTH_ALLOW_PLAINTEXT=true" in why
        allowed = Settings.from_env({**BASE, name: addr, "HOSTAUTH_ALLOW_PLAINTEXT": "true"})
        assert allowed.plaintext_exposure() is None
        assert allowed.plaintext_off_loopback()  # warned at start


def test_loopback_plaintext_and_tls_anywhere_are_not_refused() -> None:
    assert Settings.from_env(BASE).plaintext_exposure() is None
    assert not Settings.from_env(BASE).plaintext_off_loopback()
    tls = {"HOSTAUTH_TLS_CERT_FILE": "/c.pem", "HOSTAUTH_TLS_KEY_FILE": "/k.pem"}
    assert Settings.from_env({**BASE, **tls, "HOSTAUTH_HTTP_ADDR": ":8443"}).plaintext_exposure() is None


def test_serve_stops_at_once_with_one_line_saying_why() -> None:
    """Before any database or port: nothing listens in clear text."""
    done = subprocess.run(
        [sys.executable, "-m", "hostauth", "serve"],
        cwd=ROOT,
        env={**os.environ, **BASE, "HOSTAUTH_HTTP_ADDR": "0.0.0.0:0", "HOSTAUTH_KEYRING": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "hostauth: HOSTAUTH_HTTP_ADDR is 0.0.0.0:0, reachable beyond this machine, and TLS is off: set"
        " HOSTAUTH_TLS_CERT_FILE and HOSTAUTH_TLS_KEY_FILE, or HOSTAUTH_ALLOW_PLAINTEXT=true where"
        " something else encrypts the traffic (a service mesh)"
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HOSTAUTH_TLS_CERT_FILE": "/c.pem"},
            "TLS needs both HOSTAUTH_TLS_CERT_FILE and HOSTAUTH_TLS_KEY_FILE",
        ),
        ({"HOSTAUTH_TLS_CLIENT_CA_FILE": "/ca.pem"}, "client certificates need TLS"),
        (
            {
                "HOSTAUTH_TLS_CERT_FILE": "/c",
                "HOSTAUTH_TLS_KEY_FILE": "/k",
                "HOSTAUTH_TLS_CLIENT_CERTS": "maybe",
            },
            "HOSTAUTH_TLS_CLIENT_CERTS must be off, optional or require",
        ),
        (
            {
                "HOSTAUTH_TLS_CERT_FILE": "/c",
                "HOSTAUTH_TLS_KEY_FILE": "/k",
                "HOSTAUTH_TLS_CLIENT_CA_FILE": "/ca",
            },
            "HOSTAUTH_TLS_CLIENT_IDENTITIES_FILE",
        ),
        (
            {"HOSTAUTH_CORS_ORIGINS": "https://app.example.com/path"},
            "HOSTAUTH_CORS_ORIGINS takes exact origins",
        ),
    ],
)
def test_tls_and_cors_settings_that_cannot_work_name_what_to_set(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, **env})
