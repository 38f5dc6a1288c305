"""SQL of the OAuth refresh: the token's row locked for the one caller that
refreshes it (every other caller, in any process, waits on the lock), and
the refreshed secrets, or the refusal, written with their audit row before
the lock is let go."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from hostauth.core.model import AuditEvent, TokenRecord
from hostauth.store.pooled import pooled
from hostauth.store.token_rows import COLUMNS, Sealed, SealedSecrets, audit_args, found_of, record_of

_LOCK = f"""
SELECT {COLUMNS}, token_ciphertext, refresh_token_ciphertext, token_kek_id, refresh_token_kek_id
FROM host_authentication_tokens WHERE id = $1 FOR UPDATE
"""

_AUDIT = """
INSERT INTO audit_events (request_id, method, token_id, principal, subject_id, credential_id, outcome)
VALUES ($2, $3, $1, $4, $5, $6, $7)
"""

_STORE = f"""
WITH w AS (
    UPDATE host_authentication_tokens SET
        token_ciphertext = $8, token_kek_id = $9,
        refresh_token_ciphertext = $10, refresh_token_kek_id = $11,
        expires_at = $12, needs_sign_in = false, refresh_failure = NULL,
        generation = generation + 1, version = version + 1, updated_at = now()
    WHERE id = $1
    RETURNING version),
a AS ({_AUDIT.strip()})
SELECT version FROM w
"""

_MARK = f"""
WITH w AS (
    UPDATE host_authentication_tokens SET
        needs_sign_in = true, refresh_failure = $8, version = version + 1, updated_at = now()
    WHERE id = $1
    RETURNING version),
a AS ({_AUDIT.strip()})
SELECT version FROM w
"""

# OAuth tokens with a refresh token, not yet expired but within the window,
# that an OAuth app of a provider refreshed here can refresh (their own
# integration, or their runner's for the host): soonest first, a page after
# (expires_at, id). Expired ones are left to their readers, and tokens that
# cannot be refreshed are never fetched, so neither crowds out a due one.
_DUE = f"""
SELECT {COLUMNS} FROM host_authentication_tokens t
WHERE t.source = 1 AND t.refresh_token_ciphertext IS NOT NULL AND NOT t.needs_sign_in
  AND t.expires_at > now() AND t.expires_at <= now() + $1::interval
  AND (t.expires_at, t.id) > ($2, $3)
  AND EXISTS (
    SELECT 1 FROM scm_integrations i
    WHERE i.oauth_client_id IS NOT NULL AND lower(i.scm_id) IN ('github', 'gitlab', 'bitbucket')
      AND (i.id = t.integration_id
           OR (t.integration_id IS NULL AND i.runner_id = t.runner_id AND lower(i.host) = lower(t.host))))
ORDER BY t.expires_at, t.id LIMIT $4
"""

_FIND_INTEGRATION = "SELECT id FROM scm_integrations WHERE runner_id = $1 AND lower(host) = lower($2)"


@dataclass
class LockedToken:
    """A token's row, locked until the transaction ends."""

    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    record: TokenRecord
    secrets: SealedSecrets

    async def store(
        self, token: Sealed, refresh: Sealed, expires_at: datetime | None, audit: AuditEvent
    ) -> int:
        """The refreshed secrets, with their audit row; the new version."""
        version: int = await self.conn.fetchval(
            _STORE,
            self.record.id,
            *audit_args(audit),
            token.ciphertext,
            token.key_id,
            refresh.ciphertext,
            refresh.key_id,
            expires_at,
        )
        return version

    async def mark_needs_sign_in(self, reason: str, audit: AuditEvent) -> None:
        await self.conn.fetchval(_MARK, self.record.id, *audit_args(audit), reason)


class RefreshStore:
    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def locked(self, token_id: UUID, wait_s: float) -> AsyncIterator[LockedToken | None]:
        """The token's row locked (None: it is gone); waits up to wait_s for
        another holder (asyncpg.LockNotAvailableError after that). What is
        written through it commits when the block ends without an error."""
        async with pooled(self._pool) as conn, conn.transaction():
            await conn.execute("SELECT set_config('lock_timeout', $1, true)", f"{int(wait_s * 1000)}ms")
            row = await conn.fetchrow(_LOCK, token_id)
            if row is None:
                yield None
                return
            record, secrets = found_of(row)
            yield LockedToken(conn, record, secrets)

    async def due(
        self, window: timedelta, limit: int, after: tuple[datetime, UUID] | None = None
    ) -> list[TokenRecord]:
        """A page of the tokens to refresh ahead, after the last one of the page before."""
        after_at, after_id = after or (datetime.min.replace(tzinfo=UTC), UUID(int=0))
        async with pooled(self._pool) as conn:
            return [record_of(r) for r in await conn.fetch(_DUE, window, after_at, after_id, limit)]

    async def integration_of(self, runner_id: UUID, host: str) -> UUID | None:
        async with pooled(self._pool) as conn:
            found: UUID | None = await conn.fetchval(_FIND_INTEGRATION, runner_id, host)
        return found
