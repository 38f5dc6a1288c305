"""What existing clients send, byte for byte, and the methods not built yet."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from hostauth.runtime.serve import Running
from tests.support.sensitive import remember
from tests.support.wire import Wire, connect_error

CREATE = "CreateHostAuthenticationToken"


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        ("2024-12-31T23:59:59+00:00", "2024-12-31T23:59:59Z"),
        ("2024-12-31T23:59:59.5+00:00", "2024-12-31T23:59:59.500Z"),
        ("2025-01-01T01:59:59+02:00", "2024-12-31T23:59:59Z"),
        ("2024-12-31T23:59:59Z", "2024-12-31T23:59:59Z"),
    ],
)
async def test_old_json_client_with_offset_timestamp(
    wires: dict[str, Wire], sent: str, answered: str
) -> None:
    """The older SDK: JSON, no Connect-Protocol-Version header, +00:00 offsets."""
    wire = wires["connect-json"]
    body = {
        "runnerId": str(uuid4()),
        "userId": str(uuid4()),
        "host": "github.com",
        "token": remember("gho_xxxxxxxxxxxx"),
        "source": "HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH",
        "expiresAt": sent,
        "refreshToken": remember("ghr_xxxxxxxxxxxx"),
    }
    response = await wire.post(CREATE, json.dumps(body).encode(), {"content-type": "application/json"})  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert token["expiresAt"] == answered
    assert token["userId"] == body["userId"]
    assert token["subject"] == {"id": body["userId"], "principal": "PRINCIPAL_USER"}
    assert "gho_" not in response.text
    assert "ghr_" not in response.text


async def test_json_error_body_and_status(wires: dict[str, Wire]) -> None:
    wire = wires["connect-json"]
    response = await wire.post(CREATE, b'{"host": "github.com"}', {"content-type": "application/json"})  # type: ignore[attr-defined]
    assert response.status_code == 400
    error = connect_error(response)
    assert error.code == "invalid_argument"
    assert error.message == "runner_id: value is required; token: value length must be at least 1 characters"
    assert "Traceback" not in response.text


async def test_grpc_health_reports_serving(running: Running) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(str(running.grpc)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "gitpod.v1.RunnerConfigurationService"):
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
