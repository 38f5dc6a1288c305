"""Token rows as the store takes and gives them, and their mapping to and
from SQL parameters and records.

Metadata are the core's plain values (hostauth/core/model.py) and secrets
are `Ciphertext`, which only hostauth/crypto produces: the store never sees
a plaintext secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

import asyncpg

from hostauth.core.model import AuditEvent, TokenRecord

Ciphertext = NewType("Ciphertext", bytes)


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
class NewToken:
    """One Create's row and its audit row."""

    record: TokenRecord
    secrets: SealedSecrets
    audit: AuditEvent

    def __repr__(self) -> str:
        return f"NewToken(id={self.record.id})"


Found = tuple[TokenRecord, SealedSecrets] | None


def found_of(row: asyncpg.Record) -> tuple[TokenRecord, SealedSecrets]:
    """A row with the metadata and both ciphertexts."""
    refresh = row["refresh_token_ciphertext"]
    return record_of(row), SealedSecrets(
        Sealed(row["token_ciphertext"], row["token_kek_id"]),
        None if refresh is None else Sealed(refresh, row["refresh_token_kek_id"]),
    )


# A token's metadata columns, in TokenRecord's order.
COLUMNS = (
    "id, runner_id, subject_id, subject_principal, host, source, expires_at, integration_id, scopes, version,"
    " needs_sign_in"
)


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
        row["version"],
        row["needs_sign_in"],
    )
