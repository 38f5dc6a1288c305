"""SQL for API keys: hashes in, callers out."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from hostauth.store.pooled import drop, pooled


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: UUID
    principal: int
    subject_id: UUID
    grants: tuple[str, ...]
    description: str
    created_at: datetime
    revoked_at: datetime | None


REVOCATIONS = "hostauth_api_key_revoked"
_COLUMNS = "id, principal, subject_id, grants, description, created_at, revoked_at"


def _row(row: asyncpg.Record) -> ApiKeyRow:
    return ApiKeyRow(
        id=row["id"],
        principal=row["principal"],
        subject_id=row["subject_id"],
        grants=tuple(row["grants"]),
        description=row["description"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class ApiKeyStore:
    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find_active(self, key_hash: bytes) -> ApiKeyRow | None:
        async with pooled(self._pool) as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",  # noqa: S608
                key_hash,
            )
        return None if row is None else _row(row)

    async def create(
        self,
        key_hash: bytes,
        principal: int,
        subject_id: UUID,
        grants: tuple[str, ...] = (),
        description: str = "",
    ) -> UUID:
        """Store a key's hash; an already stored hash keeps its row (and id)."""
        async with pooled(self._pool) as conn:
            found: UUID = await conn.fetchval(
                """INSERT INTO api_keys (id, key_hash, principal, subject_id, grants, description)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (key_hash) DO UPDATE SET key_hash = EXCLUDED.key_hash
                   RETURNING id""",
                uuid4(),
                key_hash,
                principal,
                subject_id,
                list(grants),
                description,
            )
        return found

    async def revoke(self, key_id: UUID) -> bool:
        """Revoke a key and tell every server (NOTIFY, sent on commit) to
        forget what it cached."""
        async with pooled(self._pool) as conn, conn.transaction():
            status: str = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
            )
            await conn.execute("SELECT pg_notify($1, $2)", REVOCATIONS, str(key_id))
        return status == "UPDATE 1"

    async def watch_revocations(
        self, on_revoke: Callable[[], None], on_lost: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call on_revoke for every revocation, on_lost if the watch breaks.
        Holds one pooled connection; returns the coroutine that stops it."""
        conn = await self._pool.acquire()

        def notified(*_: object) -> None:
            on_revoke()

        def terminated(*_: object) -> None:
            on_lost()

        try:
            await conn.add_listener(REVOCATIONS, notified)
        except BaseException:  # a dead connection from the pool, or cancelled
            drop(conn)
            raise
        conn.add_termination_listener(terminated)

        async def stop() -> None:
            with contextlib.suppress(asyncpg.InterfaceError):  # already lost and detached
                conn.remove_termination_listener(terminated)
            try:
                await conn.remove_listener(REVOCATIONS, notified)
                await self._pool.release(conn)
            except Exception:  # noqa: BLE001 # lost, or being lost: asyncpg's errors then vary
                # The pool must get its slot back whatever state the
                # connection is in, or its close() waits for ever.
                drop(conn)

        return stop

    async def list(self) -> list[ApiKeyRow]:
        async with pooled(self._pool) as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")  # noqa: S608
        return [_row(r) for r in rows]
