"""API keys looked up once, then served from memory until revoked.

Every revocation NOTIFYs the servers, which drop the whole cache; entries
also expire after `ttl_s`, and nothing is cached while the watch is down, so
a revoked key stops working at once (within a notification's delay). A lost
watch (the database restarted, say) is set up again in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

from hostauth.store.api_keys import ApiKeyRow, ApiKeyStore

log = logging.getLogger(__name__)


_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # between attempts to watch again; the last repeats


class CachedApiKeys:
    __slots__ = (
        "_cache",
        "_closed",
        "_generation",
        "_max",
        "_rewatch",
        "_stop",
        "_store",
        "_ttl_s",
        "_watching",
    )

    def __init__(self, store: ApiKeyStore, *, ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max = max_entries
        self._cache: dict[bytes, tuple[ApiKeyRow, float]] = {}
        # Counts revocations heard: a lookup that a revocation overtook is not
        # cached, since its row may predate the revocation.
        self._generation = 0
        self._watching = False
        self._closed = False
        self._stop: Callable[[], Awaitable[None]] | None = None
        self._rewatch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop = await self._store.watch_revocations(self._revoked, self._lost)
        self._watching = True

    def _revoked(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def close(self) -> None:
        self._closed = True
        self._watching = False
        self._cache.clear()
        if self._rewatch is not None:
            self._rewatch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rewatch
        if self._stop is not None:
            await self._stop()
            self._stop = None

    def _lost(self) -> None:
        if self._closed or not self._watching:
            return
        log.warning("lost the API key revocation watch; API keys are not cached until it is back")
        self._watching = False
        self._revoked()
        self._rewatch = asyncio.get_running_loop().create_task(self._watch_again())

    async def _watch_again(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            await stop()
        for attempt in itertools.count():
            await asyncio.sleep(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
            try:
                self._stop = await self._store.watch_revocations(self._revoked, self._lost)
            except Exception as exc:  # noqa: BLE001 # the database may still be out: try again
                if attempt % 10 == 0:
                    log.info("API key revocation watch not back yet: %s", type(exc).__name__)
                continue
            # Revocations made while it was down were not heard: the cache
            # was empty and stayed so, and starts afresh now.
            self._revoked()
            self._watching = True
            log.info("API key revocation watch is back; API keys are cached again")
            return

    async def find_active(self, key_hash: bytes) -> ApiKeyRow | None:
        hit = self._cache.get(key_hash)
        now = time.monotonic()
        if hit is not None and self._watching and now < hit[1]:
            return hit[0]
        generation = self._generation
        row = await self._store.find_active(key_hash)
        if row is not None and self._watching and generation == self._generation:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key_hash] = (row, now + self._ttl_s)
        return row
