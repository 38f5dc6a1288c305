"""The token store: single-row SQL on a request's pooled connection
(TokenSession), and the calls concurrent requests share (TokenStore).

It speaks rows (token_rows.py) and never sees a plaintext secret; the vault
above it (hostauth/vault.py) seals and opens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

from hostauth.core.model import (
    KEEP,
    AuditEvent,
    Keep,
    ListQuery,
    Position,
    SecretRead,
    TokenChanges,
    TokenRecord,
)
from hostauth.store.audit import insert_audit, insert_audits
from hostauth.store.coalesce import SERVICE_BATCHES_IN_FLIGHT, Coalescer
from hostauth.store.pooled import pooled
from hostauth.store.token_batches import get_many, insert_many, read_many
from hostauth.store.token_rows import (
    COLUMNS,
    Found,
    NewToken,
    Sealed,
    SealedSecrets,
    audit_args,
    record_of,
    token_args,
)
from hostauth.telemetry import metrics

if TYPE_CHECKING:
    from hostauth.store.connection import Connection

_INSERT = """
INSERT INTO host_authentication_tokens
    (id, runner_id, subject_id, subject_principal, host, source, expires_at,
     integration_id, scopes, token_ciphertext, refresh_token_ciphertext,
     token_kek_id, refresh_token_kek_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT ON CONSTRAINT host_authentication_tokens_triple DO NOTHING
RETURNING id, version
"""

_REPLACE = """
UPDATE host_authentication_tokens
SET subject_principal = $4, source = $6, expires_at = $7, integration_id = $8,
    scopes = $9, token_ciphertext = $10, refresh_token_ciphertext = $11,
    token_kek_id = $12, refresh_token_kek_id = $13,
    generation = generation + 1, version = version + 1, updated_at = now(),
    needs_sign_in = false, refresh_failure = NULL
WHERE id = $1 AND runner_id = $2 AND subject_id IS NOT DISTINCT FROM $3 AND host = $5
RETURNING id, version
"""

_FIND_ID = """
SELECT id FROM host_authentication_tokens
WHERE runner_id = $1 AND subject_id IS NOT DISTINCT FROM $2 AND host = $3
"""

# One statement: each column takes the new value only when its flag is set,
# so concurrent Updates of different fields never undo each other.
_UPDATE = """
UPDATE host_authentication_tokens SET
    token_ciphertext = CASE WHEN $2 THEN $3 ELSE token_ciphertext END,
    token_kek_id = CASE WHEN $2 THEN $4 ELSE token_kek_id END,
    refresh_token_ciphertext = CASE WHEN $5 THEN $6 ELSE refresh_token_ciphertext END,
    refresh_token_kek_id = CASE WHEN $5 THEN $7 ELSE refresh_token_kek_id END,
    expires_at = CASE WHEN $8 THEN $9 ELSE expires_at END,
    scopes = CASE WHEN $10 THEN $11 ELSE scopes END,
    -- New secrets replace refused ones.
    needs_sign_in = needs_sign_in AND NOT ($2 OR $5),
    refresh_failure = CASE WHEN $2 OR $5 THEN NULL ELSE refresh_failure END,
    generation = generation + 1,
    version = version + 1,
    updated_at = now()
WHERE id = $1 AND ($12::uuid IS NULL OR runner_id = $12) AND ($13::uuid IS NULL OR subject_id = $13)
  AND ($14::bigint IS NULL OR version = $14)
RETURNING id, version
"""

_DELETE = """
DELETE FROM host_authentication_tokens
WHERE id = $1 AND ($2::uuid IS NULL OR runner_id = $2) AND ($3::uuid IS NULL OR subject_id = $3)
  AND ($4::bigint IS NULL OR version = $4)
RETURNING id, version
"""


def _audited(statement: str, params: int) -> str:
    """The write and its audit row in one statement: atomic, and one round trip
    instead of BEGIN, write, audit, COMMIT. Answers the version the row
    written has (NULL: none written)."""
    p = [f"${params + i}" for i in range(1, 7)]
    return f"""
WITH w AS ({statement}),
a AS (INSERT INTO audit_events (request_id, method, token_id, principal, subject_id, credential_id, outcome)
      SELECT {p[0]}, {p[1]}, w.id, {p[2]}::smallint, {p[3]}::uuid, {p[4]}, {p[5]} FROM w)
SELECT max(w.version) FROM w
"""


_INSERT_AUDITED = _audited(_INSERT, 13)

_REPLACE_AUDITED = _audited(_REPLACE, 13)
_UPDATE_AUDITED = _audited(_UPDATE, 14)
_DELETE_AUDITED = _audited(_DELETE, 4)


async def _insert_alone(conn: Connection, row: NewToken) -> bool | BaseException:
    try:
        return await TokenSession(conn).insert(row.record, row.secrets, row.audit)
    except asyncpg.PostgresError as exc:
        return exc


async def _audit_alone(conn: Connection, event: AuditEvent) -> BaseException | None:
    try:
        await insert_audit(conn, event)
    except asyncpg.PostgresError as exc:
        return exc
    return None


async def _read_alone(conn: Connection, read: SecretRead) -> Found | BaseException:
    try:
        return (await read_many(conn, [read]))[0]
    except asyncpg.PostgresError as exc:
        return exc


def _list_statement(query: ListQuery) -> tuple[str, list[object]]:
    # Only fixed fragments are joined: the filters present pick the index.
    params: list[object] = []

    def param(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    where: list[str] = []
    if query.runner_id is not None:
        where.append(f"runner_id = {param(query.runner_id)}")
    if query.subject_id is not None:
        where.append(f"subject_id = {param(query.subject_id)}")
    if query.after is not None:
        where.append(f"(created_at, id) > ({param(query.after[0])}, {param(query.after[1])})")
    sql = (
        f"SELECT {COLUMNS}, created_at FROM host_authentication_tokens "
        f"WHERE {' AND '.join(where) or 'TRUE'} ORDER BY created_at, id LIMIT {param(query.limit)}"
    )
    return sql, params


class TokenSession:
    """The token queries of one request, on one pooled connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def insert(self, record: TokenRecord, secrets: SealedSecrets, audit: AuditEvent) -> bool:
        """Insert a new token and its audit row; False (and neither) when its
        (runner, subject, host) exists."""
        written: int | None = await self._conn.fetchval(
            _INSERT_AUDITED, *token_args(record, secrets), *audit_args(audit)
        )
        return written is not None

    async def replace(self, record: TokenRecord, secrets: SealedSecrets, audit: AuditEvent) -> int | None:
        """Overwrite the token with this id and triple, with its audit row;
        its new version, or None when there is none."""
        version: int | None = await self._conn.fetchval(
            _REPLACE_AUDITED, *token_args(record, secrets), *audit_args(audit)
        )
        return version

    async def find_id(self, runner_id: UUID, subject_id: UUID | None, host: str) -> UUID | None:
        found: UUID | None = await self._conn.fetchval(_FIND_ID, runner_id, subject_id, host)
        return found

    async def list(self, query: ListQuery) -> list[tuple[TokenRecord, Position]]:
        sql, params = _list_statement(query)
        rows = await self._conn.fetch(sql, *params)
        return [(record_of(row), (row["created_at"], row["id"])) for row in rows]

    async def update(
        self,
        token_id: UUID,
        changes: TokenChanges[Sealed],
        *,
        runner_id: UUID | None,
        subject_id: UUID | None,
        audit: AuditEvent,
        if_version: int | None = None,
    ) -> int | None:
        """Apply the changes; the new version, or None when there is no such
        token with the given runner and subject ids (None: any) at version
        if_version (None: any)."""
        args: list[object] = [token_id]
        for sealed in (changes.token, changes.refresh_token):
            if isinstance(sealed, Keep):
                args += [False, None, None]
            elif sealed is None:
                args += [True, None, None]
            else:
                args += [True, sealed.ciphertext, sealed.key_id]
        for value in (changes.expires_at, changes.scopes):
            if value is KEEP:
                args += [False, None]
            else:
                args += [True, list(value) if isinstance(value, tuple) else value]
        version: int | None = await self._conn.fetchval(
            _UPDATE_AUDITED, *args, runner_id, subject_id, if_version, *audit_args(audit)
        )
        return version

    async def delete(
        self,
        token_id: UUID,
        *,
        runner_id: UUID | None,
        subject_id: UUID | None,
        audit: AuditEvent,
        if_version: int | None = None,
    ) -> bool:
        """Delete the token (with its audit row); False when there is none (at
        version if_version, when given)."""
        version: int | None = await self._conn.fetchval(
            _DELETE_AUDITED, token_id, runner_id, subject_id, if_version, *audit_args(audit)
        )
        return version is not None


def _sizes(statement: str) -> Callable[[int], None]:
    return metrics.batch_size.labels(statement).observe


class TokenStore:
    __slots__ = ("_audits", "_gets", "_inserts", "_pool", "_reads")

    def __init__(self, pool: asyncpg.Pool, *, batches_in_flight: int = SERVICE_BATCHES_IN_FLIGHT) -> None:
        """batches_in_flight: per kind of batch, in this process (see
        batches_in_flight_per_worker)."""
        self._pool = pool
        n = batches_in_flight
        self._inserts: Coalescer[NewToken, bool] = Coalescer(
            self._insert_many, max_in_flight=n, on_batch=_sizes("insert")
        )
        self._audits: Coalescer[AuditEvent, None] = Coalescer(
            self._audit_many, max_in_flight=n, on_batch=_sizes("audit")
        )
        self._reads: Coalescer[SecretRead, Found] = Coalescer(
            self._read_many, max_in_flight=n, on_batch=_sizes("read_secrets")
        )
        self._gets: Coalescer[UUID, TokenRecord | None] = Coalescer(
            self._get_many, max_in_flight=n, on_batch=_sizes("get")
        )

    async def get(self, token_id: UUID) -> TokenRecord | None:
        """A token's metadata. Concurrent ones share a statement."""
        return await self._gets.submit(token_id)

    async def _get_many(self, ids: Sequence[UUID]) -> list[TokenRecord | BaseException | None]:
        async with pooled(self._pool) as conn:
            found = await get_many(conn, ids)
        return [found.get(token_id) for token_id in ids]

    async def read_secrets(self, read: SecretRead) -> Found:
        """The token with its ciphertexts, its audit row committed with the
        read; None (and no audit row) when there is no such token in the
        caller's scope. Concurrent reads share a statement."""
        return await self._reads.submit(read)

    async def _read_many(self, reads: Sequence[SecretRead]) -> list[Found | BaseException]:
        async with pooled(self._pool) as conn:
            try:
                return list(await read_many(conn, reads))
            except asyncpg.PostgresError:
                if len(reads) == 1:
                    raise
                # One failing audit row fails the statement: alone, each fails on its own.
                return [await _read_alone(conn, read) for read in reads]

    async def audit(self, event: AuditEvent) -> None:
        """Write an audit row (committed when this returns). Concurrent ones
        share a statement."""
        await self._audits.submit(event)

    async def _audit_many(self, events: Sequence[AuditEvent]) -> list[BaseException | None]:
        async with pooled(self._pool) as conn:
            try:
                await insert_audits(conn, events)
            except asyncpg.PostgresError:
                if len(events) == 1:
                    raise
                return [await _audit_alone(conn, event) for event in events]
        return [None] * len(events)

    async def insert(self, row: NewToken) -> bool:
        """Insert a new token and its audit row; False (and neither) when its
        (runner, subject, host) exists. Concurrent inserts share a statement."""
        return await self._inserts.submit(row)

    async def _insert_many(self, rows: Sequence[NewToken]) -> list[bool | BaseException]:
        async with pooled(self._pool) as conn:
            if len(rows) == 1:
                return [await TokenSession(conn).insert(rows[0].record, rows[0].secrets, rows[0].audit)]
            try:
                inserted = await insert_many(conn, rows)
            except asyncpg.PostgresError:
                # One bad row fails the statement: alone, each fails on its own.
                return [await _insert_alone(conn, row) for row in rows]
        return [row.record.id in inserted for row in rows]

    def session(self) -> _PooledSession:
        # One acquire per request: asyncpg resets a connection on release, so
        # per-query acquires would cost a round trip each.
        return _PooledSession(self._pool)


class _PooledSession(pooled):
    """`async with store.session() as db`: a TokenSession on one pooled
    connection (closed instead of reused after an error that leaves it in
    an unknown state)."""

    __slots__ = ()

    async def __aenter__(self) -> TokenSession:  # type: ignore[override]
        return TokenSession(await super().__aenter__())
