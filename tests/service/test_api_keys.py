"""API keys through the CLI: created, used, listed, revoked; only hashes stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from uuid import UUID, uuid4

import asyncpg
import pytest

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.api_key_cache import LIVENESS_S, CachedApiKeys
from hostauth.auth.api_keys import hash_api_key, new_api_key
from hostauth.auth.authenticator import Authenticator, request_id_from
from hostauth.errors import Unauthenticated
from hostauth.store import ApiKeyRow, ApiKeyStore, close_pool
from hostauth.store.api_keys import HEARTBEAT_MARK, RevocationWatch
from tests.support.cli import run_cli
from tests.support.lifecycle import create, get_value, list_page
from tests.support.requests import create_request
from tests.support.sensitive import remember
from tests.support.wire import RpcError, Wire, refused_with_headers


async def test_create_use_list_revoke(wire: Wire, database_dsn: str, pool: asyncpg.Pool) -> None:
    runner = uuid4()
    created = await run_cli(
        database_dsn,
        "api-keys",
        "create",
        "--principal",
        "runner",
        "--subject",
        str(runner),
        "--description",
        "ci",
    )
    assert created.returncode == 0, created.stderr
    key = remember(created.stdout.strip())
    assert key.startswith("hak_")
    assert len(key) == 4 + 43
    key_id = UUID(created.stderr.split("id: ", 1)[1].split()[0])

    as_runner = wire.with_credential(key)
    token = await create(as_runner, create_request(runner_id=str(runner)))
    assert [t.id for t in (await list_page(as_runner)).tokens] == [token.id]

    listed = await run_cli(database_dsn, "api-keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(key_id) in listed.stdout
    assert "PRINCIPAL_RUNNER" in listed.stdout
    assert key not in listed.stdout + listed.stderr

    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
        dump = await conn.fetchval("SELECT string_agg(t::text, ' ') FROM api_keys t")
    assert row is not None
    assert key not in dump
    assert key.encode() not in bytes(row["key_hash"])
    assert len(row["key_hash"]) == 32  # a SHA-256, nothing more

    revoked = await run_cli(database_dsn, "api-keys", "revoke", str(key_id))
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(RpcError) as caught:
        await list_page(as_runner)
    assert (caught.value.code, caught.value.message) == ("unauthenticated", "unknown or revoked API key")

    again = await run_cli(database_dsn, "api-keys", "revoke", str(key_id))
    assert again.returncode != 0
    assert "no active API key" in again.stderr


async def test_grants_are_kept(wire: Wire, database_dsn: str) -> None:
    sa = uuid4()
    args = ("--principal", "PRINCIPAL_SERVICE_ACCOUNT", "--subject", str(sa), "--grant", "secrets:read")
    created = await run_cli(database_dsn, "api-keys", "create", *args)
    assert created.returncode == 0, created.stderr
    reader = wire.with_credential(remember(created.stdout.strip()))
    token = await create(wire)
    assert (await get_value(reader, token.id)).id == token.id


async def test_unknown_principal_is_refused(database_dsn: str) -> None:
    result = await run_cli(
        database_dsn, "api-keys", "create", "--principal", "admin", "--subject", str(uuid4())
    )
    assert result.returncode == 2
    assert "unknown principal 'admin'" in result.stderr


class CountingStore(ApiKeyStore):
    """The real store, counting lookups and telling when its watch was lost."""

    lookups = 0

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.lost = asyncio.Event()

    async def watch_revocations(
        self, on_revoke: Callable[[], None], on_lost: Callable[[], None]
    ) -> RevocationWatch:
        def lost() -> None:
            self.lost.set()
            on_lost()

        return await super().watch_revocations(on_revoke, lost)

    async def find_active(self, key_hash: bytes) -> ApiKeyRow | None:
        self.lookups += 1
        return await super().find_active(key_hash)


async def _revoked_and_refused(pool: asyncpg.Pool, cache: CachedApiKeys, key: str, key_id: UUID) -> None:
    """Revoke the key as the CLI does (from anywhere); the cache must drop it."""
    assert await ApiKeyStore(pool).revoke(key_id)
    for _ in range(50):  # the notification arrives within moments
        if await cache.find_active(hash_api_key(key)) is None:
            break
        await asyncio.sleep(0.02)
    assert await cache.find_active(hash_api_key(key)) is None


@contextlib.asynccontextmanager
async def _cached_key(pool: asyncpg.Pool) -> AsyncIterator[tuple[CountingStore, CachedApiKeys, str, UUID]]:
    """A started cache over a counting store, and one fresh key."""
    store = CountingStore(pool)
    cache = CachedApiKeys(store)
    await cache.start()
    try:
        key = remember(new_api_key())
        key_id = await store.create(hash_api_key(key), identity_pb2.PRINCIPAL_RUNNER, uuid4())
        yield store, cache, key, key_id
    finally:
        await cache.close()


async def test_keys_are_cached_until_a_revocation_is_notified(pool: asyncpg.Pool) -> None:
    async with _cached_key(pool) as (store, cache, key, key_id):
        for _ in range(3):
            assert (await cache.find_active(hash_api_key(key))) is not None
        assert store.lookups == 1  # served from memory after the first
        await _revoked_and_refused(pool, cache, key, key_id)


class HeldStore(ApiKeyStore):
    """The real store, whose lookups can be held after the database answered,
    and which tells when a revocation notice arrived."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.answered = asyncio.Event()
        self.release = asyncio.Event()
        self.heard = asyncio.Event()
        self.hold = False

    async def find_active(self, key_hash: bytes) -> ApiKeyRow | None:
        row = await super().find_active(key_hash)
        if self.hold:
            self.answered.set()
            await self.release.wait()
        return row

    async def watch_revocations(
        self, on_revoke: Callable[[], None], on_lost: Callable[[], None]
    ) -> RevocationWatch:
        def revoked() -> None:
            on_revoke()
            self.heard.set()

        return await super().watch_revocations(revoked, on_lost)


