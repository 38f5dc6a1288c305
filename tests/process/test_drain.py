"""A stop as a load balancer sees it: with HOSTAUTH_DRAIN_DELAY_S, SIGTERM
turns readiness and gRPC health to not serving at once while calls are still
served for the delay; then the service stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.transport.grpc import SERVICE_NAME
from tests.support.db import create_database
from tests.support.processes import start_server, wait_serving
from tests.support.requests import create_request
from tests.support.serving import TEST_KEYRING_JSON, service_account_key
from tests.support.wire import Wire, wires_of

DELAY_S = 3.0


async def _health(channel: grpc.aio.Channel) -> set[int]:
    stub = health_pb2_grpc.HealthStub(channel)
    return {
        (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)).status
        for name in ("", SERVICE_NAME)
    }


async def _creates(wire: Wire) -> None:
    answer = await wire.call(
        "CreateHostAuthenticationToken", create_request(), pb.CreateHostAuthenticationTokenResponse
    )
    assert answer.token.id


async def test_sigterm_says_not_ready_at_once_and_serves_through_the_drain_delay(
    admin_dsn: str, log_dir: Path
) -> None:
    dsn = await create_database(admin_dsn)
    env = {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON, "HOSTAUTH_DRAIN_DELAY_S": str(DELAY_S)}
    server = start_server(log_dir, env, args=("--workers", "2"))
    try:
        await wait_serving(server)
        key = await service_account_key(dsn)
        url = f"http://127.0.0.1:{server.http_port}"
        wires = wires_of(server, key)
        async with (
            httpx.AsyncClient(base_url=url) as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel,
        ):
            assert (await http.get("/readyz")).status_code == 200
            assert await _health(channel) == {health_pb2.HealthCheckResponse.SERVING}
            server.proc.send_signal(signal.SIGTERM)
            asked = time.monotonic()
            while (await http.get("/readyz")).status_code != 503:  # both workers, on new connections
                assert time.monotonic() - asked < 1.5, "still ready after SIGTERM"
                await asyncio.sleep(0.05)
            for _ in range(6):  # new connections reach either worker
                async with httpx.AsyncClient(base_url=url) as fresh:
                    answer = await fresh.get("/readyz")
                assert answer.status_code == 503
                assert answer.json()["failed"] == ["drain"]
                assert answer.json()["checks"]["drain"] == "draining"
            assert await _health(channel) == {health_pb2.HealthCheckResponse.NOT_SERVING}
            for wire in wires:  # still served, on every wire
                await _creates(wire)
            assert time.monotonic() - asked < DELAY_S
        for wire in wires:
            await wire.close()  # type: ignore[attr-defined]
        status = await asyncio.to_thread(server.proc.wait, 30)
        took = time.monotonic() - asked
        assert status == 0, server.log.read_text()
        assert DELAY_S <= took < DELAY_S + 5
        assert "draining: not ready, still serving for 3 s" in server.log.read_text()
    finally:
        server.stop()
