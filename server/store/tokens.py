"""SQL for host authentication tokens.

The store speaks rows: metadata as plain values and secrets as `Ciphertext`,
which only server/crypto produces. It never sees a plaintext secret.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NewType
from uuid import UUID

import asyncpg

if TYPE_CHECKING:
    from server.store.connection import Connection
Ciphertext = NewType("Ciphertext", bytes)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token's metadata, as stored."""

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
class SealedSecrets:
    token: Ciphertext
    refresh_token: Ciphertext | None

    def __repr__(self) -> str:
        return "SealedSecrets(<ciphertext>)"


_INSERT = """
INSERT INTO host_authentication_tokens
    (id, runner_id, subject_id, subject_principal, host, source, expires_at,
     integration_id, scopes, token_ciphertext, refresh_token_ciphertext)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT ON CONSTRAINT host_authentication_tokens_triple DO NOTHING
RETURNING id
"""

_REPLACE = """
UPDATE host_authentication_tokens
SET subject_principal = $4, source = $6, expires_at = $7, integration_id = $8,
    scopes = $9, token_ciphertext = $10, refresh_token_ciphertext = $11,
    generation = generation + 1, updated_at = now()
WHERE id = $1 AND runner_id = $2 AND subject_id IS NOT DISTINCT FROM $3 AND host = $5
"""

_FIND_ID = """
SELECT id FROM host_authentication_tokens
WHERE runner_id = $1 AND subject_id IS NOT DISTINCT FROM $2 AND host = $3
"""


def _args(record: TokenRecord, secrets: SealedSecrets) -> tuple[object, ...]:
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
        secrets.token,
        secrets.refresh_token,
    )


class TokenSession:
    """The token queries of one request, on one pooled connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def insert(self, record: TokenRecord, secrets: SealedSecrets) -> bool:
        """Insert a new token; False when its (runner, subject, host) exists."""
        return await self._conn.fetchval(_INSERT, *_args(record, secrets)) is not None

    async def replace(self, record: TokenRecord, secrets: SealedSecrets) -> bool:
        """Overwrite the token with this id and triple; False when there is none."""
        status: str = await self._conn.execute(_REPLACE, *_args(record, secrets))
        return status == "UPDATE 1"

    async def find_id(self, runner_id: UUID, subject_id: UUID | None, host: str) -> UUID | None:
        found: UUID | None = await self._conn.fetchval(_FIND_ID, runner_id, subject_id, host)
        return found


class TokenStore:
    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def session(self) -> AsyncIterator[TokenSession]:
        # One acquire per request: asyncpg resets a connection on release, so
        # per-query acquires would cost a round trip each.
        async with self._pool.acquire() as conn:
            yield TokenSession(conn)
