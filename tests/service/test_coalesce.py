"""Coalesced writes: batches form only under load, every caller gets its own
outcome, and the batched Create statement on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import pytest

from gitpod.v1 import identity_pb2
from hostauth.core.model import AuditEvent, SecretRead, TokenRecord
from hostauth.store import NewToken, Sealed, SealedSecrets, TokenStore
from hostauth.store.coalesce import SERVICE_BATCHES_IN_FLIGHT, Coalescer, batches_in_flight_per_worker
from hostauth.store.token_rows import Ciphertext


class Recorder:
    """A flush that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def flush(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [ValueError(f"item {i} is odd") if i % 2 else i * 10 for i in items]


async def test_a_lone_write_goes_at_once_and_alone() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.flush)
    assert await asyncio.wait_for(coalescer.submit(2), timeout=1) == 20
    assert rec.batches == [[2]]


async def test_writes_arriving_while_flushes_are_in_flight_share_the_next_batch() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(rec.flush, max_in_flight=2, max_batch=4)
    waiters = [asyncio.ensure_future(coalescer.submit(i * 2)) for i in range(10)]
    await asyncio.sleep(0.01)
    rec.gate.set()
    assert await asyncio.gather(*waiters) == [i * 20 for i in range(10)]
    # The submits queued in one loop tick: batches of at most four, two in
    # flight at a time, each item in exactly one.
    assert sorted(x for b in rec.batches for x in b) == [i * 2 for i in range(10)]
    assert [len(b) for b in rec.batches] == [4, 4, 2]


async def test_an_item_error_reaches_only_its_caller() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(rec.flush, max_in_flight=1)
    waiters = [asyncio.ensure_future(coalescer.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    rec.gate.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert outcomes[0] == 20
    assert outcomes[2] == 40
    assert isinstance(outcomes[1], ValueError)
    assert "item 3" in str(outcomes[1])


async def test_a_failed_flush_fails_its_batch_and_the_next_batch_still_goes() -> None:
    calls: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(flush, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(coalescer.submit(i)) for i in (2, 3)]
    with pytest.raises(ConnectionError):
        await first
    assert await asyncio.gather(*rest) == [2, 3]
    assert calls == [[1], [2, 3]]


async def test_a_cancelled_caller_leaves_the_write_and_its_neighbours_alone() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(rec.flush, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(0))
    await asyncio.sleep(0)
    second, third = (asyncio.ensure_future(coalescer.submit(i)) for i in (2, 4))
    await asyncio.sleep(0)
    second.cancel()
    rec.gate.set()
    assert await first == 0
    assert await third == 40
    assert second.cancelled()
    assert rec.batches == [[0], [2, 4]]  # the cancelled caller's write still went


@pytest.mark.parametrize(("workers", "each"), [(1, 2), (2, 1), (3, 1), (8, 1)])
def test_the_workers_share_the_batches_in_flight_and_each_keeps_one(workers: int, each: int) -> None:
    assert SERVICE_BATCHES_IN_FLIGHT == 2
    assert batches_in_flight_per_worker(workers) == each


async def test_one_batch_in_flight_holds_the_next_until_it_is_done() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(rec.flush, max_in_flight=1, max_batch=64)
    first = asyncio.ensure_future(coalescer.submit(0))
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(coalescer.submit(i * 2)) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    assert rec.batches == [[0]]  # the others wait for the batch in flight
    rec.gate.set()
    assert await asyncio.gather(first, *rest) == [i * 20 for i in range(6)]
    assert rec.batches == [[0], [2, 4, 6, 8, 10]]


def _new_token(runner: UUID, host: str) -> NewToken:
    token_id = uuid4()
    record = TokenRecord(
        id=token_id,
        runner_id=runner,
        subject_id=uuid4(),
        subject_principal=identity_pb2.PRINCIPAL_USER,
        host=host,
        source=0,
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        integration_id=None,
        scopes=("repo", 'read "org"'),
    )
    secrets = SealedSecrets(Sealed(Ciphertext(b"\x01opaque"), "k1"), None)
    audit = AuditEvent("req-1", "Create", token_id, identity_pb2.PRINCIPAL_USER, uuid4(), "cred", "ok")
    return NewToken(record, secrets, audit)


async def _stored(pool: asyncpg.Pool, runner: UUID) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT t.id, t.host, t.scopes, t.expires_at, t.refresh_token_ciphertext, "
            "(SELECT count(*) FROM audit_events a WHERE a.token_id = t.id) AS audits "
            "FROM host_authentication_tokens t WHERE runner_id = $1 ORDER BY host",
            runner,
        )
        return rows


async def test_concurrent_inserts_share_statements_and_each_row_keeps_its_values(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    runner = uuid4()
    rows = [_new_token(runner, f"h{i:02}.example.com") for i in range(40)]
    assert await asyncio.gather(*(store.insert(r) for r in rows)) == [True] * 40
    stored = await _stored(pool, runner)
    assert [r["id"] for r in stored] == [r.record.id for r in rows]
    for row in stored:
        assert row["scopes"] == ["repo", 'read "org"']
        assert row["expires_at"] == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert row["refresh_token_ciphertext"] is None
        assert row["audits"] == 1


async def test_a_batch_with_an_existing_triple_skips_only_that_row(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    runner = uuid4()
    first = _new_token(runner, "dup.example.com")
    assert await store.insert(first)
    again = NewToken(first.record._replace(id=uuid4()), first.secrets, first.audit)
    others = [_new_token(runner, f"o{i}.example.com") for i in range(6)]
    outcomes = await asyncio.gather(*(store.insert(r) for r in [*others[:3], again, *others[3:]]))
    assert outcomes == [True, True, True, False, True, True, True]
    stored = await _stored(pool, runner)
    assert len(stored) == 7
    assert all(r["audits"] == 1 for r in stored)


async def test_a_row_the_database_refuses_fails_alone(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    runner = uuid4()
    bad = _new_token(runner, "nul\x00.example.com")  # text cannot hold NUL
    good = [_new_token(runner, f"g{i}.example.com") for i in range(5)]
    outcomes = await asyncio.gather(
        *(store.insert(r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True
    )
    assert outcomes[:2] == [True, True]
    assert outcomes[3:] == [True, True, True]
    assert isinstance(outcomes[2], asyncpg.PostgresError)
    assert len(await _stored(pool, runner)) == 5


async def test_concurrent_audit_rows_are_all_written_and_a_refused_one_fails_alone(
    pool: asyncpg.Pool,
) -> None:
    store = TokenStore(pool)
    token_id = uuid4()

    def event(request_id: str) -> AuditEvent:
        return AuditEvent(
            request_id, "GetValue", token_id, identity_pb2.PRINCIPAL_USER, uuid4(), "cred", "ok"
        )

    events = [event(f"req-{i}") for i in range(20)]
    events.insert(7, event("nul\x00"))  # text cannot hold NUL
    outcomes = await asyncio.gather(*(store.audit(e) for e in events), return_exceptions=True)
    assert isinstance(outcomes.pop(7), asyncpg.PostgresError)
    assert outcomes == [None] * 20
    async with pool.acquire() as conn:
        written = await conn.fetch("SELECT request_id FROM audit_events WHERE token_id = $1", token_id)
    assert sorted(r["request_id"] for r in written) == sorted(f"req-{i}" for i in range(20))


def _read(token: NewToken, *, runner: UUID | None = None, subject: UUID | None = None) -> SecretRead:
    audit = AuditEvent(
        f"read-{uuid4()}", "GetValue", token.record.id, identity_pb2.PRINCIPAL_USER, uuid4(), "cred", "ok"
    )
    return SecretRead(token.record.id, runner, subject, audit)


async def _audits_of(pool: asyncpg.Pool, token_id: UUID) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE token_id = $1 AND method = 'GetValue'", token_id
        )
        return count


async def _stored_tokens(store: TokenStore, runner: UUID, count: int) -> list[NewToken]:
    tokens = [_new_token(runner, f"t{i}.example.com") for i in range(count)]
    for token in tokens:
        assert await store.insert(token)
    return tokens


async def test_concurrent_secret_reads_share_a_statement_and_each_is_recorded(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    runner = uuid4()
    tokens = await _stored_tokens(store, runner, 6)
    other_runner = uuid4()
    reads = [
        *(_read(t) for t in tokens),
        _read(tokens[0]),  # the same token twice in one batch
        _read(tokens[1], runner=runner),  # in the caller's scope
        _read(tokens[2], runner=other_runner),  # outside it: not read, not recorded
        _read(tokens[3], subject=uuid4()),  # outside it too
        SecretRead(uuid4(), None, None, _read(tokens[4]).audit),  # no such token
    ]
    found = await asyncio.gather(*(store.read_secrets(r) for r in reads))
    for token, got in zip([*tokens, tokens[0], tokens[1]], found[:8], strict=True):
        assert got is not None
        record, secrets = got
        assert record == token.record
        assert secrets.token.ciphertext == token.secrets.token.ciphertext
        assert secrets.refresh_token is None
    assert found[8:] == [None, None, None]
    assert [await _audits_of(pool, t.record.id) for t in tokens] == [2, 2, 1, 1, 1, 1]


async def test_a_read_whose_audit_row_is_refused_fails_alone(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    tokens = await _stored_tokens(store, uuid4(), 4)
    bad = _read(tokens[1])
    bad = dataclasses.replace(bad, audit=dataclasses.replace(bad.audit, request_id="nul\x00"))
    reads = [_read(tokens[0]), bad, _read(tokens[2]), _read(tokens[3])]
    outcomes = await asyncio.gather(*(store.read_secrets(r) for r in reads), return_exceptions=True)
    assert isinstance(outcomes[1], asyncpg.PostgresError)
    assert all(isinstance(o, tuple) for o in (outcomes[0], outcomes[2], outcomes[3]))
    assert [await _audits_of(pool, t.record.id) for t in tokens] == [1, 0, 1, 1]


async def test_concurrent_gets_share_a_statement_and_each_gets_its_own_token(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    tokens = await _stored_tokens(store, uuid4(), 5)
    missing = uuid4()
    ids = [*(t.record.id for t in tokens), tokens[2].record.id, missing]
    found = await asyncio.gather(*(store.get(i) for i in ids))
    assert found == [*(t.record for t in tokens), tokens[2].record, None]
