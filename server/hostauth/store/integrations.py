"""The SCM integration and runner-key store: one statement per call, each
write with its audit row in the same statement. Client secrets are only
ever ciphertext here (hostauth/integration_vault.py seals and opens)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from hostauth.core.model import KEEP, AuditEvent, IntegrationChanges, IntegrationRecord, Keep, Position
from hostauth.store.pooled import pooled
from hostauth.store.token_rows import Sealed, audit_args

_COLUMNS = (
    "i.id, i.runner_id, i.scm_id, i.host, i.oauth_client_id, i.issuer_url, i.pat, i.virtual_directory,"
    " i.client_secret_ciphertext, i.client_secret_kek_id, i.created_at, r.public_key"
)
_FROM = "scm_integrations i LEFT JOIN runners r ON r.id = i.runner_id"

_AUDIT_COLUMNS = "request_id, method, token_id, principal, subject_id, credential_id, outcome, integration_id"


def _audit(source: str, first: int, token_id: str = "NULL::uuid", integration_id: str = "w.id") -> str:  # noqa: S107 # SQL, not a secret
    """An audit INSERT taking its event from parameters $first.. (six), one
    row per row of `source`."""
    p = [f"${first + i}" for i in range(6)]
    return (
        f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) SELECT {p[0]}, {p[1]}, {token_id},"
        f" {p[2]}::smallint, {p[3]}::uuid, {p[4]}, {p[5]}, {integration_id} FROM {source}"
    )


_INSERT = f"""
WITH w AS (
    INSERT INTO scm_integrations
        (id, runner_id, scm_id, host, oauth_client_id, client_secret_ciphertext, client_secret_kek_id,
         issuer_url, pat, virtual_directory)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (runner_id, lower(host)) DO NOTHING
    RETURNING id),
a AS ({_audit("w", 11)})
SELECT count(*) FROM w
"""

# Each column takes the new value only when its flag is set, so concurrent
# Updates of different fields never undo each other.
_UPDATE = f"""
WITH w AS (
    UPDATE scm_integrations SET
        oauth_client_id = CASE WHEN $2 THEN $3 ELSE oauth_client_id END,
        client_secret_ciphertext = CASE WHEN $4 THEN $5 ELSE client_secret_ciphertext END,
        client_secret_kek_id = CASE WHEN $4 THEN $6 ELSE client_secret_kek_id END,
        pat = CASE WHEN $7 THEN $8 ELSE pat END,
        issuer_url = CASE WHEN $9 THEN $10 ELSE issuer_url END,
        virtual_directory = CASE WHEN $11 THEN $12 ELSE virtual_directory END,
        generation = generation + 1,
        updated_at = now()
    WHERE id = $1 AND ($13::uuid IS NULL OR runner_id = $13)
    RETURNING id),
a AS ({_audit("w", 14)})
SELECT count(*) FROM w
"""

# The integration and every token issued through it, each with an audit row
# naming the integration (the foreign key would cascade to the tokens too,
# unaudited; deleting them here first records each).
_DELETE = f"""
WITH w AS (
    DELETE FROM scm_integrations WHERE id = $1 AND ($2::uuid IS NULL OR runner_id = $2) RETURNING id),
t AS (
    DELETE FROM host_authentication_tokens WHERE integration_id IN (SELECT id FROM w) RETURNING id),
a AS ({_audit("w", 3)}),
b AS ({_audit("t", 3, token_id="t.id", integration_id="$1")})
SELECT (SELECT count(*) FROM w) AS found, ARRAY(SELECT id FROM t) AS tokens
"""

_SET_KEY = f"""
WITH w AS (
    INSERT INTO runners (id, public_key) VALUES ($1, $2)
    ON CONFLICT (id) DO UPDATE SET public_key = $2, updated_at = now()
    RETURNING id),
