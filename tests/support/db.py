"""Test databases on the test PostgreSQL server."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(admin_dsn: str) -> str:
    """Create an empty database with a unique name; return its DSN."""
    name = "hostauth_test_" + uuid4().hex[:12]
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def fetch_rows(dsn: str, query: str) -> list[asyncpg.Record]:
    """`query`'s rows, on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def fetch_value(dsn: str, query: str) -> object:
    """`query`'s one value, on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def until_true(dsn: str, query: str, within_s: float = 30) -> None:
    """Polls `query` until it is true; AssertionError after `within_s`."""
    deadline = time.monotonic() + within_s
    while not await fetch_value(dsn, query):
        assert time.monotonic() < deadline, f"not within {within_s:g} s: {query}"
        await asyncio.sleep(0.1)


async def make_standby_synchronous(primary_dsn: str) -> None:
    """Commits on the primary wait for its (one) standby from now on."""
    await fetch_value(primary_dsn, "ALTER SYSTEM SET synchronous_standby_names = '*'")
    await fetch_value(primary_dsn, "SELECT pg_reload_conf()")
    await until_true(primary_dsn, "SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = 'sync'")
