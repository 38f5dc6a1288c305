"""Envelope format v1: a fresh AES-256-GCM data key per secret, wrapped by a KEK.

Layout (all lengths in bytes):

    version      1   0x01
    kek_id_len   1   n (1..64)
    kek_id       n   ASCII id of the key-encryption key
    wrapped_dek  60  nonce(12) + AES-GCM(KEK, dek(32)) + tag(16)
    nonce        12
    ciphertext   *   AES-GCM(dek, plaintext) + tag(16)

The header (version, kek id) is authenticated as associated data of the DEK
wrap, so the key id cannot be swapped. The secret's associated data is the
header plus the context (token id and field), so a ciphertext copied to
another row or field does not open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.crypto.keyring import KEY_BYTES, NONCE_BYTES, KeyProvider, KeyringError

VERSION_1 = 1
_WRAPPED_DEK_BYTES = NONCE_BYTES + KEY_BYTES + 16
_TAG_BYTES = 16


@dataclass(frozen=True, slots=True)
class SecretContext:
    """Where a secret lives: the token's id and the field name."""

    token_id: str
    field: str

    def associated_data(self) -> bytes:
        return f"hostauth/v1/{self.token_id}/{self.field}".encode()


class DecryptionError(Exception):
    """A ciphertext did not open for its context. Never carries plaintext."""

    def __init__(self, context: SecretContext, reason: str) -> None:
        super().__init__(
            f"ciphertext of {context.field} for token {context.token_id} does not open: {reason}"
        )
        self.context = context


class Sealer:
    """Seals and opens secrets under a key provider."""

    __slots__ = ("_keys",)

    def __init__(self, keys: KeyProvider) -> None:
        self._keys = keys

    def __repr__(self) -> str:
        return f"Sealer({self._keys!r})"

    def seal(self, plaintext: bytes, context: SecretContext) -> bytes:
        key_id = self._keys.primary_id.encode("ascii")
        header = bytes((VERSION_1, len(key_id))) + key_id
        dek = AESGCM.generate_key(bit_length=256)
        wrapped = self._keys.wrap(dek, header)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(dek).encrypt(nonce, plaintext, header + context.associated_data())
        return header + wrapped + nonce + sealed

    def open(self, ciphertext: bytes, context: SecretContext) -> bytes:
        if len(ciphertext) < 2 or ciphertext[0] != VERSION_1:
            raise DecryptionError(context, "unknown format version")
        id_len = ciphertext[1]
        header_len = 2 + id_len
        body = ciphertext[header_len:]
        if id_len == 0 or len(body) < _WRAPPED_DEK_BYTES + NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError(context, "truncated ciphertext")
        header = ciphertext[:header_len]
        try:
            key_id = header[2:].decode("ascii")
        except UnicodeDecodeError:
            raise DecryptionError(context, "malformed key id") from None
        try:
            dek = self._keys.unwrap(key_id, body[:_WRAPPED_DEK_BYTES], header)
        except KeyringError:
            raise DecryptionError(context, f"key {key_id!r} is not configured") from None
        except InvalidTag:
            raise DecryptionError(context, f"data key does not unwrap under {key_id!r}") from None
        rest = body[_WRAPPED_DEK_BYTES:]
        try:
            return AESGCM(dek).decrypt(
                rest[:NONCE_BYTES], rest[NONCE_BYTES:], header + context.associated_data()
            )
        except InvalidTag:
            raise DecryptionError(
                context, "authentication failed (altered, or copied from another row or field)"
            ) from None
