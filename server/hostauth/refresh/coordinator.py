"""One refresh per token, however many callers ask, in any process.

In a process, concurrent callers for one token share one attempt (keyed by
the token's id, never by a secret). Across processes and replicas, the
attempt runs holding the token's row lock: a second process's caller waits
on the lock, then finds the version moved and takes the winner's token. The
provider is called only with the refresh token read under the lock, and
the new secrets are committed (with the refresh's audit row) before any
caller sees them. A refusal (`bad_refresh_token`, `invalid_grant`) marks
the token as needing sign-in under the same lock, so it is always the
stored refresh token that failed, never one a winner already replaced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.caller import Call, Caller
from hostauth.core.model import FIELD_REFRESH_TOKEN, FIELD_TOKEN, Secrets, StoredIntegration, TokenRecord
from hostauth.core.policy import Action
from hostauth.core.port import IntegrationVault
from hostauth.core.secret_reads import NEEDS_SIGN_IN
from hostauth.core.trail import event
from hostauth.crypto import Sealer, SecretContext
from hostauth.errors import FailedPrecondition, ServiceError, Unavailable
from hostauth.refresh.outbound import Outbound
from hostauth.refresh.providers import Outcome, provider_of, refresh
from hostauth.store.refresh import LockedToken, RefreshStore
from hostauth.store.token_rows import Ciphertext, Sealed
from hostauth.telemetry import metrics

log = logging.getLogger(__name__)

OAUTH = pb.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
# Who the audit trail names for a refresh ahead of any read: the service.
AHEAD = Caller(0, UUID(int=0), "service:refresh-ahead")
# Refreshes ahead in flight at once in a worker.
AHEAD_AT_ONCE = 4


def needs_sign_in(token_id: UUID) -> FailedPrecondition:
    return FailedPrecondition(NEEDS_SIGN_IN.format(token_id=token_id))


class Refresher:
    """The core's Refresher (core/port.py) over PostgreSQL and a provider client."""

    __slots__ = ("_flights", "_integrations", "_outbound", "_sealer", "_store", "window")

    def __init__(
        self,
        store: RefreshStore,
        integrations: IntegrationVault,
        sealer: Sealer,
        outbound: Outbound,
        *,
        window_s: float,
    ) -> None:
        self._store = store
        self._integrations = integrations
        self._sealer = sealer
        self._outbound = outbound
        self.window = timedelta(seconds=window_s)
        self._flights: dict[UUID, asyncio.Task[tuple[TokenRecord, Secrets]]] = {}

    def wants(self, record: TokenRecord, has_refresh_token: bool) -> bool:
        """Whether a read of this token refreshes it first: an OAuth token
        with a refresh token, expiring within the window."""
        return (
            record.source == OAUTH
            and has_refresh_token
            and record.expires_at is not None
            and record.expires_at - datetime.now(UTC) <= self.window
        )

    async def fresh(self, record: TokenRecord, secrets: Secrets, call: Call) -> tuple[TokenRecord, Secrets]:
        """The token refreshed (or as it is, where the rules say so)."""
        started = time.perf_counter()
        flight = self._flights.get(record.id)
        if flight is None:
            flight = asyncio.create_task(self._refresh(record, secrets, call))
            self._flights[record.id] = flight
            flight.add_done_callback(lambda _: self._flights.pop(record.id, None))
        else:
            metrics.oauth_refresh_waiters.inc()
        try:
            # Shielded: a caller that leaves does not call off the others' refresh.
            return await asyncio.shield(flight)
        finally:
            metrics.oauth_refresh_wait_seconds.observe(time.perf_counter() - started)

    async def refresh_due(self, limit: int = 100) -> int:
        """Refresh ahead: every token due within the window, before anyone
        reads it, under the same once-only rule, a page of `limit` at a time
        with AHEAD_AT_ONCE refreshes in flight (each holds a pooled
        connection for one provider call, so readers keep the rest); how
        many were refreshed."""
        done = 0
        at_once = asyncio.Semaphore(AHEAD_AT_ONCE)

        async def one(record: TokenRecord) -> bool:
            async with at_once:
                call = Call(AHEAD, f"refresh-ahead-{os.urandom(8).hex()}")
                try:
                    renewed, _ = await self.fresh(record, Secrets("", ""), call)
                except ServiceError as exc:  # said by the refresh itself; the next round tries again
                    log.info("token %s not refreshed ahead: %s", record.id, exc.code.value)
                    return False
                return renewed.version != record.version

        after: tuple[datetime, UUID] | None = None
        while page := await self._store.due(self.window, limit, after):
            done += sum(await asyncio.gather(*(one(record) for record in page)))
            last = page[-1]
            assert last.expires_at is not None  # the query's
            after = (last.expires_at, last.id)
            if len(page) < limit:
                break
        return done

    async def _integration(self, record: TokenRecord) -> StoredIntegration[str] | None:
        integration_id = record.integration_id or await self._store.integration_of(
            record.runner_id, record.host
        )
        if integration_id is None:
            return None
        stored = await self._integrations.get(integration_id)
        if stored is None or stored.record.oauth_client_id is None or stored.client_secret is None:
            return None
        return stored if provider_of(stored.record) is not None else None

    async def _open(self, locked: LockedToken) -> Secrets:
        token_id = str(locked.record.id)
        token = await self._sealer.open(locked.secrets.token.ciphertext, SecretContext(token_id, FIELD_TOKEN))
        refresh_token = b""
        if locked.secrets.refresh_token is not None:
            context = SecretContext(token_id, FIELD_REFRESH_TOKEN)
            refresh_token = await self._sealer.open(locked.secrets.refresh_token.ciphertext, context)
        return Secrets(token.decode(), refresh_token.decode())

    async def _seal(self, token_id: UUID, field: str, value: str) -> Sealed:
        blob, key_id = await self._sealer.seal_keyed(value.encode(), SecretContext(str(token_id), field))
        return Sealed(Ciphertext(blob), key_id)

    @staticmethod
    def _expired(record: TokenRecord) -> bool:
        return record.expires_at is not None and record.expires_at <= datetime.now(UTC)

    def _as_it_is(
        self, record: TokenRecord, secrets: Secrets, why: str, *, retryable: bool
    ) -> tuple[TokenRecord, Secrets]:
        """A refresh that did not happen: a still-valid token as it is; an
        expired one refused (unavailable to retry, or a precondition)."""
        if not self._expired(record):
            return record, secrets
        if retryable:
            raise Unavailable(
                f"host authentication token {record.id} expired and could not be refreshed: {why}"
            )
        raise FailedPrecondition(
            f"host authentication token {record.id} expired and cannot be refreshed: {why}"
        )

    async def _refresh(
        self, record: TokenRecord, secrets: Secrets, call: Call
    ) -> tuple[TokenRecord, Secrets]:
        integration = await self._integration(record)
        if integration is None:
            return record, secrets  # no OAuth app to refresh with: as it is
        provider = provider_of(integration.record) or "other"
        assert integration.client_secret is not None
        # A winner holds the lock for at most one provider call.
        wait_s = self._outbound.timeout_s + 2.0
        refused: str | None = None
        try:
            async with self._store.locked(record.id, wait_s) as locked:
                if locked is None:
                    return record, secrets  # deleted meanwhile
                current = locked.record
                secrets = await self._open(locked)
                if current.needs_sign_in:
                    raise needs_sign_in(current.id)
                if current.version != record.version and not self.wants(current, bool(secrets.refresh_token)):
                    return current, secrets  # another caller refreshed it: its token
                attempt = await refresh(
                    self._outbound, integration.record, integration.client_secret, secrets.refresh_token
                )
                metrics.oauth_refreshes.labels(provider, attempt.outcome.value).inc()
                if attempt.outcome is Outcome.REFRESHED:
                    fresh = attempt.fresh
                    assert fresh is not None
                    token = await self._seal(current.id, FIELD_TOKEN, fresh.token)
                    refresh_sealed = await self._seal(current.id, FIELD_REFRESH_TOKEN, fresh.refresh_token)
                    audit = event(call, Action.REFRESH, "ok", current.id)
                    version = await locked.store(token, refresh_sealed, fresh.expires_at, audit)
                    # Committed when the block ends, before the caller sees it.
                    renewed = current._replace(expires_at=fresh.expires_at, version=version)
                    result = renewed, Secrets(fresh.token, fresh.refresh_token)
                elif attempt.outcome is Outcome.REJECTED:
                    audit = event(call, Action.REFRESH, "needs_sign_in", current.id)
                    await locked.mark_needs_sign_in(attempt.detail, audit)
                    log.warning(
                        "token %s needs sign-in: %s refused its refresh token (%s)",
                        current.id,
                        provider,
                        attempt.detail,
                    )
                    refused = attempt.detail
                else:
                    log.warning("token %s not refreshed at %s: %s", current.id, provider, attempt.detail)
                    retryable = attempt.outcome in (Outcome.RATE_LIMITED, Outcome.UNREACHABLE)
                    raise _NotRefreshed(current, secrets, attempt.detail, retryable)
        except asyncpg.LockNotAvailableError:
            # Another caller's refresh outlasted the wait.
            return self._as_it_is(record, secrets, "another refresh of it is still under way", retryable=True)
        except _NotRefreshed as not_refreshed:
            return self._as_it_is(
                not_refreshed.record,
                not_refreshed.secrets,
                not_refreshed.why,
                retryable=not_refreshed.retryable,
            )
        if refused is not None:
            raise needs_sign_in(record.id)
        return result


class _NotRefreshed(Exception):
    """Leaves the locked block (rolling back) with what the caller gets."""

    def __init__(self, record: TokenRecord, secrets: Secrets, why: str, retryable: bool) -> None:
        super().__init__(why)
        self.record, self.secrets, self.why, self.retryable = record, secrets, why, retryable
