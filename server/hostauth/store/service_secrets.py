"""The service's own secrets, shared by every replica through the database."""

from __future__ import annotations

import os

import asyncpg

from hostauth.store.pooled import pooled

CURSOR_KEY = "list-cursor-hmac"


async def cursor_key(pool: asyncpg.Pool) -> bytes:
    """The key that authenticates List cursors, made by the first replica."""
    async with pooled(pool) as conn:
        await conn.execute(
            "INSERT INTO service_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            CURSOR_KEY,
            os.urandom(32),
        )
        key: bytes = await conn.fetchval("SELECT value FROM service_secrets WHERE name = $1", CURSOR_KEY)
    return key
