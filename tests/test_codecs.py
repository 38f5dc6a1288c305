"""The Connect JSON codec: the protobuf JSON mapping, written without
whitespace (server/transport/codecs.py)."""

from __future__ import annotations

import json

import pytest
from google.protobuf.json_format import MessageToJson, ParseError
from google.protobuf.timestamp_pb2 import Timestamp

from gitpod.v1 import runner_configuration_pb2 as pb
from server.transport.codecs import CompactJSONCodec


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
