"""AWS KMS as a key provider: data keys from GenerateDataKey, opened with
Decrypt, the secret's context passed as the KMS encryption context.

Unwrapped data keys may be cached for the read path only: bounded in size
and age, dropped when their token is deleted or their key retired, and never
used while KMS reports the key disabled (its state is asked again at most
every `status_ttl_s`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from hostauth.crypto.keyring import KeyringError, UnwrapError
from hostauth.telemetry import metrics, tracing

if TYPE_CHECKING:
    from hostauth.crypto.context import SecretContext

PREFIX = "kms:"


class KmsClient(Protocol):
    """The part of boto3's KMS client this provider uses."""

    def generate_data_key(self, **kwargs: Any) -> dict[str, Any]: ...
    def encrypt(self, **kwargs: Any) -> dict[str, Any]: ...
    def decrypt(self, **kwargs: Any) -> dict[str, Any]: ...
    def describe_key(self, **kwargs: Any) -> dict[str, Any]: ...


class KmsUnavailable(Exception):
    """KMS could not be asked (network, throttling): not the data's fault."""


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


class KmsKeyProvider:
    __slots__ = (
        "_by_token",
        "_cache",
        "_cache_size",
        "_cache_ttl_s",
        "_client",
        "_key",
        "_status",
        "_status_ttl_s",
    )

    def __init__(
        self,
        kms_key_id: str,
        client: KmsClient,
        *,
        cache_size: int = 10_000,
        cache_ttl_s: float = 300.0,
        status_ttl_s: float = 5.0,
    ) -> None:
        self._key = kms_key_id
        self._client = client
        self._cache: OrderedDict[tuple[str, str, bytes], tuple[bytes, float]] = OrderedDict()
        self._by_token: dict[str, set[tuple[str, str, bytes]]] = {}
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s
        self._status_ttl_s = status_ttl_s
        self._status: tuple[bool, float] | None = None  # (enabled, asked at)

    def __repr__(self) -> str:
        return f"KmsKeyProvider({self.key_id!r}, cached={len(self._cache)})"

    @property
    def key_id(self) -> str:
        return PREFIX + self._key

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset({self.key_id})

    async def _ask(self, method: str, **kwargs: Any) -> dict[str, Any]:
        call = getattr(self._client, method)
        with tracing.span(f"kms.{method}", {"hostauth.kms.operation": method}):
            try:
                result: dict[str, Any] = await asyncio.to_thread(call, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                code = _error_code(exc)
                if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                    metrics.kms_calls.labels(method, "refused").inc()
                    raise UnwrapError(
                        "KMS refused the data key (wrong context, altered, or another key)"
                    ) from None
                if code in ("DisabledException", "KMSInvalidStateException"):
                    metrics.kms_calls.labels(method, "refused").inc()
                    self._status = (False, time.monotonic())
                    raise UnwrapError("the KMS key is disabled") from None
                metrics.kms_calls.labels(method, "unavailable").inc()
                raise KmsUnavailable(f"KMS {method} failed: {code or type(exc).__name__}") from None
        metrics.kms_calls.labels(method, "ok").inc()
        return result

    def _check_key(self, key_id: str) -> None:
        if key_id != self.key_id:
            raise KeyringError(f"key {key_id!r} is not this KMS key")

    async def new_data_key(self, key_id: str, aad: bytes, context: SecretContext) -> tuple[bytes, bytes]:
        self._check_key(key_id)
        result = await self._ask(
            "generate_data_key", KeyId=self._key, KeySpec="AES_256", EncryptionContext=context.as_dict()
        )
        return bytes(result["Plaintext"]), bytes(result["CiphertextBlob"])

    async def wrap(self, key_id: str, dek: bytes, aad: bytes, context: SecretContext) -> bytes:
        self._check_key(key_id)
        result = await self._ask(
            "encrypt", KeyId=self._key, Plaintext=dek, EncryptionContext=context.as_dict()
        )
        return bytes(result["CiphertextBlob"])

    async def _enabled(self) -> bool:
        now = time.monotonic()
        if self._status is None or now - self._status[1] >= self._status_ttl_s:
            result = await self._ask("describe_key", KeyId=self._key)
            self._status = (bool(result["KeyMetadata"].get("Enabled", False)), now)
        return self._status[0]

    async def unwrap(self, key_id: str, wrapped: bytes, aad: bytes, context: SecretContext) -> bytes:
        self._check_key(key_id)
        cache_key = (context.token_id, context.field, wrapped)
        hit = self._cache.get(cache_key)
        if hit is not None and time.monotonic() - hit[1] < self._cache_ttl_s:
            metrics.data_key_cache.labels("hit").inc()
            if not await self._enabled():
                self.flush(key_id)
                raise UnwrapError("the KMS key is disabled")
            self._cache.move_to_end(cache_key)
            return hit[0]
        metrics.data_key_cache.labels("miss").inc()
        result = await self._ask(
            "decrypt",
            KeyId=self._key,
            CiphertextBlob=wrapped,
            EncryptionContext=context.as_dict(),
        )
        dek = bytes(result["Plaintext"])
        self._remember(cache_key, dek)
        return dek

    def _remember(self, cache_key: tuple[str, str, bytes], dek: bytes) -> None:
        if self._cache_size <= 0:
            return
        self._cache[cache_key] = (dek, time.monotonic())
        self._by_token.setdefault(cache_key[0], set()).add(cache_key)
        while len(self._cache) > self._cache_size:
            old, _ = self._cache.popitem(last=False)
            self._by_token.get(old[0], set()).discard(old)

    def forget(self, token_id: str) -> None:
        for cache_key in self._by_token.pop(token_id, ()):
            self._cache.pop(cache_key, None)

    def flush(self, key_id: str) -> None:
        if key_id == self.key_id:
            self._cache.clear()
            self._by_token.clear()

    @property
    def cached(self) -> int:
        return len(self._cache)