async def test_a_lookup_overtaken_by_a_revocation_is_not_cached(pool: asyncpg.Pool) -> None:
    """The database saw the key active, then the revocation's notice came in
    before that answer was cached: caching it would serve a revoked key until
    the entry expired."""
    store = HeldStore(pool)
    cache = CachedApiKeys(store)
    await cache.start()
    try:
        key = remember(new_api_key())
        key_id = await store.create(hash_api_key(key), identity_pb2.PRINCIPAL_RUNNER, uuid4())
        store.hold = True
        lookup = asyncio.create_task(cache.find_active(hash_api_key(key)))
        await asyncio.wait_for(store.answered.wait(), 10)
        assert await ApiKeyStore(pool).revoke(key_id)
        await asyncio.wait_for(store.heard.wait(), 10)
        store.hold = False
        store.release.set()
        assert await lookup is not None  # it raced the revocation, and may pass
        assert await cache.find_active(hash_api_key(key)) is None
    finally:
        await cache.close()


async def test_an_authenticated_key_is_refused_once_revoked(pool: asyncpg.Pool) -> None:
    """The Authenticator keeps each key's Caller, but the lookup still runs on
    every call: a key revoked after use is refused on its next call."""
    cache = CachedApiKeys(ApiKeyStore(pool))
    await cache.start()
    try:
        auth = Authenticator(cache, None)
        key = remember(new_api_key())
        subject = uuid4()
        key_id = await ApiKeyStore(pool).create(
            hash_api_key(key), identity_pb2.PRINCIPAL_RUNNER, subject, ("secrets:read",)
        )
        first = await auth.authenticate(
            [f"Bearer {key}"], request_id_from(None), "GetHostAuthenticationToken"
        )
        second = await auth.authenticate(
            [f"Bearer {key}"], request_id_from(None), "GetHostAuthenticationToken"
        )
        assert first.caller == second.caller
        assert first.caller.principal == identity_pb2.PRINCIPAL_RUNNER
        assert first.caller.subject_id == subject
        assert first.caller.credential_id == f"api_key:{key_id}"
        assert first.caller.grants == frozenset({"secrets:read"})
        assert first.request_id != second.request_id
        assert await ApiKeyStore(pool).revoke(key_id)
        for _ in range(50):  # the notification arrives within moments
            if await cache.find_active(hash_api_key(key)) is None:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(Unauthenticated):
            await auth.authenticate([f"Bearer {key}"], request_id_from(None), "GetHostAuthenticationToken")
    finally:
        await cache.close()


