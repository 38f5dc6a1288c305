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
    Keep,
    ListQuery,
    Position,
    SecretRead,
    Secrets,
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

    async def replace(self, record: TokenRecord, secrets: Secrets, audit: AuditEvent) -> UUID | None:
        existing = self._triple(record)
        if existing is None:
            return None
        row = self.rows[existing]
        row.record, row.secrets = record._replace(id=existing), secrets
        self.events.append(dataclasses.replace(audit, token_id=existing))
        return existing

    async def get(self, token_id: UUID) -> TokenRecord | None:
        row = self.rows.get(token_id)
        return None if row is None else row.record

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
    ) -> bool:
        row = self.rows.get(token_id)
        if row is None or not _in_scope(row.record, runner_id, subject_id):
            return False
        token = row.secrets.token if isinstance(changes.token, Keep) else changes.token
        refresh = row.secrets.refresh_token
        if not isinstance(changes.refresh_token, Keep):
            refresh = changes.refresh_token or ""
        row.secrets = Secrets(token, refresh)
        if not isinstance(changes.expires_at, Keep):
            row.record = row.record._replace(expires_at=changes.expires_at)
        if not isinstance(changes.scopes, Keep):
            row.record = row.record._replace(scopes=changes.scopes)
        self.events.append(audit)
        return True

    async def delete(
        self, token_id: UUID, *, runner_id: UUID | None, subject_id: UUID | None, audit: AuditEvent
    ) -> bool:
        row = self.rows.get(token_id)
        if row is None or not _in_scope(row.record, runner_id, subject_id):
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
