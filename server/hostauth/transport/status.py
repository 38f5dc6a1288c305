"""The one table from core error codes to each wire's status."""

from __future__ import annotations

import logging
import time

import grpc
from connectrpc.code import Code

from hostauth.errors import DATABASE_UNAVAILABLE, ErrorCode, ServiceError
from hostauth.log_repeats import Repeats
from hostauth.store import is_outage

log = logging.getLogger("hostauth.transport")

# code: (gRPC status, Connect code). Connect's HTTP statuses follow from the
# Connect code (invalid_argument 400, not_found 404, ...).
STATUS: dict[ErrorCode, tuple[grpc.StatusCode, Code]] = {
    ErrorCode.INVALID_ARGUMENT: (grpc.StatusCode.INVALID_ARGUMENT, Code.INVALID_ARGUMENT),
    ErrorCode.NOT_FOUND: (grpc.StatusCode.NOT_FOUND, Code.NOT_FOUND),
    ErrorCode.ALREADY_EXISTS: (grpc.StatusCode.ALREADY_EXISTS, Code.ALREADY_EXISTS),
    ErrorCode.PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED, Code.PERMISSION_DENIED),
    ErrorCode.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, Code.UNAUTHENTICATED),
    ErrorCode.RESOURCE_EXHAUSTED: (grpc.StatusCode.RESOURCE_EXHAUSTED, Code.RESOURCE_EXHAUSTED),
    ErrorCode.FAILED_PRECONDITION: (grpc.StatusCode.FAILED_PRECONDITION, Code.FAILED_PRECONDITION),
    ErrorCode.ABORTED: (grpc.StatusCode.ABORTED, Code.ABORTED),
    ErrorCode.UNIMPLEMENTED: (grpc.StatusCode.UNIMPLEMENTED, Code.UNIMPLEMENTED),
    ErrorCode.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, Code.UNAVAILABLE),
    ErrorCode.DATA_LOSS: (grpc.StatusCode.DATA_LOSS, Code.DATA_LOSS),
    ErrorCode.INTERNAL: (grpc.StatusCode.INTERNAL, Code.INTERNAL),
}

INTERNAL_MESSAGE = "internal error"


class _OutageLog:
    """While the database is out every call fails the same way: a warning
    when the first fails, one every few seconds with how many failed since,
    and one when a call succeeds again, saying how long it was out (through
    a failover: how long the service was without a primary)."""

    __slots__ = ("_failed", "_next", "_quiet", "_since")
    INTERVAL_S = 5.0

    def __init__(self) -> None:
        self._since: float | None = None
        self._next = 0.0
        self._quiet = 0
        self._failed = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, method: str, cause: str) -> None:
        now = time.monotonic()
        self._failed += 1
        if self._since is None:
            self._since = now
            log.warning(
                "database unavailable (%s in %s): calls answer unavailable until it is back", cause, method
            )
            self._next, self._quiet = now + self.INTERVAL_S, 0
            return
        if now < self._next:
            self._quiet += 1
            return
        log.warning(
            "database still unavailable after %.1f s (%s in %s); %d call(s) failed since the last warning",
            now - self._since,
            cause,
            method,
            self._quiet + 1,
        )
        self._next, self._quiet = now + self.INTERVAL_S, 0

    def back(self) -> None:
        if self._since is None:
            return
        log.warning(
            "database back after %.1f s; %d call(s) answered unavailable meanwhile",
            time.monotonic() - self._since,
            self._failed,
        )
        self._since, self._failed, self._quiet = None, 0, 0


outages = _OutageLog()
_bugs = Repeats(log)


def outage_seen(method: str, cause: str = "no answer within the time budget") -> None:
    outages.failed(method, cause)


def classify(method: str, exc: Exception) -> tuple[ErrorCode, str]:
    """The code and caller-facing message for an exception from the core.

    The database out (or too slow) is unavailable, for the caller to retry.
    Anything else that is not a ServiceError is a bug: it is logged here
    (type and traceback; the core puts no secret in exceptions) and the
    caller sees only a generic message, never a stack trace.
    """
    if isinstance(exc, ServiceError):
        if exc.code is ErrorCode.UNAVAILABLE:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            outages.failed(method, type(cause).__name__)
        return exc.code, exc.message
    if is_outage(exc):
        outages.failed(method, type(exc).__name__)
        return ErrorCode.UNAVAILABLE, DATABASE_UNAVAILABLE
    _bugs.log("unexpected %s in %s", type(exc).__name__, method, exc_info=exc)
    return ErrorCode.INTERNAL, INTERNAL_MESSAGE
