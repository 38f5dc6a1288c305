"""The Connect codecs: protobuf binary, and protobuf JSON written compactly.

connectrpc's JSON codec calls MessageToJson with its default two-space indent,
which makes json.dumps fall back from its C encoder to the pure-Python one: a
List page of 25 tokens spent a fifth of its CPU there. Same mapping (the
protobuf JSON rules), no whitespace, C encoder; the responses that carry
tokens are mapped directly (token_json.py), json_format writes the rest.
"""

from __future__ import annotations

import json
from typing import TypeVar

from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from hostauth.transport.token_json import response_dict

M = TypeVar("M", bound=Message)


class CompactJSONCodec(Codec[Message, M]):
    """connectrpc's JSON codec for decoding, and a compact encoder."""

    __slots__ = ("_json",)

    def __init__(self, *, ignore_unknown_fields: bool = True) -> None:
        self._json: Codec[Message, M] = google_protobuf_json_codec(
            ignore_unknown_fields=ignore_unknown_fields
        )

    def name(self) -> str:
        return self._json.name()

    def decode(self, data: bytes | bytearray, message_class: type[M]) -> M:
        return self._json.decode(data, message_class)

    def encode(self, message: Message) -> bytes:
        # Token-carrying responses have a direct mapping (token_json.py).
        mapped = response_dict(message)
        return json.dumps(
            MessageToDict(message) if mapped is None else mapped, separators=(",", ":")
        ).encode()


def connect_codecs() -> list[Codec]:
    # Unknown JSON fields are a client's mistake worth reporting; unknown
    # proto fields are ignored, as proto rules say.
    return [google_protobuf_binary_codec(), CompactJSONCodec(ignore_unknown_fields=False)]
