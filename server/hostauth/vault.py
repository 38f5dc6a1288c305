"""The encrypting wrapper of the token store: the core's TokenVault.

Secrets are sealed on the way down and opened on the way up, each bound to
its token's id and field name (hostauth/crypto/context.py), so a ciphertext
copied to another row or field does not open. This is the only code that
calls seal and open: the core hands over and gets back plaintext, the
store (hostauth/store/) sees only ciphertext.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from uuid import UUID

import asyncpg

from hostauth.audit_stream import AuditStream
from hostauth.core.model import (
    FIELD_REFRESH_TOKEN,
    FIELD_TOKEN,
    KEEP,
    AuditEvent,
    Keep,
    ListQuery,
    Position,
    SecretRead,
    Secrets,
    TokenChanges,
    TokenRecord,
    UnreadableSecret,
)
from hostauth.crypto import DecryptionError, Sealer, SecretContext
from hostauth.errors import FieldViolation, InvalidArgument
from hostauth.store import Ciphertext, NewToken, Sealed, SealedSecrets, TokenStore
from hostauth.telemetry import tracing


def audit_span(event: AuditEvent) -> contextlib.AbstractContextManager[object]:
    """A span for a statement that writes an audit row (with the write or the
    read it records, or alone)."""
    return tracing.span(
        "audit.write", {"hostauth.audit.method": event.method, "hostauth.audit.outcome": event.outcome}
    )


@contextlib.contextmanager
def _integration_gone() -> Iterator[None]:
    """The token's integration was deleted after the core checked it."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError:
        raise InvalidArgument([FieldViolation("integration_id", INTEGRATION_GONE)]) from None


INTEGRATION_GONE = "value must name an SCM integration of runner_id for host"


class EncryptedTokens:
    """TokenVault over a TokenStore and a Sealer."""

    __slots__ = ("_sealer", "_store", "_stream")

    def __init__(self, store: TokenStore, sealer: Sealer, stream: AuditStream | None = None) -> None:
        self._store = store
        self._sealer = sealer
        self._stream = stream  # each audit row, once committed, as a JSON line too

    def _committed(self, event: AuditEvent) -> None:
        if self._stream is not None:
            self._stream.emit(event)

    async def _seal_one(self, token_id: UUID, field: str, value: str) -> Sealed:
        blob, key_id = await self._sealer.seal_keyed(value.encode(), SecretContext(str(token_id), field))
        return Sealed(Ciphertext(blob), key_id)

    async def _seal(self, token_id: UUID, secrets: Secrets) -> SealedSecrets:
        refresh = secrets.refresh_token
        return SealedSecrets(
            token=await self._seal_one(token_id, FIELD_TOKEN, secrets.token),
            refresh_token=await self._seal_one(token_id, FIELD_REFRESH_TOKEN, refresh) if refresh else None,
        )

    async def insert(self, record: TokenRecord, secrets: Secrets, audit: AuditEvent) -> bool:
        sealed = await self._seal(record.id, secrets)
        with audit_span(audit), _integration_gone():
            inserted = await self._store.insert(NewToken(record, sealed, audit))
        if inserted:
            self._committed(audit)
        return inserted

    async def replace(
        self, record: TokenRecord, secrets: Secrets, audit: AuditEvent
    ) -> tuple[UUID, int] | None:
        # One pooled connection for the lookup and the write, as one request.
        async with self._store.session() as db:
            existing = await db.find_id(record.runner_id, record.subject_id, record.host)
            if existing is None:
                return None
            # The ciphertexts are bound to the id: sealed anew under the existing one.
            sealed = await self._seal(existing, secrets)
            audit = dataclasses.replace(audit, token_id=existing)
            with audit_span(audit), _integration_gone():
                version = await db.replace(record._replace(id=existing), sealed, audit)
        if version is not None:
            self._committed(audit)
            return existing, version
        return None

    async def get(self, token_id: UUID) -> TokenRecord | None:
        return await self._store.get(token_id)

    async def find(self, runner_id: UUID, subject_id: UUID, host: str) -> UUID | None:
        async with self._store.session() as db:
            return await db.find_id(runner_id, subject_id, host)

    async def list(self, query: ListQuery) -> list[tuple[TokenRecord, Position]]:
        async with self._store.session() as db:
            return await db.list(query)

    async def update(
        self,
        token_id: UUID,
        changes: TokenChanges[str],
        *,
        runner_id: UUID | None,
        subject_id: UUID | None,
        audit: AuditEvent,
        if_version: int | None = None,
    ) -> int | None:
        token: Sealed | Keep = KEEP
        if not isinstance(changes.token, Keep):
            token = await self._seal_one(token_id, FIELD_TOKEN, changes.token)
        refresh: Sealed | Keep | None = None if changes.refresh_token is None else KEEP
        if isinstance(changes.refresh_token, str):
            refresh = await self._seal_one(token_id, FIELD_REFRESH_TOKEN, changes.refresh_token)
        sealed = TokenChanges(token, refresh, changes.expires_at, changes.scopes)
        async with self._store.session() as db:
            with audit_span(audit):
                version = await db.update(
                    token_id,
                    sealed,
                    runner_id=runner_id,
                    subject_id=subject_id,
                    audit=audit,
                    if_version=if_version,
                )
        if version is not None:
            self._committed(audit)
        return version

    async def delete(
        self,
        token_id: UUID,
        *,
        runner_id: UUID | None,
        subject_id: UUID | None,
        audit: AuditEvent,
        if_version: int | None = None,
    ) -> bool:
        async with self._store.session() as db:
            with audit_span(audit):
                deleted = await db.delete(
                    token_id, runner_id=runner_id, subject_id=subject_id, audit=audit, if_version=if_version
                )
        if deleted:
            self._committed(audit)
            self._sealer.forget(str(token_id))  # its cached data keys go with it
        return deleted

    async def read_secrets(self, read: SecretRead) -> tuple[TokenRecord, Secrets] | None:
        with audit_span(read.audit):
            found = await self._store.read_secrets(read)
        if found is None:
            return None
        self._committed(read.audit)
        record, sealed = found
        token_id = str(record.id)
        field = FIELD_TOKEN
        try:
            token = (
                await self._sealer.open(sealed.token.ciphertext, SecretContext(token_id, field))
            ).decode()
            refresh = ""
            if sealed.refresh_token is not None:
                field = FIELD_REFRESH_TOKEN
                context = SecretContext(token_id, field)
                refresh = (await self._sealer.open(sealed.refresh_token.ciphertext, context)).decode()
        except DecryptionError as exc:
            raise UnreadableSecret(record.id, field, exc.reason) from None
        return record, Secrets(token, refresh)

    async def audit(self, event: AuditEvent) -> None:
        with audit_span(event):
            await self._store.audit(event)
        self._committed(event)
