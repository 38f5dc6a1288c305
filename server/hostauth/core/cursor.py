"""Opaque, authenticated List cursors (the `next_token` of a page).

A cursor holds the position of the last token returned, (created_at, id), and
a digest of the filters it was made for, under an HMAC: clients cannot forge
or alter one, nor carry one over to a List with other filters.

Layout: version(1) | created_at µs since epoch (8) | id (16) | filters (8) | mac (16),
base64url without padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hostauth.core.model import Position
from hostauth.errors import FieldViolation, InvalidArgument

_VERSION = 1
_BODY = struct.Struct(">Bq16s8s")
_MAC_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
FIELD = "pagination.token"


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(FIELD, description)])


class CursorCodec:
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "CursorCodec(<key>)"

    def _mac(self, body: bytes) -> bytes:
        return hmac.digest(self._key, body, hashlib.sha256)[:_MAC_BYTES]

    @staticmethod
    def _scope_digest(scope: str) -> bytes:
        return hashlib.sha256(scope.encode()).digest()[:8]

    def encode(self, position: Position, scope: str) -> str:
        created_at, token_id = position
        micros = (created_at - _EPOCH) // _MICROSECOND
        body = _BODY.pack(_VERSION, micros, token_id.bytes, self._scope_digest(scope))
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode()

    def decode(self, cursor: str, scope: str) -> Position:
        """The position in `cursor`; invalid_argument unless it is one of ours for `scope`."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise _invalid("value is not a valid page token") from None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(body) != _BODY.size or not hmac.compare_digest(mac, self._mac(body)):
            raise _invalid("value is not a valid page token")
        version, micros, token_id, digest = _BODY.unpack(body)
        if version != _VERSION:
            raise _invalid("value is not a valid page token")
        if not hmac.compare_digest(digest, self._scope_digest(scope)):
            raise _invalid("the page token was made for a List with other filters")
        return _EPOCH + micros * _MICROSECOND, UUID(bytes=token_id)
