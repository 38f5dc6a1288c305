"""The one table from core error codes to each wire's status."""

from __future__ import annotations

import logging
import time

import grpc
from connectrpc.code import Code

from hostauth.errors import DATABASE_UNAVAILABLE, ErrorCode, ServiceError
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
    ErrorCode.ABORTED: (grpc.StatusCode.ABORTED, Code.ABORTED),
    ErrorCode.UNIMPLEMENTED: (grpc.StatusCode.UNIMPLEMENTED, Code.UNIMPLEMENTED),
    ErrorCode.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, Code.UNAVAILABLE),
    ErrorCode.DATA_LOSS: (grpc.StatusCode.DATA_LOSS, Code.DATA_LOSS),
    ErrorCode.INTERNAL: (grpc.StatusCode.INTERNAL, Code.INTERNAL),
}

INTERNAL_MESSAGE = "internal error"


class _OutageLog:
    """While the database is out every call fails the same way: one warning
    every few seconds, with how many more failed, not a traceback each."""

    __slots__ = ("_next", "_quiet")
    INTERVAL_S = 5.0

    def __init__(self) -> None:
        self._next = 0.0
        self._quiet = 0

    def failed(self, method: str, exc: Exception) -> None:
        now = time.monotonic()
        if now < self._next:
            self._quiet += 1
            return
        more = f"; {self._quiet} more call(s) failed so since the last warning" if self._quiet else ""
        log.warning("database unavailable in %s: %s%s", method, type(exc).__name__, more)
        self._next, self._quiet = now + self.INTERVAL_S, 0


_outages = _OutageLog()


def classify(method: str, exc: Exception) -> tuple[ErrorCode, str]:
    """The code and caller-facing message for an exception from the core.

    The database out (or too slow) is unavailable, for the caller to retry.
    Anything else that is not a ServiceError is a bug: it is logged here
    (type and traceback; the core puts no secret in exceptions) and the
    caller sees only a generic message, never a stack trace.
    """
    if isinstance(exc, ServiceError):
        if exc.code is ErrorCode.UNAVAILABLE:
            _outages.failed(method, exc.__cause__ if isinstance(exc.__cause__, Exception) else exc)
        return exc.code, exc.message
    if is_outage(exc):
        _outages.failed(method, exc)
        return ErrorCode.UNAVAILABLE, DATABASE_UNAVAILABLE
    log.error("unexpected %s in %s", type(exc).__name__, method, exc_info=exc)
    return ErrorCode.INTERNAL, INTERNAL_MESSAGE