@pytest.mark.parametrize("bogus_first", [False, True])
async def test_more_than_one_authorization_header_is_refused(
    wire: Wire, admin_key: str, bogus_first: bool
) -> None:
    """Connect read the first copy and gRPC the last: each wire let a different
    one through, and a proxy in front may check yet another."""
    headers = [("authorization", f"Bearer {admin_key}"), ("authorization", "Bearer hak_bogus")]
    if bogus_first:
        headers.reverse()
    error, _ = await refused_with_headers(
        wire, "ListHostAuthenticationTokens", pb.ListHostAuthenticationTokensRequest(), headers
    )
    assert (error.code, error.message) == ("unauthenticated", "more than one Authorization header: send one")
    assert admin_key not in error.message


async def _cached_again(store: CountingStore, cache: CachedApiKeys, key: str) -> None:
    """Wait until the cache watches again: two lookups cost one query."""
    for _ in range(200):
        before = store.lookups
        await cache.find_active(hash_api_key(key))
        await cache.find_active(hash_api_key(key))
        if store.lookups == before + 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("keys are still looked up on every call")


async def test_a_lost_revocation_watch_comes_back(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """After a database restart the watch's connection is gone; keys were
    then looked up on every call for as long as the worker lived."""
    async with _cached_key(pool) as (store, cache, key, key_id):
        async with pool.acquire() as conn:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE $1 AND pid <> pg_backend_pid()",
                f"%{HEARTBEAT_MARK}%",
            )
        assert killed >= 1
        # pg_terminate_backend only signals: the loss reaches us a moment later.
        await asyncio.wait_for(store.lost.wait(), 10)
        await _cached_again(store, cache, key)
        assert "API key revocation watch is back" in caplog.text
        await _revoked_and_refused(pool, cache, key, key_id)  # revocations are heard again


async def test_a_watch_stopped_while_its_connection_is_lost_frees_its_slot(database_dsn: str) -> None:
    """Stopped just after its backend was killed, the watch met asyncpg
    half-way through the loss ("another operation is in progress"), raised,
    and kept its pool slot: the pool's close() then waited for ever."""
    name = f"hostauth-watch-{uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(
        database_dsn, min_size=1, max_size=2, server_settings={"application_name": name}
    )
    try:
        store = ApiKeyStore(pool)
        for _ in range(10):  # the loss is caught mid-way in about half the rounds
            watch = await asyncio.wait_for(store.watch_revocations(lambda: None, lambda: None), 5)
            async with pool.acquire() as conn:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1 AND query LIKE $2 AND pid <> pg_backend_pid()",
                    name,
                    f"%{HEARTBEAT_MARK}%",
                )
            assert killed == 1
            await watch.stop()  # at once, as a closing server would
    except BaseException:
        pool.terminate()
        raise
    assert await close_pool(pool), "a stopped watch kept its pool slot"


async def test_a_watch_that_falls_silent_stops_the_cache(
    pool: asyncpg.Pool, database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The watch's backend stopped (SIGSTOP: no error, no reset, nothing
    delivered): a revoked key was served from memory for the entries' 30 s.
    The heartbeat through the watch goes unanswered, so the cache stops
    serving from memory within LIVENESS_S and the revocation bites."""
    name = f"hostauth-watch-{uuid4().hex[:8]}"
    watched = await asyncpg.create_pool(
        database_dsn, min_size=1, max_size=4, server_settings={"application_name": name}
    )
    async with _cached_key(watched) as (store, cache, key, key_id):
        assert await cache.find_active(hash_api_key(key)) is not None
        async with watched.acquire() as conn:
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = $1 AND query LIKE $2 AND pid <> pg_backend_pid()",
                name,
                f"%{HEARTBEAT_MARK}%",
            )
        assert len(pids) == 1
        backend = pids[0]["pid"]
        os.kill(backend, signal.SIGSTOP)
        try:
            assert await ApiKeyStore(pool).revoke(key_id)  # its notice reaches no one
            started = time.monotonic()
            while await cache.find_active(hash_api_key(key)) is not None:
                assert time.monotonic() - started < LIVENESS_S + 1.0, "a revoked key outlived the heartbeat"
                await asyncio.sleep(0.05)
            # The keeper gives up on the beat at about the moment the cache
            # stops trusting it: the warning may come a moment after.
            for _ in range(60):
                if "lost the API key revocation watch" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert "lost the API key revocation watch" in caplog.text
        finally:
            os.kill(backend, signal.SIGCONT)
        # The silent watch is replaced: keys are cached again.
        other = remember(new_api_key())
        await store.create(hash_api_key(other), identity_pb2.PRINCIPAL_RUNNER, uuid4())
        await _cached_again(store, cache, other)
    assert await close_pool(watched)
