"""SQL for the audit trail. Rows name who, what and how it ended; never a
secret, never a credential."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

from hostauth.core.model import AuditEvent
from hostauth.store.audit_partitions import UNPARTITIONED, unpartitioned_pending
from hostauth.store.pooled import pooled

if TYPE_CHECKING:
    from hostauth.store.connection import Connection


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: datetime
    event: AuditEvent


async def insert_audit(conn: Connection, event: AuditEvent) -> None:
    await conn.execute(
        """INSERT INTO audit_events
               (request_id, method, token_id, principal, subject_id, credential_id, outcome, integration_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        event.request_id,
        event.method,
        event.token_id,
        event.principal,
        event.subject_id,
        event.credential_id,
        event.outcome,
        event.integration_id,
    )


_INSERT_MANY = """
INSERT INTO audit_events
    (request_id, method, token_id, principal, subject_id, credential_id, outcome, integration_id)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::uuid[], $4::smallint[], $5::uuid[], $6::text[], $7::text[], $8::uuid[]
)
"""


async def insert_audits(conn: Connection, events: Sequence[AuditEvent]) -> None:
    """Many audit rows in one statement (and one commit)."""
    if len(events) == 1:
        return await insert_audit(conn, events[0])
    await conn.execute(
        _INSERT_MANY,
        [e.request_id for e in events],
        [e.method for e in events],
        [e.token_id for e in events],
        [e.principal for e in events],
        [e.subject_id for e in events],
        [e.credential_id for e in events],
        [e.outcome for e in events],
        [e.integration_id for e in events],
    )
    return None


async def list_audit(
    pool: asyncpg.Pool,
    *,
    token_id: UUID | None = None,
    subject_id: UUID | None = None,
    integration_id: UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[AuditRow]:
    """Newest first: the events at or after `since` and before `until`."""
    where: list[str] = []
    params: list[object] = []
    for column, op, value in (
        ("token_id", "=", token_id),
        ("subject_id", "=", subject_id),
        ("integration_id", "=", integration_id),
        ("at", ">=", since),
        ("at", "<", until),
    ):
        if value is not None:
            params.append(value)
            where.append(f"{column} {op} ${len(params)}")
    params.append(limit)
    columns = (
        "at, id, request_id, method, token_id, principal, subject_id, credential_id, outcome, integration_id"
    )
    condition = " AND ".join(where) or "TRUE"
    async with pooled(pool) as conn:
        # Until the rows from before partitioning are attached, they are read where they are.
        tables = ["audit_events"]
        if await unpartitioned_pending(conn):
            tables.append(UNPARTITIONED)
        union = " UNION ALL ".join(f"SELECT {columns} FROM {t} WHERE {condition}" for t in tables)
        sql = f"SELECT * FROM ({union}) e ORDER BY at DESC, id DESC LIMIT ${len(params)}"
        rows = await conn.fetch(sql, *params)
    return [
        AuditRow(
            r["at"],
            AuditEvent(
                r["request_id"],
                r["method"],
                r["token_id"],
                r["principal"],
                r["subject_id"],
                r["credential_id"],
                r["outcome"],
                r["integration_id"],
            ),
        )
        for r in rows
    ]
