"""Builders of valid requests with fresh ids and secrets."""

from __future__ import annotations

import secrets
from typing import Any
from uuid import uuid4

from google.protobuf.timestamp_pb2 import Timestamp

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from tests.support.sensitive import remember

EXPIRES = Timestamp(seconds=1798761599, nanos=123456000)  # 2026-12-31T23:59:59.123456Z


def secret(prefix: str) -> str:
    return remember(prefix + secrets.token_hex(20))


def create_request(**overrides: Any) -> pb.CreateHostAuthenticationTokenRequest:
    fields: dict[str, Any] = {
        "runner_id": str(uuid4()),
        "host": "github.com",
        "token": secret("gho_"),
        "source": pb.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH,
        "expires_at": EXPIRES,
        "refresh_token": secret("ghr_"),
        "integration_id": None,
        "scopes": ["repo", "read:org"],
        "subject": identity_pb2.Subject(id=str(uuid4()), principal=identity_pb2.PRINCIPAL_USER),
    }
    fields.update(overrides)
    return pb.CreateHostAuthenticationTokenRequest(**{k: v for k, v in fields.items() if v is not None})
