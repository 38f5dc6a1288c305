"""SQL for the key registry, replica heartbeats, and re-wrapping rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

from hostauth.store.pooled import pooled
from hostauth.store.token_rows import Ciphertext

if TYPE_CHECKING:
    from hostauth.store.connection import Connection

# Serialises key-state changes (registration, rotate, retire) across processes.
KEY_STATE_LOCK = 0x686B657973  # "hkeys"


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    state: str
    check_value: bytes


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    id: UUID
    key_ids: tuple[str, ...]
    primary_key_id: str


@dataclass(frozen=True, slots=True)
class RewrapRow:
    id: UUID
    generation: int
    token: Ciphertext
    token_kek_id: str
    refresh_token: Ciphertext | None
    refresh_token_kek_id: str | None


_KEYS = "SELECT id, state, check_value FROM encryption_keys ORDER BY created_at, id"
_LIVE = "SELECT id, key_ids, primary_key_id FROM replicas WHERE heartbeat_at > now() - $1::interval"


def _key_rows(rows: list[asyncpg.Record]) -> list[KeyRow]:
    return [KeyRow(r["id"], r["state"], bytes(r["check_value"])) for r in rows]


def _replica_rows(rows: list[asyncpg.Record]) -> list[ReplicaRow]:
    return [ReplicaRow(r["id"], tuple(r["key_ids"]), r["primary_key_id"]) for r in rows]


class KeyTx:
    """Key-state changes inside one transaction holding the key-state lock."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def keys(self) -> list[KeyRow]:
        return _key_rows(await self._conn.fetch(_KEYS))

    async def insert_key(self, key_id: str, state: str, check: bytes) -> None:
        await self._conn.execute(
            "INSERT INTO encryption_keys (id, state, check_value) VALUES ($1, $2, $3)", key_id, state, check
        )

    async def make_primary(self, key_id: str) -> str | None:
        """Demote the primary to active and promote key_id; the old primary's id."""
        previous: str | None = await self._conn.fetchval(
            "UPDATE encryption_keys SET state = 'active', updated_at = now() "
            "WHERE state = 'primary' RETURNING id"
        )
        await self._conn.execute(
            "UPDATE encryption_keys SET state = 'primary', updated_at = now() WHERE id = $1", key_id
        )
        return previous

    async def set_state(self, key_id: str, state: str) -> None:
        await self._conn.execute(
            "UPDATE encryption_keys SET state = $2, updated_at = now() WHERE id = $1", key_id, state
        )

    async def rows_using(self, key_id: str) -> int:
        count: int = await self._conn.fetchval(
            """SELECT (SELECT count(*) FROM host_authentication_tokens
                       WHERE token_kek_id = $1 OR refresh_token_kek_id = $1)
                    + (SELECT count(*) FROM scm_integrations WHERE client_secret_kek_id = $1)""",
            key_id,
        )
        return count

    async def live_replicas(self, within: timedelta) -> list[ReplicaRow]:
        return _replica_rows(await self._conn.fetch(_LIVE, within))


