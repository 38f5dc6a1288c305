"""A call held up in the database: its time is bounded by HOSTAUTH_DB_TIMEOUT_S
end to end (queueing behind a batch included), and a stop answers it by its
grace, on every wire, with `unavailable`; never `internal`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from hostauth.core.service import HostAuthService
from hostauth.errors import DATABASE_UNAVAILABLE
from hostauth.runtime.serve import Running
from hostauth.store import ApiKeyStore
from hostauth.transport.calls import STOPPED_MID_CALL
from hostauth.transport.http_server import SHUTDOWN_GRACE_S
from tests.service.test_deadlines import lock_tokens
from tests.support.lifecycle import create, get
from tests.support.requests import create_request
from tests.support.serving import serving
from tests.support.wire import WIRES, ConnectWire, GrpcWire, RpcError, Wire

BUDGET_S = 1.0


def _wire(running: Running, name: str, credential: str) -> Wire:
    if name == "grpc":
        return GrpcWire(str(running.grpc), credential)
    return ConnectWire(running.http_url, name.removeprefix("connect-"), credential=credential)


@pytest.fixture
async def token_id(wire: Wire) -> str:
    return (await create(wire, create_request())).id


@pytest.fixture
async def bounded(core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str) -> AsyncIterator[Running]:
    async with serving(core, api_keys, database_dsn, db_timeout_s=BUDGET_S) as running:
        yield running


@pytest.mark.parametrize("name", WIRES)
async def test_calls_behind_a_locked_table_answer_unavailable_within_the_budget(
    bounded: Running, admin_key: str, database_dsn: str, name: str, token_id: str
) -> None:
    wire = _wire(bounded, name, admin_key)
    locker = await lock_tokens(database_dsn)
    try:
        started = time.monotonic()
        # Several at once: the later ones queue behind the batch in flight,
        # and still end within their own budget.
        outcomes = await asyncio.gather(*(get(wire, token_id) for _ in range(8)), return_exceptions=True)
        took = time.monotonic() - started
    finally:
        await locker.close()
        await wire.close()  # type: ignore[attr-defined]
    assert all(isinstance(o, RpcError) for o in outcomes), outcomes
    assert {(o.code, o.message) for o in outcomes if isinstance(o, RpcError)} == {
        ("unavailable", DATABASE_UNAVAILABLE)
    }
    assert took < BUDGET_S + 1.0, took  # the statement timeout alone was 10 s


async def test_a_stop_answers_calls_held_in_the_database_by_its_grace(
    core: HostAuthService, api_keys: ApiKeyStore, admin_key: str, database_dsn: str, wire: Wire
) -> None:
    token_id = (await create(wire, create_request())).id
    locker = await lock_tokens(database_dsn)
    try:
        async with serving(core, api_keys, database_dsn, db_timeout_s=30.0) as running:
            wires = [_wire(running, name, admin_key) for name in WIRES]
            calls = [asyncio.create_task(get(w, token_id)) for w in wires for _ in range(3)]
            await asyncio.sleep(0.3)  # all of them held by the lock
            assert not any(c.done() for c in calls)
            started = time.monotonic()
        stopped = time.monotonic() - started
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await locker.close()
        for w in wires:
            await w.close()  # type: ignore[attr-defined]
    assert stopped < SHUTDOWN_GRACE_S + 1.0, stopped
    answers = {(o.code, o.message) if isinstance(o, RpcError) else repr(o) for o in outcomes}
    assert answers == {("unavailable", STOPPED_MID_CALL)}
