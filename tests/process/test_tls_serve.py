"""`hostauth serve` with TLS as an operator starts it: workers sharing both
TLS ports on every address (no plaintext refusal then), health over TLS,
calls on both wires; and certificate files that cannot be used stop the
start with one line."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx

from gitpod.v1 import runner_configuration_pb2 as pb
from tests.support.certs import make_ca, server_cert
from tests.support.db import create_database
from tests.support.processes import failed_start, free_port, start_server, wait_serving
from tests.support.requests import create_request
from tests.support.serving import TEST_KEYRING_JSON, service_account_key
from tests.support.wire import ConnectWire, GrpcWire, Wire


async def test_serve_with_tls_on_every_address_serves_both_wires(admin_dsn: str, log_dir: Path) -> None:
    ca = make_ca()
    cert, key = server_cert(ca).write(log_dir, "server")
    ca_file = log_dir / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    dsn = await create_database(admin_dsn)
    http_port, grpc_port = free_port(), free_port()
    env = {
        "DATABASE_URL": dsn,
        "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
        "HOSTAUTH_TLS_CERT_FILE": str(cert),
        "HOSTAUTH_TLS_KEY_FILE": str(key),
        "HOSTAUTH_HTTP_ADDR": f":{http_port}",  # every address: allowed, since TLS is on
        "HOSTAUTH_GRPC_ADDR": f"0.0.0.0:{grpc_port}",
    }
    server = start_server(log_dir, env, args=("--workers", "2"), ports=(http_port, grpc_port))
    credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
    try:
        await wait_serving(server, tls=credentials)
        api_key = await service_account_key(dsn)
        verify = httpx.create_ssl_context(verify=str(ca_file))
        url = f"https://127.0.0.1:{http_port}"
        async with httpx.AsyncClient(base_url=url, verify=verify) as http:
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()["ready"]) == (200, True)
        for _ in range(3):  # new connections: either worker's TLS front
            wires: list[Wire] = [
                GrpcWire(f"127.0.0.1:{grpc_port}", api_key, tls=credentials),
                ConnectWire(url, "proto", credential=api_key, tls=verify),
                ConnectWire(url, "json", credential=api_key, tls=verify),
            ]
            for wire in wires:
                answer = await wire.call(
                    "CreateHostAuthenticationToken",
                    create_request(),
                    pb.CreateHostAuthenticationTokenResponse,
                )
                assert answer.token.id
                await wire.close()  # type: ignore[attr-defined]
    finally:
        log = server.stop()
    assert "serving Connect on https://" in log
    assert "Traceback" not in log


async def test_certificate_files_that_cannot_be_used_stop_the_start_with_one_line(tmp_path: Path) -> None:
    ca = make_ca()
    cert, _ = server_cert(ca).write(tmp_path, "a")
    _, other_key = server_cert(ca).write(tmp_path, "b")
    for cert_file, key_file, reason in (
        (tmp_path / "missing.pem", other_key, "missing.pem: No such file or directory"),
        (cert, other_key, "not usable"),
    ):
        line = await failed_start(
            {
                "DATABASE_URL": "postgresql://127.0.0.1:1/x",
                "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
                "HOSTAUTH_TLS_CERT_FILE": str(cert_file),
                "HOSTAUTH_TLS_KEY_FILE": str(key_file),
            },
            status=2,
        )
        assert line.startswith("hostauth: ")
        assert reason in line


async def test_plaintext_beyond_loopback_when_allowed_serves_with_a_warning(
    admin_dsn: str, log_dir: Path
) -> None:
    dsn = await create_database(admin_dsn)
    http_port, grpc_port = free_port(), free_port()
    env = {
        "DATABASE_URL": dsn,
        "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
        "HOSTAUTH_HTTP_ADDR": f"0.0.0.0:{http_port}",
        "HOSTAUTH_GRPC_ADDR": f":{grpc_port}",
        "HOSTAUTH_ALLOW_PLAINTEXT": "true",
    }
    server = start_server(log_dir, env, args=("--workers", "1"), ports=(http_port, grpc_port))
    try:
        await wait_serving(server)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            assert (await http.get("/readyz")).status_code == 200
    finally:
        log = server.stop()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, log
    assert "serving plaintext beyond loopback (HOSTAUTH_ALLOW_PLAINTEXT)" in warnings[0]
