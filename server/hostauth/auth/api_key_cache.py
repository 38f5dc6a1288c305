"""API keys looked up once, then served from memory until revoked.

Every revocation NOTIFYs the servers, which drop the whole cache; entries
also expire after `ttl_s`. Keys are served from memory only while the watch
has proved itself alive within `LIVENESS_S`: a heartbeat goes through the
watch's own connection every `HEARTBEAT_S`, so a watch whose backend went
silent (stopped, or cut off without a reset) stops the cache within seconds,
not at the entries' expiry. A lost watch is set up again in the background;
until then every lookup goes to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from datetime import UTC, datetime

from hostauth.retry import backoff_s
from hostauth.store.api_keys import ApiKeyRow, ApiKeyStore, RevocationWatch

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0  # between heartbeats through the watch
LIVENESS_S = 3.0  # how long a heard heartbeat vouches for the cache
_WATCH_WAIT_S = 10.0  # for a new watch's connection, LISTEN and first heartbeat


class CachedApiKeys:
    __slots__ = (
        "_alive_until",
        "_cache",
        "_closed",
        "_generation",
        "_keeper",
        "_lost",
        "_max",
        "_store",
        "_ttl_s",
        "_watch",
    )

    def __init__(self, store: ApiKeyStore, *, ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max = max_entries
        self._cache: dict[bytes, tuple[ApiKeyRow, float]] = {}
        # Counts revocations heard: a lookup that a revocation overtook is not
        # cached, since its row may predate the revocation.
        self._generation = 0
        # Until when (monotonic) the last heartbeat heard vouches for the cache.
        self._alive_until = 0.0
        self._closed = False
        self._watch: RevocationWatch | None = None
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sent = time.monotonic()
        self._watch = await self._store.watch_revocations(self._revoked, self._connection_lost)
        self._alive_until = sent + LIVENESS_S
        self._keeper = asyncio.get_running_loop().create_task(self._keep_watching())

    def _revoked(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def close(self) -> None:
        self._closed = True
        self._distrust()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self._unwatch()

    def _distrust(self) -> None:
        self._alive_until = 0.0
        self._revoked()

    def _connection_lost(self) -> None:
        self._distrust()
        self._lost.set()

    async def _unwatch(self) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            await watch.stop()

    async def _keep_watching(self) -> None:
        while True:
            await self._beat_until_lost()
            self._distrust()
            log.warning("lost the API key revocation watch; API keys are not cached until it is back")
            await self._unwatch()
            await self._watch_again()

    async def _beat_until_lost(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), HEARTBEAT_S)
            if self._lost.is_set() or self._watch is None:
                return
            sent = time.monotonic()
            try:
                async with asyncio.timeout(LIVENESS_S - HEARTBEAT_S):
                    await self._watch.beat()
            except Exception:  # noqa: BLE001 # silent or broken: either way not trusted
                return
            self._alive_until = sent + LIVENESS_S

    async def _watch_again(self) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(backoff_s(attempt))
            self._lost.clear()
            sent = time.monotonic()
            try:
                async with asyncio.timeout(_WATCH_WAIT_S):
                    self._watch = await self._store.watch_revocations(self._revoked, self._connection_lost)
            except Exception as exc:  # noqa: BLE001 # the database may still be out: try again
                if attempt % 10 == 0:
                    log.info("API key revocation watch not back yet: %s", type(exc).__name__)
                continue
            # Revocations made while it was down were not heard: the cache
            # was empty and stayed so, and starts afresh now.
            self._revoked()
            self._alive_until = sent + LIVENESS_S
            log.info("API key revocation watch is back; API keys are cached again")
            return

    async def find_active(self, key_hash: bytes) -> ApiKeyRow | None:
        hit = self._cache.get(key_hash)
        now = time.monotonic()
        if hit is not None and now < hit[1] and now < self._alive_until:
            expires = hit[0].expires_at
            if expires is None or expires > datetime.now(UTC):
                return hit[0]
            del self._cache[key_hash]  # expired while cached: the database says so too
        generation = self._generation
        row = await self._store.find_active(key_hash)
        if row is not None and time.monotonic() < self._alive_until and generation == self._generation:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key_hash] = (row, now + self._ttl_s)
        return row
