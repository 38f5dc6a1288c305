"""Health that tells the truth: /healthz and /readyz on the HTTP port
(unauthenticated, GET and HEAD) and gRPC health, for the whole server and
per service, through a database outage and back."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hostauth.crypto import Sealer
from hostauth.runtime.serve import Running
from hostauth.transport.grpc import SERVICE_NAME
from tests.support.db import create_database
from tests.support.jwts import Issuer
from tests.support.own_postgres import own_postgres, served_with_jwt
from tests.support.wire import ConnectWire, GrpcWire

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _grpc_health(target: str) -> dict[str, int]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        found = {}
        for name in ("", SERVICE_NAME):
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            found[name] = answer.status
        return found


async def test_healthz_and_readyz_answer_without_a_credential(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.http_url) as http:
        alive = await http.get("/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "serving"})
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.headers["content-type"] == "application/json"
        assert ready.headers["cache-control"] == "no-store"
        assert ready.json() == {"ready": True, "checks": {"database": "ok", "keys": "ok", "drain": "ok"}}
        head = await http.head("/readyz")
        assert (head.status_code, head.content) == (200, b"")
        assert int(head.headers["content-length"]) == len(ready.content)
        posted = await http.post("/readyz", content=b"{}")
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET, HEAD"
    assert await _grpc_health(str(running.grpc)) == {"": SERVING, SERVICE_NAME: SERVING}


async def _until(check: object, want: object, within_s: float = 10) -> float:
    """Seconds until check() (async) answers want."""
    start = time.monotonic()
    while (got := await check()) != want:  # type: ignore[operator]
        assert time.monotonic() - start < within_s, f"still {got!r}, not {want!r}"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.usefixtures("no_secret_in_any_log")
async def test_readiness_and_grpc_health_follow_the_database_out_and_back(
    sealer: Sealer, jwt_issuer: Issuer
) -> None:
    with own_postgres() as pg:
        dsn = await create_database(pg.dsn)
        async with served_with_jwt(dsn, sealer, jwt_issuer, timeout_s=2.0) as wires:
            grpc_target = wires[0].target if isinstance(wires[0], GrpcWire) else ""
            http_url = wires[1].base_url if isinstance(wires[1], ConnectWire) else ""
            async with httpx.AsyncClient(base_url=http_url) as http:

                async def readyz() -> tuple[int, object]:
                    answer = await http.get("/readyz")
                    return answer.status_code, answer.json().get("failed")

                async def grpc_health() -> dict[str, int]:
                    return await _grpc_health(grpc_target)

                assert await readyz() == (200, None)
                pg.stop(keep_address=True)
                took = await _until(readyz, (503, ["database"]))
                assert took < 5  # a probe a second, each bounded by the database timeout
                await _until(grpc_health, {"": NOT_SERVING, SERVICE_NAME: NOT_SERVING})
                alive = await http.get("/healthz")
                assert alive.status_code == 200  # the process still serves: no restart wanted
                body = (await http.get("/readyz")).json()
                assert body["checks"] == {"database": "unavailable", "keys": "ok", "drain": "ok"}
                pg.start()
                await _until(readyz, (200, None))
                await _until(grpc_health, {"": SERVING, SERVICE_NAME: SERVING})
