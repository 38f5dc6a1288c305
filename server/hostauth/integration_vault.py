"""The encrypting wrapper of the integration store: the core's
IntegrationVault.

A client secret is sealed on the way down and opened on the way up, bound
to its integration's id and field name (hostauth/crypto/context.py), like a
token's secrets (hostauth/vault.py).
"""

from __future__ import annotations

from uuid import UUID

from hostauth.audit_stream import AuditStream
from hostauth.core.model import (
    FIELD_CLIENT_SECRET,
    AuditEvent,
    IntegrationChanges,
    IntegrationRecord,
    Keep,
    Position,
    StoredIntegration,
    UnreadableSecret,
)
from hostauth.crypto import DecryptionError, Sealer, SecretContext
from hostauth.store.integrations import IntegrationRow, IntegrationStore
from hostauth.store.token_rows import Ciphertext, Sealed
from hostauth.vault import audit_span


class EncryptedIntegrations:
    """IntegrationVault over an IntegrationStore and a Sealer."""

    __slots__ = ("_sealer", "_store", "_stream")

    def __init__(self, store: IntegrationStore, sealer: Sealer, stream: AuditStream | None = None) -> None:
        self._store = store
        self._sealer = sealer
        self._stream = stream

    def _committed(self, event: AuditEvent) -> None:
        if self._stream is not None:
            self._stream.emit(event)

    async def _seal(self, integration_id: UUID, secret: str) -> Sealed:
        context = SecretContext(str(integration_id), FIELD_CLIENT_SECRET)
        blob, key_id = await self._sealer.seal_keyed(secret.encode(), context)
        return Sealed(Ciphertext(blob), key_id)

    async def _open(self, row: IntegrationRow) -> StoredIntegration[str]:
        secret: str | None = None
        if row.client_secret is not None:
            context = SecretContext(str(row.record.id), FIELD_CLIENT_SECRET)
            try:
                secret = (await self._sealer.open(row.client_secret.ciphertext, context)).decode()
            except DecryptionError as exc:
                raise UnreadableSecret(row.record.id, FIELD_CLIENT_SECRET, exc.reason) from None
        return StoredIntegration(row.record, secret, row.runner_key, row.position)

    async def insert(self, record: IntegrationRecord, client_secret: str | None, audit: AuditEvent) -> bool:
        sealed = None if client_secret is None else await self._seal(record.id, client_secret)
        with audit_span(audit):
            inserted = await self._store.insert(record, sealed, audit)
        if inserted:
            self._committed(audit)
        return inserted

    async def get(self, integration_id: UUID) -> StoredIntegration[str] | None:
        row = await self._store.get(integration_id)
        return None if row is None else await self._open(row)

    async def list(
        self, runner_ids: tuple[UUID, ...], after: Position | None, limit: int
    ) -> list[StoredIntegration[str]]:
        return [await self._open(row) for row in await self._store.list(runner_ids, after, limit)]

    async def update(
        self,
        integration_id: UUID,
        changes: IntegrationChanges[str],
        *,
        runner_id: UUID | None,
        audit: AuditEvent,
    ) -> bool:
        secret: Sealed | Keep | None = None if changes.client_secret is None else Keep.KEEP
        if isinstance(changes.client_secret, str):
            secret = await self._seal(integration_id, changes.client_secret)
        sealed = IntegrationChanges(
            changes.oauth_client_id, secret, changes.pat, changes.issuer_url, changes.virtual_directory
        )
        with audit_span(audit):
            updated = await self._store.update(integration_id, sealed, runner_id=runner_id, audit=audit)
        if updated:
            self._committed(audit)
        return updated

    async def delete(
        self, integration_id: UUID, *, runner_id: UUID | None, audit: AuditEvent
    ) -> tuple[UUID, ...] | None:
        with audit_span(audit):
            tokens = await self._store.delete(integration_id, runner_id=runner_id, audit=audit)
        if tokens is not None:
            self._committed(audit)
            self._sealer.forget(str(integration_id))
            for token_id in tokens:
                self._sealer.forget(str(token_id))
        return tokens

    async def runner_key(self, runner_id: UUID) -> bytes | None:
        return await self._store.runner_key(runner_id)

    async def set_runner_key(self, runner_id: UUID, public_key: bytes, audit: AuditEvent) -> None:
        with audit_span(audit):
            await self._store.set_runner_key(runner_id, public_key, audit)
        self._committed(audit)
