"""The asyncpg pool, with the schema brought up to date before first use."""

from __future__ import annotations

import asyncpg

from server.store.migrate import migrate


async def connect_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool
