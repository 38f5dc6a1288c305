"""The step every call takes on every wire, written once: its request id,
the caller's credential checked, the core method run within the call's
time budget, and any failure classified into one core error code
(status.py) for the adapter to put in its wire's terms.

`Calls` also knows every call in flight, so that a stop answers each of
them by its grace, and whether the process is ready to answer at all (a
worker started while the database is out serves `unavailable` until the
service core can be built).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from hostauth.auth.authenticator import Authenticator
from hostauth.auth.caller import Call
from hostauth.core.service import HostAuthService
from hostauth.errors import DATABASE_UNAVAILABLE, ErrorCode
from hostauth.telemetry.calls import CallRecord, CallTelemetry
from hostauth.telemetry.logs import request_id_var
from hostauth.transport.health import Probe
from hostauth.transport.status import classify, outage_seen, outages

Req = TypeVar("Req")
Res = TypeVar("Res")

# A core method, unbound: the adapters bind it to the core of the moment.
CoreMethod = Callable[[HostAuthService, Req, Call], Awaitable[Res]]

STOPPING = "the service is stopping; retry on another replica"
STOPPED_MID_CALL = "the service stopped before the call finished; retry"


class Refused(Exception):
    """The call's answer is an error: a core code and the caller's message."""

    __slots__ = ("code", "message")

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Undecodable:
    """A request whose bytes do not parse: invalid_argument, before the
    credential is looked at (as connectrpc answers it on Connect)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Calls:
    """Answers calls for one process: with no core yet (`ready` False) every
    call is `unavailable`; once started, each call runs within `budget_s`
    (HOSTAUTH_DB_TIMEOUT_S: credential lookup, queueing behind a batch in
    flight, waiting for a pooled connection and the statements, end to end;
    a caller's own deadline, when sooner, ends it first through its wire)."""

    __slots__ = (
        "_auth", "_core", "_draining", "_ending", "_idle", "_in_flight", "_stopping", "budget_s", "ended",
        "probe", "telemetry",
    )  # fmt: skip

    def __init__(
        self,
        budget_s: float,
        core: HostAuthService | None = None,
        auth: Authenticator | None = None,
        probe: Probe | None = None,
        telemetry: CallTelemetry | None = None,
    ) -> None:
        self.budget_s = budget_s
        # Each call's metrics, span and access log line (the adapters begin and end them).
        self.telemetry = telemetry or CallTelemetry(metrics=False, access_log=False)
        self._core = core
        self._auth = auth
        self.probe = probe  # a round trip to the core's database (readiness)
        self._in_flight: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._draining = False
        self._ending = False
        self._idle: asyncio.Event | None = None
        self.ended = 0  # calls a stop had to end

    def start(self, core: HostAuthService, auth: Authenticator, probe: Probe | None = None) -> None:
        self._core, self._auth, self.probe = core, auth, probe

    @property
    def ready(self) -> bool:
        return self._core is not None and not self._stopping

    @property
    def core(self) -> HostAuthService | None:
        return self._core

    @property
    def has_core(self) -> bool:
        """The core is built: the keys are loaded and checked against the registry."""
        return self._core is not None

    @property
    def draining(self) -> bool:
        """A stop has begun: calls are still served (for the drain delay) or refused."""
        return self._draining or self._stopping

    def begin_drain(self) -> None:
        """Readiness turns false; calls are still served until drain()."""
        self._draining = True

    @property
    def ending(self) -> bool:
        """True once a stop has run out of grace and calls off what is left."""
        return self._ending

    async def answer(
        self,
        name: str,
        authorization: Sequence[str],
        request_id: str,
        method: CoreMethod[Req, Res],
        request: Req | Undecodable,
        peer: str | None = None,
        record: CallRecord | None = None,
    ) -> Res:
        """The core's answer to one call of method `name`, or Refused; peer:
        the identity of the connection's client certificate, if any; record:
        the call's telemetry, told who called."""
        request_id_var.set(request_id)
        if record is not None:
            record.request_id = request_id
        if isinstance(request, Undecodable):
            raise Refused(ErrorCode.INVALID_ARGUMENT, request.reason)
        core, auth = self._core, self._auth
        if self._stopping:
            raise Refused(ErrorCode.UNAVAILABLE, STOPPING)
        if core is None or auth is None:
            outage_seen(name)
            raise Refused(ErrorCode.UNAVAILABLE, DATABASE_UNAVAILABLE)
        task: asyncio.Task[object] = asyncio.current_task()  # type: ignore[assignment]
        self._in_flight.add(task)
        try:
            async with asyncio.timeout(self.budget_s):
                call = await auth.authenticate(authorization, request_id, name, peer)
                if record is not None:
                    record.caller = call.caller
                result = await method(core, request, call)
            if outages.down:
                outages.back()
            return result
        except TimeoutError:
            outage_seen(name)
            code, message = ErrorCode.UNAVAILABLE, DATABASE_UNAVAILABLE
        except asyncio.CancelledError:
            if not self._ending:
                raise  # the client left, or its deadline passed: its wire answers
            task.uncancel()
            code, message = ErrorCode.UNAVAILABLE, STOPPED_MID_CALL
        except Exception as exc:  # noqa: BLE001 # every failure becomes a status
            code, message = classify(name, exc)
        finally:
            self._in_flight.discard(task)
            if self._idle is not None and not self._in_flight:
                self._idle.set()
        raise Refused(code, message)

    async def drain(self, grace_s: float) -> int:
        """Take no more calls, wait up to grace_s for those in flight, then end
        the rest with `unavailable` (their database work called off); how
        many had to be ended."""
        self._stopping = True
        self._idle = asyncio.Event()
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        self.ended = len(self._in_flight)
        if self.ended:
            self._ending = True
            for task in tuple(self._in_flight):
                task.cancel()
            # Each answers as soon as its cancellation reaches it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 1.0)
        return self.ended
