"""The database out: every method on every wire answers unavailable (for the
caller to retry), and the log gets a warning now and then, not a traceback
per call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import pytest

from hostauth.crypto import Sealer
from hostauth.errors import DATABASE_UNAVAILABLE
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from hostauth.store import close_pool
from tests.support.db import create_database
from tests.support.jwts import Issuer
from tests.support.lifecycle import create, delete, get, get_value, list_page, update
from tests.support.own_postgres import own_postgres, served_with_jwt
from tests.support.wire import RpcError, Wire


@pytest.fixture(name="own_postgres")
def _own_postgres() -> Iterator[EmbeddedPostgres]:
    with own_postgres() as pg:
        yield pg


async def _unavailable(wire: Wire, name: str, call: Callable[[Wire], Awaitable[object]]) -> None:
    with pytest.raises(RpcError) as caught:
        await call(wire)
    answer = (caught.value.code, caught.value.message)
    assert answer == ("unavailable", DATABASE_UNAVAILABLE), (wire.name, name)


async def test_every_method_on_every_wire_answers_unavailable(
    own_postgres: EmbeddedPostgres, sealer: Sealer, jwt_issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    pg = own_postgres
    async with served_with_jwt(await create_database(pg.dsn), sealer, jwt_issuer) as wires:
        token_id = (await create(wires[0])).id
        pg.stop()
        calls: dict[str, Callable[[Wire], Awaitable[object]]] = {
            "Create": create,
            "Get": lambda w: get(w, token_id),
            "List": lambda w: list_page(w, page_size=5),
            "Update": lambda w: update(w, token_id, scopes=["x"]),
            "Delete": lambda w: delete(w, token_id),
            "GetValue": lambda w: get_value(w, token_id),
        }
        caplog.set_level(logging.INFO)
        caplog.clear()
        for wire in wires:
            for name, call in calls.items():
                await _unavailable(wire, name, call)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert 1 <= len(warnings) <= 2  # 18 calls within a few seconds


async def test_a_statement_held_up_past_the_timeout_answers_unavailable(
    admin_dsn: str, sealer: Sealer, jwt_issuer: Issuer
) -> None:
    """A database that takes no calls but does not refuse them either (a
    lock held, a stalled disk) failed nothing: calls waited for ever."""
    dsn = await create_database(admin_dsn)
    async with served_with_jwt(dsn, sealer, jwt_issuer, timeout_s=0.5) as wires:
        token_id = (await create(wires[0])).id
        blocker = await asyncpg.connect(dsn)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE host_authentication_tokens IN ACCESS EXCLUSIVE MODE")
                calls: dict[str, Callable[[Wire], Awaitable[object]]] = {
                    "Create": create,
                    "Get": lambda w: get(w, token_id),
                    "GetValue": lambda w: get_value(w, token_id),
                }
                for wire in wires:
                    for name, call in calls.items():
                        await _unavailable(wire, name, call)
        finally:
            await blocker.close()
        for wire in wires:  # the cancelled statements left the pool's connections fit for use
            assert (await get(wire, token_id)).id == token_id


async def test_closing_a_pool_with_a_connection_never_given_back_ends_in_time(
    database_dsn: str, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """A leaked connection made the pool's close(), and so the process's
    stop, wait for ever."""
    leaky = await asyncpg.create_pool(database_dsn, min_size=1, max_size=2)
    leaked = await leaky.acquire()
    pid = leaked.get_server_pid()
    assert not await close_pool(leaky, wait_s=0.3)
    for _ in range(100):  # its backend goes once it sees the socket closed
        if not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            break
        await asyncio.sleep(0.05)
    assert not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
    assert "database connections still in use after 0.3 s; closed them" in caplog.text
    tidy = await asyncpg.create_pool(database_dsn, min_size=1, max_size=2)
    assert await close_pool(tidy, wait_s=5)
