"""/metrics as an operator scrapes it: one scrape of a two-worker service
counts every call of every method on every wire exactly, refusals under
their code, with each worker's process metrics and the build info; a
worker's counts outlive it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.core.policy import READ_SECRETS
from hostauth.telemetry.calls import SERVICE
from tests.support.db import create_database
from tests.support.processes import failed_start, start_server, wait_serving
from tests.support.requests import create_request, secret
from tests.support.scrape import Samples, matching, scrape, scrape_until, value
from tests.support.sensitive import leaks
from tests.support.serving import TEST_KEYRING_JSON, service_account_key
from tests.support.wire import RpcError, Wire, wires_of

N = 3
METHODS = (
    "CreateHostAuthenticationToken",
    "GetHostAuthenticationToken",
    "ListHostAuthenticationTokens",
    "UpdateHostAuthenticationToken",
    "GetHostAuthenticationTokenValue",
    "DeleteHostAuthenticationToken",
)
TRANSPORTS = {"grpc": "grpc", "connect-json": "connect_json", "connect-proto": "connect_proto"}


async def _every_method(wire: Wire) -> None:
    """Each method once, each answered OK."""
    runner = str(uuid4())
    created = await wire.call(
        "CreateHostAuthenticationToken",
        create_request(runner_id=runner),
        pb.CreateHostAuthenticationTokenResponse,
    )
    token_id = created.token.id
    await wire.call(
        "GetHostAuthenticationToken",
        pb.GetHostAuthenticationTokenRequest(id=token_id),
        pb.GetHostAuthenticationTokenResponse,
    )
    listing = pb.ListHostAuthenticationTokensRequest()
    listing.filter.runner_id = runner
    await wire.call("ListHostAuthenticationTokens", listing, pb.ListHostAuthenticationTokensResponse)
    await wire.call(
        "UpdateHostAuthenticationToken",
        pb.UpdateHostAuthenticationTokenRequest(id=token_id, token=secret("gho_")),
        pb.UpdateHostAuthenticationTokenResponse,
    )
    await wire.call(
        "GetHostAuthenticationTokenValue",
        pb.GetHostAuthenticationTokenValueRequest(id=token_id),
        pb.GetHostAuthenticationTokenValueResponse,
    )
    await wire.call(
        "DeleteHostAuthenticationToken",
        pb.DeleteHostAuthenticationTokenRequest(id=token_id),
        pb.DeleteHostAuthenticationTokenResponse,
    )


async def _refused(wire: Wire, method: str, request: pb.GetHostAuthenticationTokenRequest, code: str) -> None:
    with pytest.raises(RpcError) as refused:
        await wire.call(method, request, pb.GetHostAuthenticationTokenResponse)
    assert refused.value.code == code


def _handled(samples: Samples, method: str, transport: str, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_type": "unary", "transport": transport}
    return value(samples, "grpc_server_handled_total", **labels, grpc_code=code)


async def test_one_scrape_counts_every_call_of_every_worker_exactly(admin_dsn: str, log_dir: Path) -> None:
    dsn = await create_database(admin_dsn)
    server = start_server(
        log_dir, {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON}, args=("--workers", "2")
    )
    try:
        await wait_serving(server)
        key = await service_account_key(dsn, READ_SECRETS)
        missing = pb.GetHostAuthenticationTokenRequest(id=str(uuid4()))
        for _ in range(N):  # new connections each round: the kernel spreads them over the workers
            for wire, nobody in zip(wires_of(server, key), wires_of(server, None), strict=True):
                await _every_method(wire)
                await _refused(wire, "GetHostAuthenticationToken", missing, "not_found")
                await _refused(nobody, "GetHostAuthenticationToken", missing, "unauthenticated")
        # A body that does not decode is refused before the service sees it, and still counted.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
            for encoding, body in (("json", b"{not json"), ("proto", b"\xff\xff\xff")):
                answer = await http.post(
                    f"/{SERVICE}/GetHostAuthenticationToken",
                    content=body,
                    headers={"content-type": f"application/{encoding}"},
                )
                assert answer.status_code == 400, answer.text
            # A path the service does not have is not a label.
            assert (
                await http.post(
                    f"/{SERVICE}/NoSuchMethod", content=b"{}", headers={"content-type": "application/json"}
                )
            ).status_code == 404

        total = 3 * N * (len(METHODS) + 2) + 2

        def all_counted(samples: Samples) -> bool:
            return sum(matching(samples, "grpc_server_handled_total").values()) >= total

        samples = await scrape_until(server.metrics_port, all_counted)
        for transport in TRANSPORTS.values():
            for method in METHODS:
                assert _handled(samples, method, transport, "OK") == N, (method, transport)
                labels = {
                    "grpc_service": SERVICE,
                    "grpc_method": method,
                    "grpc_type": "unary",
                    "transport": transport,
                }
                assert value(samples, "grpc_server_handling_seconds_count", **labels) >= N
            get = "GetHostAuthenticationToken"
            assert _handled(samples, get, transport, "NotFound") == N, transport
            assert _handled(samples, get, transport, "Unauthenticated") == N, transport
        for transport in ("connect_json", "connect_proto"):
            assert _handled(samples, "GetHostAuthenticationToken", transport, "InvalidArgument") == 1, (
                transport
            )
        started = sum(matching(samples, "grpc_server_started_total").values())
        handled = sum(matching(samples, "grpc_server_handled_total").values())
        assert started == handled == total
        assert not any(
            "NoSuchMethod" in str(labels) for labels in matching(samples, "grpc_server_handled_total")
        )
        assert value(samples, "hostauth_secret_reads_total", outcome="served") == 3 * N
        assert value(samples, "hostauth_db_batch_size_count", statement="insert") >= 1
        assert value(samples, "hostauth_database_up") == 1
        assert value(samples, "hostauth_encryption_keys", state="primary") == 1
        assert 0 < value(samples, "hostauth_primary_key_age_seconds") < 3600  # registered by this start
        workers = {dict(labels)["worker"] for labels in matching(samples, "process_resident_memory_bytes")}
        assert workers == {"supervisor", "0", "1"}
        (build,) = matching(samples, "hostauth_build_info")
        assert dict(build)["version"]
        text = (await httpx.AsyncClient().get(f"http://127.0.0.1:{server.metrics_port}/metrics")).text
        assert not leaks(text), leaks(text)
        assert key not in text
    finally:
        server.stop()


async def test_a_worker_killed_keeps_its_counts_and_its_gauges_leave(admin_dsn: str, log_dir: Path) -> None:
    dsn = await create_database(admin_dsn)
    server = start_server(
        log_dir, {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON}, args=("--workers", "2")
    )
    try:
        await wait_serving(server)
        key = await service_account_key(dsn)
        for _ in range(4):
            (wire,) = wires_of(server, key)[:1]
            await wire.call(
                "CreateHostAuthenticationToken", create_request(), pb.CreateHostAuthenticationTokenResponse
            )
        create = "CreateHostAuthenticationToken"

        def written(samples: Samples) -> bool:
            return _handled(samples, create, "grpc", "OK") >= 4

        before = _handled(await scrape_until(server.metrics_port, written), create, "grpc", "OK")
        assert before == 4
        started = re.search(r"started 2 worker\(s\): (\d+), (\d+)", server.log.read_text())
        assert started, server.log.read_text()
        os.kill(int(started.group(1)), signal.SIGKILL)
        for _ in range(300):
            if "; started worker" in server.log.read_text():
                break
            await asyncio.sleep(0.1)
        await wait_serving(server)
        samples = await scrape(server.metrics_port)
        assert _handled(samples, create, "grpc", "OK") == before  # no counter reset
        workers = {dict(labels)["worker"] for labels in matching(samples, "process_resident_memory_bytes")}
        assert workers == {"supervisor", "0", "1"}  # the replacement in its place
    finally:
        server.stop()


async def test_a_taken_metrics_port_stops_the_start_with_one_line_before_any_database() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",  # never reached
            "HOSTAUTH_KEYRING": TEST_KEYRING_JSON,
            "HOSTAUTH_METRICS_ADDR": f"127.0.0.1:{port}",
            "HOSTAUTH_WORKERS": "2",
        }
        line = await failed_start(env, 1)
    assert line == f"hostauth: cannot listen on 127.0.0.1:{port} (metrics): Address already in use"
