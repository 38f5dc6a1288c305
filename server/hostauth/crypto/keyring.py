"""Key-encryption keys (KEKs): providers that wrap and unwrap data keys.

A local keyring holds KEKs in memory, read from JSON:
{"primary": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...}}.
`KeyProviders` puts providers together (local keys, a KMS key) and dispatches by key
id. Key material never appears in a repr or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from hostauth.crypto.context import SecretContext

KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CHECK_PLAINTEXT = b"hostauth key check v1".ljust(KEY_BYTES, b"\x00")


class KeyringError(Exception):
    """The keyring is malformed or lacks a key that is needed."""


class UnwrapError(Exception):
    """A wrapped data key did not unwrap (wrong key, altered, wrong context)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyProvider(Protocol):
    """Wraps and unwraps data keys under the KEKs it holds."""

    @property
    def key_ids(self) -> frozenset[str]: ...

    async def new_data_key(self, key_id: str, aad: bytes, context: SecretContext) -> tuple[bytes, bytes]:
        """A fresh 256-bit data key and its wrapped form."""
        ...

    async def wrap(self, key_id: str, dek: bytes, aad: bytes, context: SecretContext) -> bytes: ...

    async def unwrap(self, key_id: str, wrapped: bytes, aad: bytes, context: SecretContext) -> bytes: ...

    def forget(self, token_id: str) -> None:
        """Drop cached data keys of a deleted token."""
        ...

    def flush(self, key_id: str) -> None:
        """Drop every cached data key under key_id (it was retired)."""
        ...


class LocalKeyring:
    """KEKs held in process memory, loaded from a file or an env variable."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        for key_id, material in keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise KeyringError(f"key id {key_id!r} must match {_KEY_ID.pattern}")
            if len(material) != KEY_BYTES:
                raise KeyringError(f"key {key_id!r} must be {KEY_BYTES} bytes")
        if primary not in keys:
            raise KeyringError(
                f'primary key {primary!r} is not in the keyring: set its "primary" to a key it'
                " holds (after a rotation, the new primary)"
            )
        # One AESGCM object per KEK, made once: it is reused for every wrap.
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

    def _kek(self, key_id: str) -> AESGCM:
        kek = self._keys.get(key_id)
        if kek is None:
            raise KeyringError(f"key {key_id!r} is not in the keyring")
        return kek

    async def new_data_key(self, key_id: str, aad: bytes, context: SecretContext) -> tuple[bytes, bytes]:
        dek = AESGCM.generate_key(bit_length=256)
        return dek, await self.wrap(key_id, dek, aad, context)

    async def wrap(self, key_id: str, dek: bytes, aad: bytes, context: SecretContext) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._kek(key_id).encrypt(nonce, dek, aad)

    async def unwrap(self, key_id: str, wrapped: bytes, aad: bytes, context: SecretContext) -> bytes:
        kek = self._kek(key_id)
        try:
            return kek.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise UnwrapError("authentication failed") from None

    def forget(self, token_id: str) -> None:
        """Nothing is cached locally."""

    def flush(self, key_id: str) -> None:
        """Nothing is cached locally."""

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


class KeyProviders:
    """Every configured key provider, addressed by key id."""

    __slots__ = ("_by_id", "_default_primary", "_providers")

    def __init__(self, providers: Sequence[KeyProvider], default_primary: str) -> None:
        self._providers = tuple(providers)
        self._by_id: dict[str, KeyProvider] = {}
        for provider in self._providers:
            for key_id in provider.key_ids:
                if key_id in self._by_id:
                    raise KeyringError(f"key id {key_id!r} is configured twice")
                self._by_id[key_id] = provider
        if default_primary not in self._by_id:
            raise KeyringError(f"primary key {default_primary!r} is not configured")
        self._default_primary = default_primary

    @classmethod
    def local(cls, keyring: LocalKeyring) -> KeyProviders:
        return cls([keyring], keyring.primary_id)

    def __repr__(self) -> str:
        return f"KeyProviders({', '.join(repr(p) for p in self._providers)})"

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    @property
    def default_primary(self) -> str:
        return self._default_primary

    def _provider(self, key_id: str) -> KeyProvider:
        provider = self._by_id.get(key_id)
        if provider is None:
            raise KeyringError(f"key {key_id!r} is not configured")
        return provider

    async def new_data_key(self, key_id: str, aad: bytes, context: SecretContext) -> tuple[bytes, bytes]:
        return await self._provider(key_id).new_data_key(key_id, aad, context)

    async def wrap(self, key_id: str, dek: bytes, aad: bytes, context: SecretContext) -> bytes:
        return await self._provider(key_id).wrap(key_id, dek, aad, context)

    async def unwrap(self, key_id: str, wrapped: bytes, aad: bytes, context: SecretContext) -> bytes:
        return await self._provider(key_id).unwrap(key_id, wrapped, aad, context)

    def forget(self, token_id: str) -> None:
        for provider in self._providers:
            provider.forget(token_id)

    def flush(self, key_id: str) -> None:
        for provider in self._providers:
            provider.flush(key_id)

    # A check value proves, without holding key material, that a configured
    # key is the one the database knows under that id.

    @staticmethod
    def _check_context(key_id: str) -> tuple[bytes, SecretContext]:
        from hostauth.crypto.context import SecretContext

        context = SecretContext("key-check", key_id)
        return b"hostauth/key-check/" + key_id.encode(), context

    async def make_check(self, key_id: str) -> bytes:
        aad, context = self._check_context(key_id)
        return await self.wrap(key_id, _CHECK_PLAINTEXT, aad, context)

    async def verify_check(self, key_id: str, check: bytes) -> bool:
        aad, context = self._check_context(key_id)
        try:
            return await self.unwrap(key_id, check, aad, context) == _CHECK_PLAINTEXT
        except UnwrapError:
            return False


def generate_keyring_json(key_id: str) -> str:
    """A new keyring with one fresh key, as JSON for a file or env variable."""
    material = base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
    return json.dumps({"primary": key_id, "keys": {key_id: material}}, indent=2) + "\n"
