"""The audit trail as the core writes it: an event per write or secret
read (committed with it, by the vault), and one per refusal of either."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import UUID

from hostauth.auth.caller import Call
from hostauth.core.model import AuditEvent
from hostauth.core.policy import Action
from hostauth.errors import ServiceError, Unavailable
from hostauth.log_repeats import Repeats
from hostauth.store.outage import is_outage
from hostauth.telemetry import metrics

log = logging.getLogger("hostauth.core")
_failures = Repeats(log)

T = TypeVar("T")


def event(
    call: Call, action: Action, outcome: str, token_id: UUID | None = None, integration_id: UUID | None = None
) -> AuditEvent:
    caller = call.caller
    return AuditEvent(
        call.request_id,
        action.value,
        token_id,
        caller.principal,
        caller.subject_id,
        caller.credential_id,
        outcome,
        integration_id,
    )


class Trail:
    """Records refusals through `write` (a vault's audit method)."""

    __slots__ = ("_write",)

    def __init__(self, write: Callable[[AuditEvent], Awaitable[None]]) -> None:
        self._write = write

    async def refusal(
        self, call: Call, action: Action, exc: Exception, token_id: UUID | None, integration_id: UUID | None
    ) -> None:
        """Record a refused write or secret read; a failure here is logged,
        the refusal stands."""
        if is_outage(exc) or isinstance(exc, Unavailable):
            return  # the database is out: there is nowhere to record it
        outcome = exc.code.value if isinstance(exc, ServiceError) else "internal"
        try:
            await self._write(event(call, action, outcome, token_id, integration_id))
        except Exception as audit_exc:  # noqa: BLE001 # the caller gets the first error
            metrics.audit_write_failures.inc()
            _failures.log("audit of a refused %s failed: %s", action.value, type(audit_exc).__name__)

    async def audited(
        self,
        call: Call,
        action: Action,
        work: Awaitable[T],
        *,
        token_id: UUID | None = None,
        integration_id: UUID | None = None,
    ) -> T:
        """Run a write or secret read; a refusal of it is recorded too (its
        success records itself, in the statement that writes)."""
        try:
            return await work
        except Exception as exc:
            await self.refusal(call, action, exc, token_id, integration_id)
            raise
