"""Domain errors of the service core.

The core raises these; each transport turns them into its wire status through
the one table in server/hostauth/transport/status.py. Messages are written for the
caller and must never contain a secret.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class ErrorCode(enum.Enum):
    """The codes the core uses, named as in Connect and gRPC."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    UNIMPLEMENTED = "unimplemented"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data_loss"
    INTERNAL = "internal"


class ServiceError(Exception):
    """An error with a code and a caller-facing message."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}: {self.message!r})"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One broken rule: the field path (proto names) and what is wrong."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class InvalidArgument(ServiceError):
    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations))


class NotFound(ServiceError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = ErrorCode.ALREADY_EXISTS


class Unauthenticated(ServiceError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = ErrorCode.PERMISSION_DENIED


class FailedPrecondition(ServiceError):
    code = ErrorCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = ErrorCode.ABORTED


class Unimplemented(ServiceError):
    code = ErrorCode.UNIMPLEMENTED


class DataLoss(ServiceError):
    code = ErrorCode.DATA_LOSS


class Internal(ServiceError):
    code = ErrorCode.INTERNAL


class Unavailable(ServiceError):
    code = ErrorCode.UNAVAILABLE


DATABASE_UNAVAILABLE = "the database is unavailable; retry later"
