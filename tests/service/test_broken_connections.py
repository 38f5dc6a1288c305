"""A connection left in an unknown state (asyncpg's InternalClientError from a
half-lost connection, or its InterfaceError) is terminated, never handed to
the next caller; and the call it failed answers unavailable, not internal."""

from __future__ import annotations

import asyncpg
import pytest

from hostauth.errors import DATABASE_UNAVAILABLE, ErrorCode
from hostauth.store.outage import where
from hostauth.store.pooled import pooled
from hostauth.transport.status import classify

HALF_LOST = asyncpg.exceptions.InternalClientError(
    "cannot switch to state 12; another operation (2) is in progress"
)


@pytest.mark.parametrize(
    "error",
    [HALF_LOST, asyncpg.InterfaceError("cannot perform operation: another operation is in progress")],
    ids=["internal-client-error", "interface-error"],
)
async def test_a_connection_an_error_left_in_an_unknown_state_is_not_reused(
    database_dsn: str, error: Exception
) -> None:
    pool = await asyncpg.create_pool(database_dsn, min_size=1, max_size=1)
    try:
        async with pooled(pool) as conn:
            healthy = conn.get_server_pid()
        async with pooled(pool) as conn:
            assert conn.get_server_pid() == healthy  # one connection, reused while healthy

        async def fail_on_it() -> None:
            async with pooled(pool) as conn:
                await conn.fetchval("SELECT 1")
                raise error

        with pytest.raises(type(error)):
            await fail_on_it()
        async with pooled(pool) as conn:
            assert conn.get_server_pid() != healthy
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


def test_connection_state_errors_are_unavailable() -> None:
    for error in (
        HALF_LOST,
        asyncpg.InterfaceError("pool is closing"),
        asyncpg.ReadOnlySQLTransactionError(),
    ):
        assert classify("GetHostAuthenticationTokenValue", error) == (
            ErrorCode.UNAVAILABLE,
            DATABASE_UNAVAILABLE,
        ), error


def test_where_names_the_database_never_its_password() -> None:
    assert where("postgresql://app:s3cr3t@db1:5432,db2:5432/hostauth") == "db1:5432,db2:5432"
    assert where("postgresql://postgres@/postgres?host=/tmp&port=5433") == (
        "/tmp port 5433 (a Unix socket directory)"
    )
