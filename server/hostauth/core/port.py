"""The one interface the core stores tokens through: plaintext in,
plaintext out. hostauth/vault.py implements it over PostgreSQL, sealing on
the way down and opening on the way up; the fast tests implement it in
memory (tests/support/memory_vault.py)."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from hostauth.auth.caller import Call
from hostauth.core.model import (
    AuditEvent,
    IntegrationChanges,
    IntegrationRecord,
    ListQuery,
    Position,
    SecretRead,
    Secrets,
    StoredIntegration,
    TokenChanges,
    TokenRecord,
)


class TokenVault(Protocol):
    """Every write carries its audit row, committed with it; a secret read's
    audit row is committed with the read."""

    async def insert(self, record: TokenRecord, secrets: Secrets, audit: AuditEvent) -> bool:
        """Store a new token; False (and nothing written) when its (runner,
        subject, host) exists."""
        ...

    async def replace(
        self, record: TokenRecord, secrets: Secrets, audit: AuditEvent
    ) -> tuple[UUID, int] | None:
        """Overwrite the token with the record's (runner, subject, host),
        keeping that token's id (record.id and audit.token_id give way to
        it); the id and new version, or None when there is no such token."""
        ...

    async def get(self, token_id: UUID) -> TokenRecord | None: ...

    async def find(self, runner_id: UUID, subject_id: UUID, host: str) -> UUID | None:
        """The id of the token of (runner, subject, host), if there is one."""
        ...

    async def list(self, query: ListQuery) -> list[tuple[TokenRecord, Position]]: ...

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
        """Apply the changes; the new version, or None when there is no such
        token with the given runner and subject ids (None: any) at version
        if_version (None: any)."""
        ...

    async def delete(
        self,
        token_id: UUID,
        *,
        runner_id: UUID | None,
        subject_id: UUID | None,
        audit: AuditEvent,
        if_version: int | None = None,
    ) -> bool:
        """False when there is no such token in the scope given (at version
        if_version, when given)."""
        ...

    async def read_secrets(self, read: SecretRead) -> tuple[TokenRecord, Secrets] | None:
        """The token and its secrets; None (and no audit row) when there is no
        such token in the read's scope. UnreadableSecret when a secret does
        not decrypt (the read is audited all the same)."""
        ...

    async def audit(self, event: AuditEvent) -> None:
        """Record an event on its own (a refusal)."""
        ...


class Refresher(Protocol):
    """OAuth refresh at the provider, once per token (hostauth/refresh/)."""

    def wants(self, record: TokenRecord, has_refresh_token: bool) -> bool:
        """Whether a secret read of this token refreshes it first."""
        ...

    async def fresh(self, record: TokenRecord, secrets: Secrets, call: Call) -> tuple[TokenRecord, Secrets]:
        """The token refreshed, or as it is where the rules say so; raises
        the core's errors (failed_precondition: needs sign-in)."""
        ...

    async def refresh_due(self, limit: int = 100) -> int:
        """Refresh the tokens nearing expiry before anyone reads them; how many."""
        ...


class RunnerBoxes(Protocol):
    """Sealed boxes to a runner's X25519 key (hostauth/crypto/sealed_box.py):
    the one cipher the core asks for, by this interface."""

    def raw_x25519_key(self, der: bytes) -> bytes:
        """The raw key of a PKIX DER X25519 public key; ValueError saying why not."""
        ...

    def seal(self, raw_key: bytes, plaintext: bytes) -> bytes:
        """An anonymous sealed box of plaintext to the key."""
        ...


class IntegrationVault(Protocol):
    """SCM integrations and runners' keys: plaintext client secrets in and
    out; every write carries its audit row, committed with it."""

    async def insert(self, record: IntegrationRecord, client_secret: str | None, audit: AuditEvent) -> bool:
        """Store a new integration; False (nothing written) when its runner
        already has one for the host."""
        ...

    async def get(self, integration_id: UUID) -> StoredIntegration[str] | None: ...

    async def list(
        self, runner_ids: tuple[UUID, ...], after: Position | None, limit: int
    ) -> list[StoredIntegration[str]]:
        """In (created_at, id) order; runner_ids empty: every runner's."""
        ...

    async def update(
        self,
        integration_id: UUID,
        changes: IntegrationChanges[str],
        *,
        runner_id: UUID | None,
        audit: AuditEvent,
    ) -> bool:
        """False when there is no such integration of the runner (None: any)."""
        ...

    async def delete(
        self, integration_id: UUID, *, runner_id: UUID | None, audit: AuditEvent
    ) -> tuple[UUID, ...] | None:
        """Delete the integration and the tokens issued through it (each
        audited); the tokens' ids, or None when there is no such integration."""
        ...

    async def runner_key(self, runner_id: UUID) -> bytes | None:
        """The runner's raw X25519 public key, if it has signed up."""
        ...

    async def set_runner_key(self, runner_id: UUID, public_key: bytes, audit: AuditEvent) -> None:
        """Store (or replace) the runner's key, with its audit row."""
        ...
