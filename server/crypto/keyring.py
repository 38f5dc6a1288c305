"""A local keyring of key-encryption keys (KEKs), read from JSON.

Format: {"primary": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...}}.
The primary key wraps new data keys; every key in the ring can unwrap.
Key material never appears in a repr or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeyringError(Exception):
    """The keyring is malformed or lacks a key that is needed."""


class KeyProvider(Protocol):
    """Wraps and unwraps data keys; a local keyring today, KMS later."""

    @property
    def primary_id(self) -> str: ...

    def wrap(self, dek: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes: ...


class LocalKeyring:
    """KEKs held in process memory, loaded from a file or an env variable."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        for key_id, material in keys.items():
            if not _KEY_ID.match(key_id):
                raise KeyringError(f"key id {key_id!r} must match {_KEY_ID.pattern}")
            if len(material) != KEY_BYTES:
                raise KeyringError(f"key {key_id!r} must be {KEY_BYTES} bytes")
        if primary not in keys:
            raise KeyringError(f"primary key {primary!r} is not in the keyring")
        self._keys = {key_id: AESGCM(material) for key_id, material in keys.items()}
        self._primary = primary

    def __repr__(self) -> str:
        return f"LocalKeyring(primary={self._primary!r}, key_ids={sorted(self._keys)!r})"

    @property
    def primary_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._keys[self._primary].encrypt(nonce, dek, aad)

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        kek = self._keys.get(key_id)
        if kek is None:
            raise KeyringError(f"key {key_id!r} is not in the keyring")
        return kek.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)

    @classmethod
    def from_json(cls, text: str, *, source: str) -> LocalKeyring:
        try:
            doc = json.loads(text)
            primary = doc["primary"]
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in doc["keys"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            # The parser's message could quote key material: name the kind only.
            raise KeyringError(
                f"keyring from {source} is not valid JSON of the form "
                '{"primary": id, "keys": {id: base64}} '
                f"({type(exc).__name__})"
            ) from None
        return cls(keys, str(primary))

    @classmethod
    def from_file(cls, path: Path) -> LocalKeyring:
        return cls.from_json(path.read_text(), source=str(path))


def generate_keyring_json(key_id: str) -> str:
    """A new keyring with one fresh key, as JSON for a file or env variable."""
    material = base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
    return json.dumps({"primary": key_id, "keys": {key_id: material}}, indent=2) + "\n"
