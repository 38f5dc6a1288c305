"""One serving process: its database pool, keys and heartbeat, the API key
cache, the core, and both transports until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from hostauth.auth.api_key_cache import CachedApiKeys
from hostauth.auth.authenticator import Authenticator
from hostauth.auth.jwt_verifier import JwtVerifier
from hostauth.config import Settings
from hostauth.core.cursor import CursorCodec
from hostauth.core.service import HostAuthService
from hostauth.crypto import Sealer
from hostauth.keys.loading import load_keys
from hostauth.keys.registry import Heartbeat, register_and_check
from hostauth.runtime.database import admin_pool
from hostauth.runtime.dev import ensure_dev_api_key
from hostauth.runtime.serve import NO_EXTRAS, Extras, serve
from hostauth.runtime.tuning import freeze_startup_heap
from hostauth.store import ApiKeyStore, TokenStore, close_pool, connect_pool, cursor_key
from hostauth.store.coalesce import batches_in_flight_per_worker
from hostauth.store.encryption_keys import KeyStore
from hostauth.vault import EncryptedTokens

log = logging.getLogger("hostauth")


async def prepare(settings: Settings, dsn: str) -> None:
    """What the supervisor does once before starting workers: migrations, key
    checks (a refusal stops everything here), the development API key."""
    keys = load_keys(settings)
    pool = await admin_pool(settings, dsn)
    try:
        await register_and_check(keys, KeyStore(pool))
        if settings.dev:
            await ensure_dev_api_key(settings, ApiKeyStore(pool))
    finally:
        await pool.close()


async def run_server(
    settings: Settings, dsn: str, *, worker: bool = False, extras: Extras = NO_EXTRAS
) -> None:
    keys = load_keys(settings)
    jwt = JwtVerifier(settings.jwt) if settings.jwt else None
    pool = await connect_pool(
        dsn,
        min_size=min(2, settings.db_pool_size),
        max_size=settings.db_pool_size,
        timeout_s=settings.db_timeout_s,
    )
    heartbeat: asyncio.Task[None] | None = None
    cached_keys: CachedApiKeys | None = None
    try:
        key_store = KeyStore(pool)
        sealer = Sealer(keys, await register_and_check(keys, key_store))
        beat = Heartbeat(key_store, sealer, settings.heartbeat_s)
        await beat.start()
        heartbeat = asyncio.create_task(beat.run())
        api_keys = ApiKeyStore(pool)
        if settings.dev and not worker:
            await ensure_dev_api_key(settings, api_keys)
        cached_keys = CachedApiKeys(api_keys)
        await cached_keys.start()
        batches = batches_in_flight_per_worker(settings.workers)
        store = TokenStore(pool, batches_in_flight=batches)
        core = HostAuthService(EncryptedTokens(store, sealer), CursorCodec(await cursor_key(pool)))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        auth = Authenticator(cached_keys, jwt)
        async with serve(core, auth, settings, reuse_port=worker, extras=extras) as running:
            freeze_startup_heap()
            log.info(
                "serving Connect on %s and gRPC on %s; database batches of a kind in flight: %d",
                running.http_url,
                running.grpc,
                batches,
            )
            await stop.wait()
            log.info("shutting down")
    finally:
        # The revocation watch holds a pooled connection: closing the pool
        # would wait for it forever (say, when a port could not be bound).
        if cached_keys is not None:
            await cached_keys.close()
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await close_pool(pool)
