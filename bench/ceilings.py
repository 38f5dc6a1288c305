"""The database's ceilings: plain asyncpg single-row statements, no service."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg


@dataclass
class Ceiling:
    """The database alone, at one concurrency: rows or queries per second."""

    bare_insert: float  # a 3-column table with only its primary key
    token_insert: float  # a Create's row into the tokens table, all its indexes
    select: float  # a primary-key SELECT of a token


_TOKEN_INSERT = """
INSERT INTO host_authentication_tokens
    (id, runner_id, subject_id, subject_principal, host, source, scopes,
     token_ciphertext, refresh_token_ciphertext, token_kek_id, refresh_token_kek_id)
VALUES ($1, $2, $3, 1, 'git.example.com', 0, '{}', $4, $4, 'bench-1', 'bench-1')
RETURNING id
"""


async def db_ceiling(dsn: str, clients: int, seconds: float, select_id: str) -> Ceiling:
    """Plain asyncpg single-row statements at this concurrency, no service:
    one connection per client, each waiting for its answer (durable commits)."""
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    await conns[0].execute("CREATE TABLE IF NOT EXISTS bench_ceiling (id uuid PRIMARY KEY, a bytea, b bytea)")
    payload = os.urandom(120)  # about a sealed secret's size

    async def loop(
        conn: asyncpg.Connection, work: Callable[[asyncpg.Connection], object], until: float
    ) -> int:
        n = 0
        while time.perf_counter() < until:
            await work(conn)  # type: ignore[misc]
            n += 1
        return n

    rates = []
    for work in (
        lambda c: c.fetchval(
            "INSERT INTO bench_ceiling VALUES ($1, $2, $2) RETURNING id", uuid.uuid4(), payload
        ),
        lambda c: c.fetchval(_TOKEN_INSERT, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), payload),
        lambda c: c.fetchrow("SELECT * FROM host_authentication_tokens WHERE id = $1", uuid.UUID(select_id)),
    ):
        start = time.perf_counter()
        counts = await asyncio.gather(*(loop(c, work, start + seconds) for c in conns))
        rates.append(sum(counts) / (time.perf_counter() - start))
    for c in conns:
        await c.close()
    return Ceiling(*rates)
