"""The one table from core error codes to each wire's status."""

from __future__ import annotations

import logging

import grpc
from connectrpc.code import Code

from server.errors import ErrorCode, ServiceError

log = logging.getLogger("server.transport")

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


def classify(method: str, exc: Exception) -> tuple[ErrorCode, str]:
    """The code and caller-facing message for an exception from the core.

    Anything that is not a ServiceError is a bug or an outage: it is logged
    here (type and traceback; the core puts no secret in exceptions) and the
    caller sees only a generic message, never a stack trace.
    """
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    log.error("unexpected %s in %s", type(exc).__name__, method, exc_info=exc)
    return ErrorCode.INTERNAL, INTERNAL_MESSAGE
