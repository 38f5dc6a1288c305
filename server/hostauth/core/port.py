"""The one interface the core stores tokens through: plaintext in,
plaintext out. hostauth/vault.py implements it over PostgreSQL, sealing on
the way down and opening on the way up; the fast tests implement it in
memory (tests/support/memory_vault.py)."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from hostauth.core.model import (
    AuditEvent,
    ListQuery,
    Position,
    SecretRead,
    Secrets,
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

    async def replace(self, record: TokenRecord, secrets: Secrets, audit: AuditEvent) -> UUID | None:
        """Overwrite the token with the record's (runner, subject, host),
        keeping that token's id (record.id and audit.token_id give way to
        it); the id, or None when there is no such token."""
        ...

    async def get(self, token_id: UUID) -> TokenRecord | None: ...

    async def list(self, query: ListQuery) -> list[tuple[TokenRecord, Position]]: ...

    async def update(
        self,
        token_id: UUID,
        changes: TokenChanges[str],
        *,
        runner_id: UUID | None,
        subject_id: UUID | None,
        audit: AuditEvent,
    ) -> bool:
        """Apply the changes; False when there is no such token with the given
        runner and subject ids (None: any)."""
        ...

    async def delete(
        self, token_id: UUID, *, runner_id: UUID | None, subject_id: UUID | None, audit: AuditEvent
    ) -> bool:
        """False when there is no such token in the scope given."""
        ...

    async def read_secrets(self, read: SecretRead) -> tuple[TokenRecord, Secrets] | None:
        """The token and its secrets; None (and no audit row) when there is no
        such token in the read's scope. UnreadableSecret when a secret does
        not decrypt (the read is audited all the same)."""
        ...

    async def audit(self, event: AuditEvent) -> None:
        """Record an event on its own (a refusal)."""
        ...
