"""The domain model the core works with: a token's metadata, its plaintext
secrets, the changes of an Update, a List query, an audit event.

Plain values that import nothing of the service's, so every layer may use
them. The store keeps them as rows and ciphertext (hostauth/store/token_rows.py);
the vault between them is the only place a secret changes form.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, NamedTuple, TypeVar
from uuid import UUID

FIELD_TOKEN = "token"
FIELD_REFRESH_TOKEN = "refresh_token"
FIELD_CLIENT_SECRET = "oauth_client_secret"


class Keep(enum.Enum):
    """An update leaves this field as it is."""

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
    # The token's version (its etag): 1 when created, bumped by each client write.
    version: int = 1
    # The provider refused its refresh token: no secret until it is replaced.
    needs_sign_in: bool = False


@dataclass(frozen=True, slots=True)
class Secrets:
    """A token's secrets in plaintext; an empty refresh token is none."""

    token: str
    refresh_token: str

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"


# A secret as a layer holds it: plaintext (str) in the core, sealed in the store.
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class TokenChanges(Generic[S]):
    """What an Update sets; KEEP leaves a field as it is, and a refresh token
    of None clears it."""

    token: S | Keep = KEEP
    refresh_token: S | Keep | None = KEEP
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
class AuditEvent:
    """Who did what to which token, and how it ended; never a secret or a
    credential (credential_id names one)."""

    request_id: str
    method: str
    token_id: UUID | None
    principal: int
    subject_id: UUID
    credential_id: str
    outcome: str  # "ok" or the error code
    # The SCM integration an integration method acted on.
    integration_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class SecretRead:
    """One GetValue's read: the token, the caller's scope (None: any), and the
    audit row written if the token is read."""

    token_id: UUID
    runner_id: UUID | None
    subject_id: UUID | None
    audit: AuditEvent


class UnreadableSecret(Exception):
    """A stored secret does not decrypt. Names the token and field, never a
    secret."""

    def __init__(self, token_id: UUID, field: str, reason: str) -> None:
        super().__init__(f"ciphertext of {field} for token {token_id} does not open: {reason}")
        self.token_id = token_id
        self.field = field


class IntegrationRecord(NamedTuple):
    """An SCM integration, as stored (its client secret apart)."""

    id: UUID
    runner_id: UUID
    scm_id: str
    host: str
    oauth_client_id: str | None
    issuer_url: str | None
    pat: bool
    virtual_directory: str | None


@dataclass(frozen=True, slots=True)
class StoredIntegration(Generic[S]):
    """An integration with its client secret (None: no OAuth app), and the
    public key of its runner, if that runner has signed up."""

    record: IntegrationRecord
    client_secret: S | None
    runner_key: bytes | None
    position: Position

    def __repr__(self) -> str:
        return f"StoredIntegration(id={self.record.id})"


@dataclass(frozen=True, slots=True)
class IntegrationChanges(Generic[S]):
    """What an UpdateSCMIntegration sets; KEEP leaves a field as it is, None
    clears it (the OAuth app: client id and secret together)."""

    oauth_client_id: str | Keep | None = KEEP
    client_secret: S | Keep | None = KEEP
    pat: bool | Keep = KEEP
    issuer_url: str | Keep | None = KEEP
    virtual_directory: str | Keep | None = KEEP

    def __repr__(self) -> str:
        changed = [
            name
            for name in ("oauth_client_id", "client_secret", "pat", "issuer_url", "virtual_directory")
            if getattr(self, name) is not KEEP
        ]
        return f"IntegrationChanges({', '.join(changed)})"
