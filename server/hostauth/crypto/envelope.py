"""Envelope format v1: a fresh AES-256-GCM data key (DEK) per secret, wrapped by a
key-encryption key (KEK).

Layout (lengths in bytes):

    version      1   0x01
    kek_id_len   1   n (1..255)
    kek_id       n   id of the key-encryption key
    wrapped_len  2   m, big-endian
    wrapped_dek  m   the DEK as the key provider wrapped it
    nonce        12
    ciphertext   *   AES-GCM(dek, plaintext) + tag(16)

Associated data binds both layers to where the secret lives (token id and
field): the DEK's wrap also to the header (version, KEK id), the secret only to
the version and context. So a ciphertext copied to another row or field does
not open, and a key rotation can re-wrap the DEK alone, leaving the nonce,
ciphertext and their associated data untouched.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hostauth.crypto.context import SecretContext
from hostauth.crypto.keyring import NONCE_BYTES, KeyProviders, KeyringError, UnwrapError

VERSION_1 = 1
_TAG_BYTES = 16
_LEN = struct.Struct(">H")


class DecryptionError(Exception):
    """A ciphertext did not open for its context. Never carries plaintext."""

    def __init__(self, context: SecretContext, reason: str) -> None:
        super().__init__(
            f"ciphertext of {context.field} for token {context.token_id} does not open: {reason}"
        )
        self.context = context
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Parsed:
    key_id: str
    header: bytes
    wrapped: bytes
    body: bytes  # nonce + ciphertext + tag


def _header(key_id: str) -> bytes:
    raw = key_id.encode()
    return bytes((VERSION_1, len(raw))) + raw


def _parse(ciphertext: bytes, context: SecretContext) -> _Parsed:
    if len(ciphertext) < 2 or ciphertext[0] != VERSION_1:
        raise DecryptionError(context, "unknown format version")
    header_len = 2 + ciphertext[1]
    if ciphertext[1] == 0 or len(ciphertext) < header_len + _LEN.size:
        raise DecryptionError(context, "truncated ciphertext")
    (wrapped_len,) = _LEN.unpack_from(ciphertext, header_len)
    start = header_len + _LEN.size
    body = ciphertext[start + wrapped_len :]
    if wrapped_len == 0 or len(body) < NONCE_BYTES + _TAG_BYTES:
        raise DecryptionError(context, "truncated ciphertext")
    try:
        key_id = ciphertext[2:header_len].decode()
    except UnicodeDecodeError:
        raise DecryptionError(context, "malformed key id") from None
    return _Parsed(key_id, ciphertext[:header_len], ciphertext[start : start + wrapped_len], body)


def key_id_of(ciphertext: bytes) -> str:
    """The id of the KEK a ciphertext's data key is wrapped under."""
    return _parse(ciphertext, SecretContext("?", "?")).key_id


class Sealer:
    """Seals and opens secrets under a set of keys, one of them primary."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, keys: KeyProviders, primary: str | None = None) -> None:
        self._keys = keys
        self._primary = primary or keys.default_primary
        if self._primary not in keys.key_ids:
            raise KeyringError(f"primary key {self._primary!r} is not configured")

    def __repr__(self) -> str:
        return f"Sealer(primary={self._primary!r}, {self._keys!r})"

    @property
    def keys(self) -> KeyProviders:
        return self._keys

    @property
    def primary_id(self) -> str:
        return self._primary

    def set_primary(self, key_id: str) -> None:
        if key_id not in self._keys.key_ids:
            raise KeyringError(f"key {key_id!r} is not configured")
        self._primary = key_id

    async def seal(self, plaintext: bytes, context: SecretContext) -> bytes:
        return (await self.seal_keyed(plaintext, context))[0]

    async def seal_keyed(self, plaintext: bytes, context: SecretContext) -> tuple[bytes, str]:
        """The ciphertext and the id of the key it was sealed under (the
        primary may change while a key service is asked for a data key)."""
        key_id = self._primary
        header = _header(key_id)
        associated = context.associated_data()
        dek, wrapped = await self._keys.new_data_key(key_id, header + associated, context)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(dek).encrypt(nonce, plaintext, bytes((VERSION_1,)) + associated)
        return header + _LEN.pack(len(wrapped)) + wrapped + nonce + sealed, key_id

    async def _dek(self, parsed: _Parsed, context: SecretContext) -> bytes:
        try:
            return await self._keys.unwrap(
                parsed.key_id, parsed.wrapped, parsed.header + context.associated_data(), context
            )
        except KeyringError:
            raise DecryptionError(context, f"key {parsed.key_id!r} is not configured") from None
        except UnwrapError as exc:
            raise DecryptionError(
                context,
                f"data key does not unwrap under {parsed.key_id!r}: {exc.reason} "
                "(altered, copied from another row or field, or other key material)",
            ) from None

    async def open(self, ciphertext: bytes, context: SecretContext) -> bytes:
        parsed = _parse(ciphertext, context)
        dek = await self._dek(parsed, context)
        try:
            return AESGCM(dek).decrypt(
                parsed.body[:NONCE_BYTES],
                parsed.body[NONCE_BYTES:],
                bytes((VERSION_1,)) + context.associated_data(),
            )
        except InvalidTag:
            raise DecryptionError(
                context, "authentication failed (altered, or copied from another row or field)"
            ) from None

    async def rewrap(self, ciphertext: bytes, context: SecretContext) -> bytes:
        """The same secret with its data key wrapped under the primary key:
        nonce, ciphertext and their associated data are left as they are."""
        parsed = _parse(ciphertext, context)
        if parsed.key_id == self._primary:
            return ciphertext
        dek = await self._dek(parsed, context)
        header = _header(self._primary)
        wrapped = await self._keys.wrap(self._primary, dek, header + context.associated_data(), context)
        return header + _LEN.pack(len(wrapped)) + wrapped + parsed.body

    def forget(self, token_id: str) -> None:
        """Drop anything cached for this token (it was deleted)."""
        self._keys.forget(token_id)
