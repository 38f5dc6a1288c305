"""The asyncpg pool, with the schema brought up to date before first use."""

from __future__ import annotations

import asyncpg

from server.store.migrate import migrate


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool. The store keeps
    no session state (no SET, LISTEN or session advisory locks), so unlike
    asyncpg's default (a RESET ALL round trip per release) only a transaction
    left open by a cancelled request needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


# How long connecting, and then any one statement, may take before the call
# fails (as an outage: unavailable) instead of waiting on a database that
# does not answer.
DEFAULT_TIMEOUT_S = 10.0


async def connect_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, timeout_s: float = DEFAULT_TIMEOUT_S
) -> asyncpg.Pool:
    # Migrations run on a connection of their own, without the statement
    # timeout: one may rewrite a large table, or wait for another starter's.
    conn = await asyncpg.connect(dsn, timeout=timeout_s)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        reset=_reset,
        timeout=timeout_s,
        command_timeout=timeout_s,
        # No idle-connection timer: asyncpg would arm and cancel one on every
        # acquire and release. Idle connections cost the server little.
        max_inactive_connection_lifetime=0,
    )
    return pool
