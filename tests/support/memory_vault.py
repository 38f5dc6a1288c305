"""A TokenVault in memory, for the core's fast tests: the same contract as
hostauth/vault.py (hostauth/core/port.py), no PostgreSQL, no cipher."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hostauth.core.model import (
    AuditEvent,
    IntegrationChanges,
    IntegrationRecord,
    Keep,
    ListQuery,
    Position,
    SecretRead,
    Secrets,
    StoredIntegration,
    TokenChanges,
    TokenRecord,
)

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class _Row:
    record: TokenRecord
    secrets: Secrets
    created: Position


def _in_scope(record: TokenRecord, runner_id: UUID | None, subject_id: UUID | None) -> bool:
    return (runner_id is None or record.runner_id == runner_id) and (
        subject_id is None or record.subject_id == subject_id
    )


@dataclass
class MemoryVault:
    rows: dict[UUID, _Row] = field(default_factory=dict)
    events: list[AuditEvent] = field(default_factory=list)
    _clock: itertools.count[int] = field(default_factory=itertools.count)

    def _triple(self, record: TokenRecord) -> UUID | None:
        for row in self.rows.values():
            r = row.record
            if (r.runner_id, r.subject_id, r.host) == (record.runner_id, record.subject_id, record.host):
                return r.id
        return None

    async def insert(self, record: TokenRecord, secrets: Secrets, audit: AuditEvent) -> bool:
        if self._triple(record) is not None:
            return False
        created = (_EPOCH + timedelta(microseconds=next(self._clock)), record.id)
        self.rows[record.id] = _Row(record, secrets, created)
        self.events.append(audit)
        return True

    async def replace(
        self, record: TokenRecord, secrets: Secrets, audit: AuditEvent
    ) -> tuple[UUID, int] | None:
        existing = self._triple(record)
        if existing is None:
            return None
        row = self.rows[existing]
        version = row.record.version + 1
        row.record, row.secrets = record._replace(id=existing, version=version), secrets
        self.events.append(dataclasses.replace(audit, token_id=existing))
        return existing, version

    async def get(self, token_id: UUID) -> TokenRecord | None:
        row = self.rows.get(token_id)
        return None if row is None else row.record

    async def find(self, runner_id: UUID, subject_id: UUID, host: str) -> UUID | None:
        for token_id, row in self.rows.items():
            r = row.record
            if (r.runner_id, r.subject_id, r.host) == (runner_id, subject_id, host):
                return token_id
        return None

    async def list(self, query: ListQuery) -> list[tuple[TokenRecord, Position]]:
        rows = sorted(self.rows.values(), key=lambda row: row.created)
        found = [
            (row.record, row.created)
            for row in rows
            if _in_scope(row.record, query.runner_id, query.subject_id)
            and (query.after is None or row.created > query.after)
        ]
        return found[: query.limit]

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
        row = self.rows.get(token_id)
        if row is None or not _in_scope(row.record, runner_id, subject_id):
            return None
        if if_version is not None and row.record.version != if_version:
            return None
        token = row.secrets.token if isinstance(changes.token, Keep) else changes.token
        refresh = row.secrets.refresh_token
        if not isinstance(changes.refresh_token, Keep):
            refresh = changes.refresh_token or ""
        row.secrets = Secrets(token, refresh)
        if not isinstance(changes.expires_at, Keep):
            row.record = row.record._replace(expires_at=changes.expires_at)
        if not isinstance(changes.scopes, Keep):
            row.record = row.record._replace(scopes=changes.scopes)
        row.record = row.record._replace(version=row.record.version + 1)
        self.events.append(audit)
        return row.record.version

    async def delete(
        self,
        token_id: UUID,
        *,
        runner_id: UUID | None,
        subject_id: UUID | None,
        audit: AuditEvent,
        if_version: int | None = None,
    ) -> bool:
        row = self.rows.get(token_id)
        if row is None or not _in_scope(row.record, runner_id, subject_id):
            return False
        if if_version is not None and row.record.version != if_version:
            return False
        del self.rows[token_id]
        self.events.append(audit)
        return True

    async def read_secrets(self, read: SecretRead) -> tuple[TokenRecord, Secrets] | None:
        row = self.rows.get(read.token_id)
        if row is None or not _in_scope(row.record, read.runner_id, read.subject_id):
            return None
        self.events.append(read.audit)
        return row.record, row.secrets

    async def audit(self, event: AuditEvent) -> None:
        self.events.append(event)


class MemoryIntegrations:
    """An IntegrationVault in memory (hostauth/core/port.py), for the core's fast tests."""

    def __init__(self) -> None:
        self.rows: dict[UUID, StoredIntegration[str]] = {}
        self.keys: dict[UUID, bytes] = {}
        self.events: list[AuditEvent] = []
        self._clock = itertools.count(1)

    async def insert(self, record: IntegrationRecord, client_secret: str | None, audit: AuditEvent) -> bool:
        taken = {(r.record.runner_id, r.record.host.lower()) for r in self.rows.values()}
        if (record.runner_id, record.host.lower()) in taken:
            return False
        position = (_EPOCH + timedelta(microseconds=next(self._clock)), record.id)
        self.rows[record.id] = StoredIntegration(record, client_secret, None, position)
        self.events.append(audit)
        return True

    async def get(self, integration_id: UUID) -> StoredIntegration[str] | None:
        stored = self.rows.get(integration_id)
        if stored is None:
            return None
        return dataclasses.replace(stored, runner_key=self.keys.get(stored.record.runner_id))

    async def list(
        self, runner_ids: tuple[UUID, ...], after: Position | None, limit: int
    ) -> list[StoredIntegration[str]]:
        rows = sorted(self.rows.values(), key=lambda s: s.position)
        found = [
            dataclasses.replace(s, runner_key=self.keys.get(s.record.runner_id))
            for s in rows
            if (not runner_ids or s.record.runner_id in runner_ids) and (after is None or s.position > after)
        ]
        return found[:limit]

    async def update(
        self,
        integration_id: UUID,
        changes: IntegrationChanges[str],
        *,
        runner_id: UUID | None,
        audit: AuditEvent,
    ) -> bool:
        stored = self.rows.get(integration_id)
        if stored is None or (runner_id is not None and stored.record.runner_id != runner_id):
            return False
        record, secret = stored.record, stored.client_secret
        for name in ("oauth_client_id", "pat", "issuer_url", "virtual_directory"):
            value = getattr(changes, name)
            if not isinstance(value, Keep):
                record = record._replace(**{name: value})
        if not isinstance(changes.client_secret, Keep):
            secret = changes.client_secret
        self.rows[integration_id] = dataclasses.replace(stored, record=record, client_secret=secret)
        self.events.append(audit)
        return True

    async def delete(
        self, integration_id: UUID, *, runner_id: UUID | None, audit: AuditEvent
    ) -> tuple[UUID, ...] | None:
        stored = self.rows.get(integration_id)
        if stored is None or (runner_id is not None and stored.record.runner_id != runner_id):
            return None
        del self.rows[integration_id]
        self.events.append(audit)
        return ()

    async def runner_key(self, runner_id: UUID) -> bytes | None:
        return self.keys.get(runner_id)

    async def set_runner_key(self, runner_id: UUID, public_key: bytes, audit: AuditEvent) -> None:
        self.keys[runner_id] = public_key
        self.events.append(audit)
