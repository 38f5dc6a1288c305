"""Many token rows in one statement: what concurrent Creates, GetValues and
Gets share when the store coalesces them (server/hostauth/store/coalesce.py). One
round trip and, for writes, one commit per batch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from hostauth.core.model import SecretRead, TokenRecord
from hostauth.store.token_rows import (
    COLUMNS,
    Found,
    NewToken,
    audit_args,
    found_of,
    record_of,
    token_args,
)

if TYPE_CHECKING:
    from hostauth.store.connection import Connection

# Many Creates in one statement (one round trip, one commit): the rows come in
# as parallel arrays, the scopes of each as a JSON array (text[] cannot nest).
# Answers the ids inserted; a row whose triple exists is skipped, audit and all.
_INSERT_MANY_AUDITED = """
WITH input AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::uuid[], $3::uuid[], $4::smallint[], $5::text[], $6::smallint[],
        $7::timestamptz[], $8::uuid[], $9::text[], $10::bytea[], $11::bytea[], $12::text[], $13::text[],
        $14::text[], $15::text[], $16::smallint[], $17::uuid[], $18::text[], $19::text[]
    ) AS t(id, runner_id, subject_id, subject_principal, host, source, expires_at, integration_id,
           scopes, token_ciphertext, refresh_token_ciphertext, token_kek_id, refresh_token_kek_id,
           request_id, method, principal, actor_id, credential_id, outcome)
),
w AS (
    INSERT INTO host_authentication_tokens
        (id, runner_id, subject_id, subject_principal, host, source, expires_at,
         integration_id, scopes, token_ciphertext, refresh_token_ciphertext,
         token_kek_id, refresh_token_kek_id)
    SELECT id, runner_id, subject_id, subject_principal, host, source, expires_at, integration_id,
           ARRAY(SELECT jsonb_array_elements_text(scopes::jsonb)), token_ciphertext,
           refresh_token_ciphertext, token_kek_id, refresh_token_kek_id
    FROM input
    ON CONFLICT ON CONSTRAINT host_authentication_tokens_triple DO NOTHING
    RETURNING id
),
a AS (
    INSERT INTO audit_events (request_id, method, token_id, principal, subject_id, credential_id, outcome)
    SELECT i.request_id, i.method, w.id, i.principal, i.actor_id, i.credential_id, i.outcome
    FROM w JOIN input i ON i.id = w.id
)
SELECT id FROM w
"""

# Secret reads, many in one statement: each request's token (if its caller's
# scope holds it) with its ciphertexts, and an audit row for each token read,
# committed together: no ciphertext leaves the database without a record of
# it. WITH ORDINALITY tells which answer is whose.
_READ_SECRETS_AUDITED = f"""
WITH req AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::smallint[], $7::uuid[], $8::text[]
    ) WITH ORDINALITY AS r(id, scope_runner, scope_subject, request_id, method, principal, actor_id,
                           credential_id, ord)
),
t AS (
    SELECT req.ord, req.request_id, req.method, req.principal, req.actor_id, req.credential_id,
           {", ".join("tok." + c.strip() for c in COLUMNS.split(","))},
           tok.token_ciphertext, tok.refresh_token_ciphertext, tok.token_kek_id, tok.refresh_token_kek_id
    FROM req JOIN host_authentication_tokens tok ON tok.id = req.id
    WHERE (req.scope_runner IS NULL OR tok.runner_id = req.scope_runner)
      AND (req.scope_subject IS NULL OR tok.subject_id = req.scope_subject)
),
a AS (
    INSERT INTO audit_events (request_id, method, token_id, principal, subject_id, credential_id, outcome)
    SELECT request_id, method, id, principal, actor_id, credential_id, 'ok' FROM t
)
SELECT * FROM t
"""

_GET_MANY = f"SELECT {COLUMNS} FROM host_authentication_tokens WHERE id = ANY($1::uuid[])"


def _insert_many_args(rows: Sequence[NewToken]) -> list[list[object]]:
    columns: list[list[object]] = [[] for _ in range(19)]
    for row in rows:
        values = (
            *token_args(row.record, row.secrets),
            *audit_args(row.audit),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    columns[8] = [json.dumps(row.record.scopes) for row in rows]
    return columns


async def insert_many(conn: Connection, rows: Sequence[NewToken]) -> set[UUID]:
    """Insert the rows that are new, each with its audit row; the ids inserted."""
    return {r["id"] for r in await conn.fetch(_INSERT_MANY_AUDITED, *_insert_many_args(rows))}


async def read_many(conn: Connection, reads: Sequence[SecretRead]) -> list[Found]:
    """Per read, its token if the read's scope holds it, else None; an audit
    row is written for each token read, in the same statement."""
    rows = await conn.fetch(
        _READ_SECRETS_AUDITED,
        [r.token_id for r in reads],
        [r.runner_id for r in reads],
        [r.subject_id for r in reads],
        [r.audit.request_id for r in reads],
        [r.audit.method for r in reads],
        [r.audit.principal for r in reads],
        [r.audit.subject_id for r in reads],
        [r.audit.credential_id for r in reads],
    )
    found: list[Found] = [None] * len(reads)
    for row in rows:
        found[row["ord"] - 1] = found_of(row)
    return found


async def get_many(conn: Connection, ids: Sequence[UUID]) -> dict[UUID, TokenRecord]:
    """The tokens that exist among these ids, by id."""
    rows = await conn.fetch(_GET_MANY, list(set(ids)))
    return {row["id"]: record_of(row) for row in rows}
