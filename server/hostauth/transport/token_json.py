"""The protobuf JSON mapping of the token-carrying responses, written directly.

json_format.MessageToDict walks descriptors in pure Python, which made it
about half of a List's CPU over Connect JSON. A token's fields are few and
fixed, so this builds the same dict field by field.
The field sets are checked against the descriptors at import, so a field added
to the protos fails here, loudly, instead of going missing from the JSON; the
tests compare the output with json_format's on many messages.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from gitpod.v1 import identity_pb2, pagination_pb2
from gitpod.v1 import runner_configuration_pb2 as pb


def _expect_fields(message_type: type[Message], names: set[str]) -> None:
    descriptor = message_type.DESCRIPTOR
    found = {field.name for field in descriptor.fields}
    if found != names:
        raise RuntimeError(
            f"{descriptor.full_name} has fields {sorted(found)}, server/hostauth/transport/token_json.py "
            f"knows {sorted(names)}: update it with the proto"
        )


_expect_fields(
    pb.HostAuthenticationToken,
    {"id", "runner_id", "user_id", "host", "source", "expires_at", "integration_id", "scopes", "subject"},
)
_expect_fields(identity_pb2.Subject, {"id", "principal"})
_expect_fields(pagination_pb2.PaginationResponse, {"next_token"})
_expect_fields(pb.ListHostAuthenticationTokensResponse, {"pagination", "tokens"})
_expect_fields(pb.GetHostAuthenticationTokenResponse, {"token"})
_expect_fields(pb.CreateHostAuthenticationTokenResponse, {"token"})

# Enums are written by name; a number without a name stays a number.
_SOURCE = {v.number: v.name for v in pb.HostAuthenticationTokenSource.DESCRIPTOR.values}
_PRINCIPAL = {v.number: v.name for v in identity_pb2.Principal.DESCRIPTOR.values}


def token_dict(token: pb.HostAuthenticationToken) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if token.id:
        out["id"] = token.id
    if token.runner_id:
        out["runnerId"] = token.runner_id
    if token.user_id:
        out["userId"] = token.user_id
    if token.host:
        out["host"] = token.host
    if token.source:
        out["source"] = _SOURCE.get(token.source, token.source)
    if token.HasField("expires_at"):
        out["expiresAt"] = token.expires_at.ToJsonString()
    if token.integration_id:
        out["integrationId"] = token.integration_id
    if token.scopes:
        out["scopes"] = list(token.scopes)
    if token.HasField("subject"):
        subject: dict[str, Any] = {}
        if token.subject.id:
            subject["id"] = token.subject.id
        if token.subject.principal:
            subject["principal"] = _PRINCIPAL.get(token.subject.principal, token.subject.principal)
        out["subject"] = subject
    return out


def response_dict(message: Message) -> dict[str, Any] | None:
    """The JSON object of a response that carries tokens; None for any other
    message (json_format writes those)."""
    if isinstance(message, pb.ListHostAuthenticationTokensResponse):
        out: dict[str, Any] = {}
        if message.HasField("pagination"):
            next_token = message.pagination.next_token
            out["pagination"] = {"nextToken": next_token} if next_token else {}
        if message.tokens:
            out["tokens"] = [token_dict(token) for token in message.tokens]
        return out
    if isinstance(message, pb.GetHostAuthenticationTokenResponse | pb.CreateHostAuthenticationTokenResponse):
        return {"token": token_dict(message.token)} if message.HasField("token") else {}
    return None
