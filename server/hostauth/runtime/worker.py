"""One serving process: its database pool, keys and heartbeat, the API key
cache, the core, and both transports until SIGTERM or SIGINT.

A worker of the supervisor serves as soon as its ports are bound: while the
database is out it answers `unavailable` (gRPC health NOT_SERVING) and
builds its core in the background, retrying, so a worker replaced during an
outage recovers with the database instead of dying at start. A start of the
whole service (one process, or the supervisor's preparation) against a
database that is not there stops with one line instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import signal
from dataclasses import dataclass, field

import asyncpg

from hostauth.audit_stream import AuditStream
from hostauth.auth.api_key_cache import CachedApiKeys
from hostauth.auth.authenticator import Authenticator
from hostauth.auth.jwt_verifier import JwtVerifier
from hostauth.cli.version import build
from hostauth.config import Settings
from hostauth.core.service import HostAuthService
from hostauth.crypto import Sealer
from hostauth.crypto.keyring import KeyProviders
from hostauth.keys.loading import load_keys
from hostauth.keys.registry import Heartbeat, register_and_check
from hostauth.retry import backoff_s
from hostauth.runtime.assembly import outbound_of, postgres_core
from hostauth.runtime.audit_upkeep import keep_audit_partitions
from hostauth.runtime.cpus import cpu_budget
from hostauth.runtime.database import admin_pool
from hostauth.runtime.dev import ensure_dev_api_key
from hostauth.runtime.refresh_ahead import refresh_ahead
from hostauth.runtime.serve import NO_EXTRAS, Extras, serve
from hostauth.runtime.tuning import freeze_startup_heap
from hostauth.store import ApiKeyStore, close_pool, connect_pool, is_outage
from hostauth.store.coalesce import batches_in_flight_per_worker
from hostauth.store.encryption_keys import KeyStore
from hostauth.store.pooled import ping
from hostauth.telemetry.calls import CallTelemetry
from hostauth.telemetry.gauges import sample_for_ever, stop_sampling
from hostauth.telemetry.tracing import start_tracing, stop_tracing
from hostauth.tls.identities import ClientIdentities, client_identities
from hostauth.transport.calls import Calls
from hostauth.transport.health import Probe

log = logging.getLogger("hostauth")


# Exit statuses: a stop that had to end calls still in flight after its grace.
EXIT_ENDED_CALLS = 3


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


@dataclass
class _Core:
    """What a worker builds on the database, and closes at its end."""

    settings: Settings
    dsn: str
    keys: KeyProviders
    migrate: bool
    identities: ClientIdentities | None = None
    stream: AuditStream | None = None
    pool: asyncpg.Pool | None = None
    heartbeat: asyncio.Task[None] | None = None
    cached_keys: CachedApiKeys | None = None
    batches: int = field(init=False)

    def __post_init__(self) -> None:
        self.batches = batches_in_flight_per_worker(self.settings.workers)

    async def build(
        self, jwt: JwtVerifier | None, *, dev_key: bool
    ) -> tuple[HostAuthService, Authenticator, Probe]:
        settings = self.settings
        self.pool = pool = await connect_pool(
            self.dsn,
            min_size=min(2, settings.db_pool_size),
            max_size=settings.db_pool_size,
            timeout_s=settings.db_timeout_s,
            migrate=self.migrate,
        )
        key_store = KeyStore(pool)
        sealer = Sealer(self.keys, await register_and_check(self.keys, key_store))
        beat = Heartbeat(key_store, sealer, settings.heartbeat_s)
        await beat.start()
        self.heartbeat = asyncio.create_task(beat.run())
        api_keys = ApiKeyStore(pool)
        if dev_key:
            await ensure_dev_api_key(settings, api_keys)
        self.cached_keys = CachedApiKeys(api_keys)
        await self.cached_keys.start()
        core = await postgres_core(
            pool,
            sealer,
            stream=self.stream,
            batches_in_flight=self.batches,
            plaintext_reads=settings.plaintext_reads,
            outbound=outbound_of(settings),
            refresh_window_s=settings.refresh_window_s,
        )
        return core, Authenticator(self.cached_keys, jwt, self.identities), functools.partial(ping, pool)

    async def start_unless_out(self, jwt: JwtVerifier | None, calls: Calls) -> bool:
        """Build and start the calls; False (nothing left open) while the database is out."""
        try:
            calls.start(*await self.build(jwt, dev_key=False))
        except Exception as exc:
            await self.close()
            if not is_outage(exc):
                raise
            return False
        return True

    async def start_when_reachable(self, jwt: JwtVerifier | None, calls: Calls) -> None:
        """Build, retrying while the database is out; then the calls are ready."""
        log.warning("the database is unavailable: serving unavailable until it is back")
        for attempt in itertools.count():
            await asyncio.sleep(backoff_s(attempt))
            if await self.start_unless_out(jwt, calls):
                log.info("the database is back: serving")
                return

    async def close(self) -> None:
        # The revocation watch holds a pooled connection: closing the pool
        # would wait for it forever (say, when a port could not be bound).
        if self.cached_keys is not None:
            await self.cached_keys.close()
            self.cached_keys = None
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat
            self.heartbeat = None
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await close_pool(pool)


async def run_server(
    settings: Settings, dsn: str, *, worker: bool = False, extras: Extras = NO_EXTRAS
) -> int:
    """Serve until SIGTERM or SIGINT; the exit status (EXIT_ENDED_CALLS when
    the stop had to end calls)."""
    keys = load_keys(settings)
    jwt = JwtVerifier(settings.jwt) if settings.jwt else None
    stream = AuditStream(settings.audit_sink) if settings.audit_sink else None
    parts = _Core(
        settings, dsn, keys, migrate=not worker, identities=client_identities(settings), stream=stream
    )
    if settings.tracing:
        start_tracing(build()[0])
    metrics_on = settings.metrics_addr is not None
    calls = Calls(
        settings.db_timeout_s, telemetry=CallTelemetry(metrics=metrics_on, access_log=settings.access_log)
    )
    starting: asyncio.Task[None] | None = None
    sampling: asyncio.Task[None] | None = None
    upkeep: asyncio.Task[None] | None = None
    ahead: asyncio.Task[None] | None = None
    try:
        if not worker:  # the whole service starting: a database not there stops it
            calls.start(*await parts.build(jwt, dev_key=settings.dev))
        else:  # a worker (a replacement, say) the database is out for serves all the same
            await parts.start_unless_out(jwt, calls)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serve(calls, settings, reuse_port=worker, extras=extras) as running:
            if not calls.ready:
                starting = asyncio.create_task(parts.start_when_reachable(jwt, calls))
            if settings.worker_index == 0:
                upkeep = asyncio.create_task(keep_audit_partitions(dsn, settings.db_timeout_s))
                if settings.refresh_ahead:
                    ahead = asyncio.create_task(refresh_ahead(lambda: calls.core))
            if metrics_on:
                readiness = running.readiness
                sampling = asyncio.create_task(
                    sample_for_ever(
                        lambda: parts.pool,
                        lambda: readiness.database_ok,
                        calls.telemetry.flush,
                        count=settings.worker_index == 0,
                    )
                )
            freeze_startup_heap()
            log.info(
                "serving Connect on %s and gRPC on %s; database batches of a kind in flight: %d",
                running.http_url,
                running.grpc,
                parts.batches,
            )
            if not worker:
                log.info("serving in one process (%s)", cpu_budget().describe())
            waiting = asyncio.create_task(stop.wait())
            tasks: set[asyncio.Task[object]] = {waiting}
            if starting is not None:
                tasks.add(starting)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if starting is not None and starting.done() and not waiting.done():
                starting.result()  # a start that failed for another reason than an outage
                await waiting
            if settings.drain_delay_s:
                calls.begin_drain()
                await running.grpc_server.mark_not_serving()
                log.info("draining: not ready, still serving for %g s", settings.drain_delay_s)
                await asyncio.sleep(settings.drain_delay_s)
            log.info("shutting down")
    finally:
        if starting is not None and not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        for task in (sampling, upkeep, ahead):
            if task is not None:
                await stop_sampling(task)
        calls.telemetry.flush()  # the last second's calls
        await parts.close()
        stop_tracing()
        if stream is not None:
            stream.close()
    return EXIT_ENDED_CALLS if calls.ended else 0