a AS ({_audit("w", 3, integration_id="NULL::uuid")})
SELECT count(*) FROM w
"""


@dataclass(frozen=True, slots=True)
class IntegrationRow:
    record: IntegrationRecord
    client_secret: Sealed | None
    runner_key: bytes | None
    position: Position

    def __repr__(self) -> str:
        return f"IntegrationRow(id={self.record.id})"


def _row(r: asyncpg.Record) -> IntegrationRow:
    record = IntegrationRecord(
        r["id"],
        r["runner_id"],
        r["scm_id"],
        r["host"],
        r["oauth_client_id"],
        r["issuer_url"],
        r["pat"],
        r["virtual_directory"],
    )
    ciphertext = r["client_secret_ciphertext"]
    secret = None if ciphertext is None else Sealed(ciphertext, r["client_secret_kek_id"])
    key = r["public_key"]
    return IntegrationRow(record, secret, None if key is None else bytes(key), (r["created_at"], r["id"]))


def _flag(value: object) -> tuple[bool, object]:
    return (False, None) if value is KEEP else (True, value)


class IntegrationStore:
    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(self, record: IntegrationRecord, secret: Sealed | None, audit: AuditEvent) -> bool:
        async with pooled(self._pool) as conn:
            written: int = await conn.fetchval(
                _INSERT,
                record.id,
                record.runner_id,
                record.scm_id,
                record.host,
                record.oauth_client_id,
                None if secret is None else secret.ciphertext,
                None if secret is None else secret.key_id,
                record.issuer_url,
                record.pat,
                record.virtual_directory,
                *audit_args(audit),
            )
        return written == 1

    async def get(self, integration_id: UUID) -> IntegrationRow | None:
        async with pooled(self._pool) as conn:
            found = await conn.fetchrow(f"SELECT {_COLUMNS} FROM {_FROM} WHERE i.id = $1", integration_id)
        return None if found is None else _row(found)

    async def list(
        self, runner_ids: tuple[UUID, ...], after: Position | None, limit: int
    ) -> list[IntegrationRow]:
        async with pooled(self._pool) as conn:
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM {_FROM}
                    WHERE (cardinality($1::uuid[]) = 0 OR i.runner_id = ANY($1::uuid[]))
                      AND ($2::timestamptz IS NULL OR (i.created_at, i.id) > ($2, $3::uuid))
                    ORDER BY i.created_at, i.id LIMIT $4""",
                list(runner_ids),
                None if after is None else after[0],
                None if after is None else after[1],
                limit,
            )
        return [_row(r) for r in rows]

    async def update(
        self,
        integration_id: UUID,
        changes: IntegrationChanges[Sealed],
        *,
        runner_id: UUID | None,
        audit: AuditEvent,
    ) -> bool:
        secret = changes.client_secret
        secret_args: tuple[object, ...]
        if isinstance(secret, Keep):
            secret_args = (False, None, None)
        elif secret is None:
            secret_args = (True, None, None)
        else:
            secret_args = (True, secret.ciphertext, secret.key_id)
        async with pooled(self._pool) as conn:
            written: int = await conn.fetchval(
                _UPDATE,
                integration_id,
                *_flag(changes.oauth_client_id),
                *secret_args,
                *_flag(changes.pat),
                *_flag(changes.issuer_url),
                *_flag(changes.virtual_directory),
                runner_id,
                *audit_args(audit),
            )
        return written == 1

    async def delete(
        self, integration_id: UUID, *, runner_id: UUID | None, audit: AuditEvent
    ) -> tuple[UUID, ...] | None:
        async with pooled(self._pool) as conn:
            row = await conn.fetchrow(_DELETE, integration_id, runner_id, *audit_args(audit))
        assert row is not None  # an aggregate always answers one row
        return tuple(row["tokens"]) if row["found"] else None

    async def runner_key(self, runner_id: UUID) -> bytes | None:
        async with pooled(self._pool) as conn:
            key: bytes | None = await conn.fetchval("SELECT public_key FROM runners WHERE id = $1", runner_id)
        return None if key is None else bytes(key)

    async def set_runner_key(self, runner_id: UUID, public_key: bytes, audit: AuditEvent) -> None:
        async with pooled(self._pool) as conn:
            await conn.fetchval(_SET_KEY, runner_id, public_key, *audit_args(audit))
