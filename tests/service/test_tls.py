"""TLS on both ports, a certificate renewed on disk taken without a
restart, and client certificates (mutual TLS) as credentials mapped to
principals by the identities file."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import grpc
import httpx
import pytest
from cryptography import x509

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.config import TlsSettings
from hostauth.core.service import HostAuthService
from hostauth.runtime.serve import Running
from hostauth.store import ApiKeyStore
from hostauth.tls.identities import ClientIdentities
from tests.support.certs import Issued, issue, make_ca, server_cert
from tests.support.lifecycle import create, delete, get, get_value, list_page, update
from tests.support.processes import ROOT
from tests.support.requests import create_request, secret
from tests.support.serving import serving
from tests.support.wire import ConnectWire, GrpcWire, RpcError, Wire

WIRES = ("grpc", "connect-json", "connect-proto")
DEPLOYER = "spiffe://hostauth.test/ns/ci/sa/deployer"
WORKSPACE = "spiffe://hostauth.test/ns/ws/sa/user"
UNMAPPED = "spiffe://hostauth.test/ns/other/sa/nobody"
DEPLOYER_SUBJECT = UUID("0b6f6ad4-5e1c-4c44-9d6e-6f0cbf1c2f41")


@dataclass
class Pki:
    folder: Path
    ca: Issued
    cert_file: Path
    key_file: Path
    ca_file: Path
    identities_file: Path

    def client(self, identity: str, *, ca: Issued | None = None, expired: bool = False) -> tuple[Path, Path]:
        issued = issue(ca or self.ca, uris=(identity,), client=True, expired=expired)
        return issued.write(self.folder, f"client-{uuid4().hex[:8]}")

    def http_context(self, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if client is not None:
            context.load_cert_chain(*client)
        return context

    def grpc_credentials(self, client: tuple[Path, Path] | None = None) -> grpc.ChannelCredentials:
        chain = key = None
        if client is not None:
            chain, key = client[0].read_bytes(), client[1].read_bytes()
        return grpc.ssl_channel_credentials(self.ca_file.read_bytes(), key, chain)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca()
    cert_file, key_file = server_cert(ca).write(tmp_path, "server")
    ca_file = tmp_path / "clients-ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    identities = tmp_path / "identities.json"
    identities.write_text(
        json.dumps(
            {
                DEPLOYER: {
                    "principal": "PRINCIPAL_SERVICE_ACCOUNT",
                    "subject": str(DEPLOYER_SUBJECT),
                    "grants": ["secrets:read"],
                },
                WORKSPACE: {"principal": "PRINCIPAL_USER", "subject": str(uuid4())},
            }
        )
    )
    return Pki(tmp_path, ca, cert_file, key_file, ca_file, identities)


def _wire(
    name: str, running: Running, pki: Pki, key: str | None, client: tuple[Path, Path] | None = None
) -> Wire:
    if name == "grpc":
        return GrpcWire(str(running.grpc), key, tls=pki.grpc_credentials(client))
    return ConnectWire(
        running.http_url, name.removeprefix("connect-"), credential=key, tls=pki.http_context(client)
    )


@pytest.fixture
async def tls_running(
    core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str, pki: Pki
) -> AsyncIterator[Running]:
    tls = TlsSettings(pki.cert_file, pki.key_file)
    async with serving(core, api_keys, database_dsn, tls=tls) as running:
        yield running


@pytest.fixture
async def mtls_running(
    request: pytest.FixtureRequest, core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str, pki: Pki
) -> AsyncIterator[Running]:
    """Client certificates required, or as the test asks (indirect: "optional")."""
    mode = getattr(request, "param", "require")
    tls = TlsSettings(pki.cert_file, pki.key_file, pki.ca_file, mode, pki.identities_file)
    identities = ClientIdentities(pki.identities_file)
    async with serving(core, api_keys, database_dsn, tls=tls, identities=identities) as running:
        yield running


@pytest.mark.parametrize("name", WIRES)
async def test_every_wire_answers_the_same_over_tls(
    tls_running: Running, pki: Pki, admin_key: str, name: str
) -> None:
    assert tls_running.http_url.startswith("https://")
    wire = _wire(name, tls_running, pki, admin_key)
    try:  # every method, and a refusal
        request = create_request()
        token = await create(wire, request)
        assert (await get(wire, token.id)).host == request.host
        assert [t.id for t in (await list_page(wire, runner_id=request.runner_id)).tokens] == [token.id]
        renewed = secret("gho_")
        await update(wire, token.id, token=renewed)
        assert (await get_value(wire, token.id)).token == renewed
        await delete(wire, token.id)
        with pytest.raises(RpcError) as gone:
            await get(wire, token.id)
        assert gone.value.code == "not_found"
        with pytest.raises(RpcError) as refused:
            await get_value(wire, "not-a-uuid")
        assert refused.value.code == "invalid_argument"
    finally:
        await wire.close()  # type: ignore[attr-defined]


def _handshake(port: int, pki: Pki, alpn: list[str]) -> tuple[int, str | None, str | None]:
    """The serial of the certificate the port presents, the protocol ALPN
    agreed, and the TLS version."""
    context = pki.http_context()
    context.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number, tls.selected_alpn_protocol(), tls.version()


async def test_http2_by_alpn_http1_still_served_and_tls_1_2_the_least(tls_running: Running, pki: Pki) -> None:
    port = tls_running.http.port
    _, h2, _ = await asyncio.to_thread(_handshake, port, pki, ["h2", "http/1.1"])
    _, h1, _ = await asyncio.to_thread(_handshake, port, pki, ["http/1.1"])
    assert (h2, h1) == ("h2", "http/1.1")
    for tls_port in (port, tls_running.grpc.port):
        assert await asyncio.to_thread(_version_agreed, tls_port, pki, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        with pytest.raises(ssl.SSLError):  # the client offers 1.1 at most (and allows it: SECLEVEL=0)
            await asyncio.to_thread(_version_agreed, tls_port, pki, ssl.TLSVersion.TLSv1_1)


def _version_agreed(port: int, pki: Pki, at_most: ssl.TLSVersion) -> str | None:
    context = pki.http_context()
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = at_most
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


async def test_a_certificate_renewed_on_disk_is_served_without_a_restart(
    tls_running: Running, pki: Pki, admin_key: str
) -> None:
    ports = {"http": tls_running.http.port, "grpc": tls_running.grpc.port}
    before = {k: (await asyncio.to_thread(_handshake, p, pki, ["h2"]))[0] for k, p in ports.items()}
    assert len(set(before.values())) == 1
    open_wires = [_wire(n, tls_running, pki, admin_key) for n in WIRES]
    for wire in open_wires:
        await create(wire)  # connections made with the old certificate
    renewed = server_cert(pki.ca, serial=before["http"] + 1)
    # As cert-manager does: the new pair written beside, then moved into place.
    cert_new, key_new = renewed.write(pki.folder, "renewed")
    os.replace(key_new, pki.key_file)
    os.replace(cert_new, pki.cert_file)
    deadline = time.monotonic() + 5
    after: dict[str, int] = {}
    while time.monotonic() < deadline:
        after = {k: (await asyncio.to_thread(_handshake, p, pki, ["h2"]))[0] for k, p in ports.items()}
        if set(after.values()) == {renewed.cert.serial_number}:
            break
        await asyncio.sleep(0.2)
    assert after == {"http": renewed.cert.serial_number, "grpc": renewed.cert.serial_number}
    for wire in open_wires:  # the connections open before the swap still serve
        await create(wire)
        await wire.close()  # type: ignore[attr-defined]
    for name in WIRES:  # and new ones, on the new certificate
        fresh = _wire(name, tls_running, pki, admin_key)
        await create(fresh)
        await fresh.close()  # type: ignore[attr-defined]


async def test_a_plaintext_client_against_the_tls_ports_fails_cleanly(
    tls_running: Running, pki: Pki, admin_key: str
) -> None:
    plain_url = tls_running.http_url.replace("https://", "http://")
    async with httpx.AsyncClient(base_url=plain_url, timeout=5) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.post(
                "/gitpod.v1.RunnerConfigurationService/GetHostAuthenticationToken",
                content=b"{}",
                headers={"content-type": "application/json"},
            )
    plain_grpc = GrpcWire(str(tls_running.grpc), admin_key)
    with pytest.raises(RpcError) as refused:
        await plain_grpc.call(
            "GetHostAuthenticationToken",
            pb.GetHostAuthenticationTokenRequest(id=str(uuid4())),
            pb.GetHostAuthenticationTokenResponse,
            timeout_s=5,
        )
    assert refused.value.code == "unavailable"
    await plain_grpc.close()
    for name in WIRES:  # the ports still serve TLS clients
        wire = _wire(name, tls_running, pki, admin_key)
        await create(wire)
        await wire.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("port_kind", ["http", "grpc"])
async def test_buf_curl_with_cacert_calls_both_ports(
    tls_running: Running, pki: Pki, admin_key: str, port_kind: str
) -> None:
    token_id = (await create(_wire("grpc", tls_running, pki, admin_key))).id
    url, extra = (
        (f"https://127.0.0.1:{tls_running.http.port}", ["--schema", "proto"])
        if port_kind == "http"
        else (f"https://127.0.0.1:{tls_running.grpc.port}", ["--protocol", "grpc"])
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(ROOT / ".venv/bin/buf"),
            "curl",
            *extra,
            "--cacert",
            str(pki.ca_file),
            "-H",
            f"Authorization: Bearer {admin_key}",
            "--data",
            json.dumps({"id": token_id}),
            f"{url}/gitpod.v1.RunnerConfigurationService/GetHostAuthenticationToken",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["token"]["id"] == token_id


async def _audited_credential(database_dsn: str, token_id: str) -> list[str]:
    conn = await asyncpg.connect(database_dsn)
    try:
        rows = await conn.fetch(
            "SELECT credential_id FROM audit_events WHERE token_id = $1 ORDER BY at", UUID(token_id)
        )
    finally:
        await conn.close()
    return [r["credential_id"] for r in rows]


@pytest.mark.parametrize("name", WIRES)
async def test_a_mapped_client_certificate_is_a_credential_under_the_policy(
    mtls_running: Running, pki: Pki, database_dsn: str, name: str
) -> None:
    deployer = _wire(name, mtls_running, pki, None, pki.client(DEPLOYER))
    user = _wire(name, mtls_running, pki, None, pki.client(WORKSPACE))
    try:
        request = create_request()
        token = await create(deployer, request)
        assert (await get_value(deployer, token.id)).token == request.token  # secrets:read granted
        with pytest.raises(RpcError) as denied:
            await get_value(user, token.id)  # a user never reads secrets (the policy table)
        assert denied.value.code in ("permission_denied", "not_found")
        audited = await _audited_credential(database_dsn, token.id)
        assert audited[:2] == [f"x509:{DEPLOYER}", f"x509:{DEPLOYER}"]
        assert f"x509:{WORKSPACE}" in audited
    finally:
        for wire in (deployer, user):
            await wire.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", WIRES)
async def test_an_unmapped_certificate_is_unauthenticated(mtls_running: Running, pki: Pki, name: str) -> None:
    wire = _wire(name, mtls_running, pki, None, pki.client(UNMAPPED))
    try:
        with pytest.raises(RpcError) as refused:
            await create(wire)
        assert refused.value.code == "unauthenticated"
        assert UNMAPPED in refused.value.message
    finally:
        await wire.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", WIRES)
@pytest.mark.parametrize("case", ["no certificate", "another CA", "expired"])
async def test_certificates_that_cannot_be_trusted_are_refused_in_the_handshake(
    mtls_running: Running, pki: Pki, admin_key: str, name: str, case: str
) -> None:
    client = {
        "no certificate": None,
        "another CA": pki.client(DEPLOYER, ca=make_ca("another CA")),
        "expired": pki.client(DEPLOYER, expired=True),
    }[case]
    wire = _wire(name, mtls_running, pki, admin_key, client)  # even with a valid API key
    try:
        if name == "grpc":
            with pytest.raises(RpcError) as refused:
                await create(wire)
            assert refused.value.code == "unavailable"  # no connection is made
        else:
            with pytest.raises(httpx.HTTPError):
                await create(wire)
        trusted = _wire(name, mtls_running, pki, admin_key, pki.client(DEPLOYER))
        await create(trusted)  # the port serves: the refusal was the certificate's
        await trusted.close()  # type: ignore[attr-defined]
    finally:
        await wire.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("mtls_running", ["optional"], indirect=True)
@pytest.mark.parametrize("name", WIRES)
async def test_optional_client_certificates_take_either_credential_and_trust_only_the_ca(
    mtls_running: Running, pki: Pki, admin_key: str, name: str
) -> None:
    running = mtls_running
    by_key = _wire(name, running, pki, admin_key)
    by_certificate = _wire(name, running, pki, None, pki.client(DEPLOYER))
    forged = _wire(name, running, pki, None, pki.client(DEPLOYER, ca=make_ca("another CA")))
    try:
        await create(by_key)  # no certificate: the API key is the credential
        if name == "grpc":
            # grpcio asks for a client certificate only when it requires one:
            # on this port the credential is the API key or JWT alone.
            for wire in (by_certificate, forged):
                with pytest.raises(RpcError) as refused:
                    await create(wire)
                assert refused.value.code == "unauthenticated"
                assert refused.value.message.startswith("missing credential")
            return
        await create(by_certificate)
        with pytest.raises(httpx.HTTPError):
            await create(forged)  # the same identity from another CA: refused in the handshake
    finally:
        for wire in (by_key, by_certificate, forged):
            await wire.close()  # type: ignore[attr-defined]
