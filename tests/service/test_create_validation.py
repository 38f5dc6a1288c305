"""Every validation rule of Create, one case each, on every wire."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from tests.support.requests import create_request
from tests.support.wire import ConnectWire, RpcError, Wire, connect_error

CREATE = "CreateHostAuthenticationToken"
Response = pb.CreateHostAuthenticationTokenResponse

# (case id, request overrides, the violation the answer must name)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("runner_id missing", {"runner_id": ""}, "runner_id: value is required"),
    ("runner_id not a uuid", {"runner_id": "runner-1"}, "runner_id: value must be a valid UUID"),
    ("user_id not a uuid", {"subject": None, "user_id": "alice"}, "user_id: value must be a valid UUID"),
    ("host empty", {"host": ""}, "host: value length must be at least 1 characters"),
    ("host too long", {"host": "h" * 513}, "host: value length must be at most 512 characters"),
    ("host with NUL", {"host": "git\x00hub.com"}, "host: value must not contain NUL characters"),
    ("token empty", {"token": ""}, "token: value length must be at least 1 characters"),
    ("source undefined", {"source": 7}, "source: value must be one of the defined enum values"),
    ("integration_id not a uuid", {"integration_id": "x"}, "integration_id: value must be a valid UUID"),
    # A regex ending in `$` lets a trailing newline through, and uuid.UUID then raised.
    (
        "runner_id with a trailing newline",
        {"runner_id": f"{uuid4()}\n"},
        "runner_id: value must be a valid UUID",
    ),
    (
        "user_id with a trailing newline",
        {"subject": None, "user_id": f"{uuid4()}\n"},
        "user_id: value must be a valid UUID",
    ),
    (
        "integration_id with a trailing newline",
        {"integration_id": f"{uuid4()}\n"},
        "integration_id: value must be a valid UUID",
    ),
    (
        "subject.id with a trailing newline",
        {"subject": identity_pb2.Subject(id=f"{uuid4()}\n", principal=identity_pb2.PRINCIPAL_USER)},
        "subject.id: value must be a valid UUID",
    ),
    (
        "102 scopes",
        {"scopes": [f"s{i}" for i in range(102)]},
        "scopes: value must contain no more than 101 item(s)",
    ),
    ("scope with NUL", {"scopes": ["repo", "a\x00b"]}, "scopes[1]: value must not contain NUL characters"),
    (
        "subject.id not a uuid",
        {"subject": identity_pb2.Subject(id="bob", principal=identity_pb2.PRINCIPAL_USER)},
        "subject.id: value must be a valid UUID",
    ),
    (
        "subject.principal undefined",
        {"subject": identity_pb2.Subject(id=str(uuid4()), principal=99)},  # type: ignore[arg-type]
        "subject.principal: value must be one of the defined enum values",
    ),
    (
        "user_id and subject differ",
        {"user_id": str(uuid4())},
        "user_id: value must be empty or equal subject.id when both are set",
    ),
]


async def expect_invalid(wire: Wire, req: pb.CreateHostAuthenticationTokenRequest) -> str:
    with pytest.raises(RpcError) as caught:
        await wire.call(CREATE, req, Response)
    assert caught.value.code == "invalid_argument", caught.value
    return caught.value.message


@pytest.mark.parametrize(("overrides", "violation"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_each_rule(wire: Wire, overrides: dict[str, Any], violation: str) -> None:
    req = create_request(**overrides)
    message = await expect_invalid(wire, req)
    assert message == violation
    if req.token:
        assert req.token not in message


async def test_all_violations_come_back_together(wire: Wire) -> None:
    req = create_request(runner_id="nope", host="", token="", scopes=[str(i) for i in range(102)])
    message = await expect_invalid(wire, req)
    assert message.split("; ") == [
        "runner_id: value must be a valid UUID",
        "host: value length must be at least 1 characters",
        "token: value length must be at least 1 characters",
        "scopes: value must contain no more than 101 item(s)",
    ]


async def test_101_scopes_are_allowed(wire: Wire) -> None:
    scopes = [f"s{i}" for i in range(101)]
    token = (await wire.call(CREATE, create_request(scopes=scopes), Response)).token
    assert list(token.scopes) == scopes


async def test_empty_subject_counts_as_unset(wire: Wire) -> None:
    user = str(uuid4())
    token = (
        await wire.call(CREATE, create_request(subject=identity_pb2.Subject(), user_id=user), Response)
    ).token
    assert token.subject.id == user
    assert token.subject.principal == identity_pb2.PRINCIPAL_USER


async def test_expires_at_out_of_range(wire: Wire) -> None:
    if isinstance(wire, ConnectWire) and wire.encoding == "json":
        # JSON cannot carry an out-of-range Timestamp: the year 10000 is the
        # nearest thing a JSON client can send.
        body = {
            "runnerId": str(uuid4()),
            "host": "github.com",
            "token": "t",
            "expiresAt": "10000-01-01T00:00:00Z",
        }
        response = await wire.post(CREATE, json.dumps(body).encode(), {"content-type": "application/json"})
        error = connect_error(response)
        assert error.code == "invalid_argument"
        assert "expiresAt" in error.message
        return
    req = create_request(expires_at=Timestamp(seconds=253402300800))
    assert await expect_invalid(wire, req) == "expires_at: value must be a valid timestamp"
