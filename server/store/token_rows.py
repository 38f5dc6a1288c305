"""Token rows as the store takes and gives them, and their mapping to and
from SQL parameters and records.

Metadata are plain values and secrets are `Ciphertext`, which only
server/crypto produces: the store never sees a plaintext secret.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple, NewType
from uuid import UUID

import asyncpg

from server.store.audit import AuditEvent

Ciphertext = NewType("Ciphertext", bytes)


class Keep(enum.Enum):
    """An update leaves this column as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class TokenRecord(NamedTuple):
    """A token's metadata, as stored. A named tuple: a List page makes one per
    row, and a frozen dataclass costs four times as much to construct."""

    id: UUID
    runner_id: UUID
    subject_id: UUID | None
    subject_principal: int
    host: str
    source: int
    expires_at: datetime | None
    integration_id: UUID | None
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A ciphertext and the id of the key its data key is wrapped under."""

    ciphertext: Ciphertext
    key_id: str

    def __repr__(self) -> str:
        return f"Sealed(<ciphertext>, key_id={self.key_id!r})"


@dataclass(frozen=True, slots=True)
class SealedSecrets:
    token: Sealed
    refresh_token: Sealed | None


@dataclass(frozen=True, slots=True)
class TokenChanges:
    """The columns an Update sets; KEEP leaves one as it is."""

    token: Sealed | Keep = KEEP
    refresh_token: Sealed | Keep | None = KEEP
    expires_at: datetime | Keep | None = KEEP
    scopes: tuple[str, ...] | Keep = KEEP

    def __repr__(self) -> str:
        changed = [
            name
            for name in ("token", "refresh_token", "expires_at", "scopes")
            if getattr(self, name) is not KEEP
        ]
        return f"TokenChanges({', '.join(changed)})"


# Where a token stands in List order: (created_at, id).
Position = tuple[datetime, UUID]


@dataclass(frozen=True, slots=True)
class ListQuery:
    runner_id: UUID | None
    subject_id: UUID | None
    after: Position | None
    limit: int


@dataclass(frozen=True, slots=True)
class NewToken:
    """One Create's row and its audit row."""

    record: TokenRecord
    secrets: SealedSecrets
    audit: AuditEvent

    def __repr__(self) -> str:
        return f"NewToken(id={self.record.id})"


@dataclass(frozen=True, slots=True)
class SecretRead:
    """One GetValue's read: the token, the caller's scope (None: any), and the
    audit row written if the token is read."""

    token_id: UUID
    runner_id: UUID | None
    subject_id: UUID | None
    audit: AuditEvent


Found = tuple[TokenRecord, SealedSecrets] | None


def found_of(row: asyncpg.Record) -> tuple[TokenRecord, SealedSecrets]:
    """A row with the metadata and both ciphertexts."""
    refresh = row["refresh_token_ciphertext"]
    return record_of(row), SealedSecrets(
        Sealed(row["token_ciphertext"], row["token_kek_id"]),
        None if refresh is None else Sealed(refresh, row["refresh_token_kek_id"]),
    )


# A token's metadata columns, in TokenRecord's order.
COLUMNS = "id, runner_id, subject_id, subject_principal, host, source, expires_at, integration_id, scopes"


def token_args(record: TokenRecord, secrets: SealedSecrets) -> tuple[object, ...]:
    return (
        record.id,
        record.runner_id,
        record.subject_id,
        record.subject_principal,
        record.host,
        record.source,
        record.expires_at,
        record.integration_id,
        list(record.scopes),
        secrets.token.ciphertext,
        secrets.refresh_token.ciphertext if secrets.refresh_token else None,
        secrets.token.key_id,
        secrets.refresh_token.key_id if secrets.refresh_token else None,
    )


def audit_args(event: AuditEvent) -> tuple[object, ...]:
    return (
        event.request_id,
        event.method,
        event.principal,
        event.subject_id,
        event.credential_id,
        event.outcome,
    )


def record_of(row: asyncpg.Record) -> TokenRecord:
    return TokenRecord(
        row["id"],
        row["runner_id"],
        row["subject_id"],
        row["subject_principal"],
        row["host"],
        row["source"],
        row["expires_at"],
        row["integration_id"],
        tuple(row["scopes"]),
    )