class KeyStore:
    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[KeyTx]:
        """A transaction that holds the key-state lock: registrations,
        rotations and retirements happen one at a time across processes."""
        async with pooled(self._pool) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_STATE_LOCK)
            yield KeyTx(conn)

    async def keys(self) -> list[KeyRow]:
        async with pooled(self._pool) as conn:
            return _key_rows(await conn.fetch(_KEYS))

    async def live_replicas(self, within: timedelta) -> list[ReplicaRow]:
        async with pooled(self._pool) as conn:
            return _replica_rows(await conn.fetch(_LIVE, within))

    async def primary(self) -> str | None:
        async with pooled(self._pool) as conn:
            found: str | None = await conn.fetchval("SELECT id FROM encryption_keys WHERE state = 'primary'")
        return found

    async def keys_in_use(self) -> dict[str, int]:
        """Ciphertexts per key id, as the token and integration tables have them."""
        async with pooled(self._pool) as conn:
            rows = await conn.fetch(
                """SELECT kek, count(*) AS n FROM (
                       SELECT token_kek_id AS kek FROM host_authentication_tokens
                       UNION ALL
                       SELECT refresh_token_kek_id FROM host_authentication_tokens
                       WHERE refresh_token_kek_id IS NOT NULL
                       UNION ALL
                       SELECT client_secret_kek_id FROM scm_integrations
                       WHERE client_secret_kek_id IS NOT NULL) used
                   GROUP BY kek"""
            )
        return {r["kek"]: r["n"] for r in rows}

    async def heartbeat(self, replica: ReplicaRow) -> None:
        async with pooled(self._pool) as conn:
            await conn.execute(
                """INSERT INTO replicas (id, key_ids, primary_key_id) VALUES ($1, $2, $3)
                   ON CONFLICT (id) DO UPDATE SET key_ids = $2, primary_key_id = $3, heartbeat_at = now()""",
                replica.id,
                list(replica.key_ids),
                replica.primary_key_id,
            )

    async def forget_silent_replicas(self, silent_for: timedelta) -> int:
        """Drop the rows of replicas not heard from for this long (killed ones
        never leave); a live one's next beat would put its row back."""
        async with pooled(self._pool) as conn:
            done = await conn.execute(
                "DELETE FROM replicas WHERE heartbeat_at < now() - $1::interval", silent_for
            )
        return int(done.split()[-1])

    async def leave(self, replica_id: UUID) -> None:
        async with pooled(self._pool) as conn:
            await conn.execute("DELETE FROM replicas WHERE id = $1", replica_id)

    async def rewrap_batch(self, primary: str, after: UUID | None, limit: int) -> list[RewrapRow]:
        """The next rows (by id) with a ciphertext under a key other than `primary`."""
        async with pooled(self._pool) as conn:
            rows = await conn.fetch(
                """SELECT id, generation, token_ciphertext, token_kek_id,
                          refresh_token_ciphertext, refresh_token_kek_id
                   FROM host_authentication_tokens
                   WHERE (token_kek_id <> $1 OR refresh_token_kek_id <> $1)
                     AND ($2::uuid IS NULL OR id > $2)
                   ORDER BY id LIMIT $3""",
                primary,
                after,
                limit,
            )
        return [
            RewrapRow(
                r["id"],
                r["generation"],
                r["token_ciphertext"],
                r["token_kek_id"],
                r["refresh_token_ciphertext"],
                r["refresh_token_kek_id"],
            )
            for r in rows
        ]

    async def count_not_under(self, primary: str) -> int:
        async with pooled(self._pool) as conn:
            count: int = await conn.fetchval(
                """SELECT (SELECT count(*) FROM host_authentication_tokens
                           WHERE token_kek_id <> $1 OR refresh_token_kek_id <> $1)
                        + (SELECT count(*) FROM scm_integrations WHERE client_secret_kek_id <> $1)""",
                primary,
            )
        return count

    async def integration_rewrap_batch(
        self, primary: str, after: UUID | None, limit: int
    ) -> list[tuple[UUID, int, Ciphertext]]:
        """The next integrations (by id) whose client secret is under a key
        other than `primary`: id, generation, ciphertext."""
        async with pooled(self._pool) as conn:
            rows = await conn.fetch(
                """SELECT id, generation, client_secret_ciphertext FROM scm_integrations
                   WHERE client_secret_kek_id <> $1 AND ($2::uuid IS NULL OR id > $2)
                   ORDER BY id LIMIT $3""",
                primary,
                after,
                limit,
            )
        return [(r["id"], r["generation"], Ciphertext(r["client_secret_ciphertext"])) for r in rows]

    async def store_rewrapped_integrations(self, rows: list[tuple[UUID, int, Ciphertext, str]]) -> int:
        """As store_rewrapped, for integrations' client secrets."""
        async with pooled(self._pool) as conn:
            written: int = await conn.fetchval(
                """WITH new AS (
                       SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::text[])
                           AS n(id, generation, secret, kek)),
                   written AS (
                       UPDATE scm_integrations i
                       SET client_secret_ciphertext = new.secret, client_secret_kek_id = new.kek,
                           generation = i.generation + 1
                       FROM new
                       WHERE i.id = new.id AND i.generation = new.generation
                       RETURNING 1)
                   SELECT count(*) FROM written""",
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
            )
        return written

    async def store_rewrapped(
        self, rows: list[tuple[RewrapRow, Ciphertext, str, Ciphertext | None, str | None]]
    ) -> int:
        """Write re-wrapped ciphertexts in one statement (one transaction); a
        row whose generation moved on (a client wrote it meanwhile) is left
        alone. Returns the rows written."""
        async with pooled(self._pool) as conn:
            written: int = await conn.fetchval(
                """WITH new AS (
                       SELECT * FROM unnest(
                           $1::uuid[], $2::bigint[], $3::bytea[], $4::text[], $5::bytea[], $6::text[]
                       ) AS n(id, generation, token, token_kek, refresh, refresh_kek)),
                   written AS (
                       UPDATE host_authentication_tokens t
                       SET token_ciphertext = new.token, token_kek_id = new.token_kek,
                           refresh_token_ciphertext = new.refresh, refresh_token_kek_id = new.refresh_kek,
                           generation = t.generation + 1
                       FROM new
                       WHERE t.id = new.id AND t.generation = new.generation
                       RETURNING 1)
                   SELECT count(*) FROM written""",
                [r[0].id for r in rows],
                [r[0].generation for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
                [r[4] for r in rows],
            )
        return written
