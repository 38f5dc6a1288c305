"""The Connect JSON codec: the protobuf JSON mapping, written without
whitespace (server/hostauth/transport/codecs.py)."""

from __future__ import annotations

import json
import random
import uuid

import pytest
from google.protobuf.json_format import MessageToDict, MessageToJson, ParseError
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.transport.codecs import CompactJSONCodec


def test_json_is_the_protobuf_mapping_without_whitespace() -> None:
    token = pb.HostAuthenticationToken(
        id="0b5c7d1e-0000-4000-8000-000000000001",
        host="github.com",
        scopes=["repo", "read:org"],
        expires_at=Timestamp(seconds=1_900_000_000, nanos=5000),
    )
    message = pb.ListHostAuthenticationTokensResponse(tokens=[token, token])
    encoded = CompactJSONCodec[pb.ListHostAuthenticationTokensResponse]().encode(message)
    assert json.loads(encoded) == json.loads(MessageToJson(message))
    assert b" " not in encoded
    assert b"\n" not in encoded
    assert b'"expiresAt":"2030-03-17T17:46:40.000005Z"' in encoded


def test_unknown_json_fields_are_still_refused() -> None:
    codec = CompactJSONCodec[pb.GetHostAuthenticationTokenRequest](ignore_unknown_fields=False)
    assert codec.decode(b'{"id":"x"}', pb.GetHostAuthenticationTokenRequest).id == "x"
    with pytest.raises(ParseError, match="bogus"):
        codec.decode(b'{"id":"x","bogus":1}', pb.GetHostAuthenticationTokenRequest)


def _random_token(rng: random.Random) -> pb.HostAuthenticationToken:
    """A token with each field present or not, unknown enum numbers included."""
    token = pb.HostAuthenticationToken()
    for name in ("id", "runner_id", "user_id", "integration_id"):
        if rng.random() < 0.7:
            setattr(token, name, str(uuid.UUID(int=rng.getrandbits(128))))
    if rng.random() < 0.8:
        token.host = rng.choice(["github.com", "gitlab.example.com", "bücher.example", 'q"uote\\.example'])
    if rng.random() < 0.7:
        token.source = rng.choice([0, 1, 2, 7])  # type: ignore[assignment]
    if rng.random() < 0.6:
        token.expires_at.FromNanoseconds(
            rng.randrange(0, 4_000_000_000) * 10**9 + rng.choice([0, 5000, 123_456_789])
        )
    if rng.random() < 0.5:
        token.scopes.extend(rng.sample(["repo", "read:org", "write:packages", "ünïcode"], rng.randint(1, 3)))
    if rng.random() < 0.7:
        token.subject.SetInParent()
        if rng.random() < 0.8:
            token.subject.id = str(uuid.UUID(int=rng.getrandbits(128)))
        if rng.random() < 0.8:
            token.subject.principal = rng.choice([0, 1, 2, 3, 42])  # type: ignore[assignment]
    return token


def test_token_responses_map_to_json_exactly_as_json_format_does() -> None:
    rng = random.Random(6)
    codec = CompactJSONCodec[Message]()
    messages: list[Message] = [
        pb.ListHostAuthenticationTokensResponse(),
        pb.GetHostAuthenticationTokenResponse(),
        pb.CreateHostAuthenticationTokenResponse(token=pb.HostAuthenticationToken()),
    ]
    for _ in range(300):
        page = pb.ListHostAuthenticationTokensResponse(
            tokens=[_random_token(rng) for _ in range(rng.randint(0, 4))]
        )
        if rng.random() < 0.5:
            page.pagination.next_token = rng.choice(["", "opaque-cursor"])
        messages += [
            page,
            pb.GetHostAuthenticationTokenResponse(token=_random_token(rng)),
            pb.CreateHostAuthenticationTokenResponse(token=_random_token(rng)),
        ]
    for message in messages:
        assert json.loads(codec.encode(message)) == MessageToDict(message), message
