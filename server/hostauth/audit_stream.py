"""Every audit event also as one JSON line on a sink, for a SIEM
(HOSTAUTH_AUDIT_SINK: `stdout`, or `file:<path>`).

The database row stays the record: a line is written after the statement
that wrote its row has committed, so a line always names an event that is
in the database, and an event whose line was not written (the process
killed in between, the sink failing) is still there, in `hostauth audit
list`. Delivery is at most once, in the order each process committed.
Each line is one write(2) to a descriptor opened for appending, so the
lines of several workers on one file or pipe never interleave. A sink that
fails is counted (hostauth_audit_stream_failures_total) and logged once a
while; it never fails a call.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from gitpod.v1.identity_pb2 import Principal
from hostauth.config import ConfigError
from hostauth.core.model import AuditEvent
from hostauth.log_repeats import Repeats
from hostauth.telemetry import metrics

log = logging.getLogger(__name__)
_failures = Repeats(log)


def event_record(event: AuditEvent, at: datetime) -> dict[str, object]:
    """An event as the stream's lines and `hostauth audit list --json` give it."""
    return {
        "at": at.isoformat(),
        "request_id": event.request_id,
        "method": event.method,
        "token_id": str(event.token_id) if event.token_id else None,
        "integration_id": str(event.integration_id) if event.integration_id else None,
        "outcome": event.outcome,
        "principal": Principal.Name(event.principal),
        "subject_id": str(event.subject_id),
        "credential_id": event.credential_id,
    }


def event_line(event: AuditEvent, at: datetime) -> bytes:
    return json.dumps(event_record(event, at), separators=(",", ":")).encode() + b"\n"


class AuditStream:
    """A sink's descriptor; `emit` after an audit row has committed."""

    __slots__ = ("_fd", "target")

    def __init__(self, target: str) -> None:
        self.target = target
        if target == "stdout":
            self._fd = sys.stdout.fileno()
        else:
            path = target.removeprefix("file:")
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise ConfigError(f"HOSTAUTH_AUDIT_SINK: cannot open {path}: {exc.strerror}") from None

    def emit(self, event: AuditEvent) -> None:
        try:
            os.write(self._fd, event_line(event, datetime.now(UTC)))
        except OSError as exc:
            metrics.audit_stream_failures.inc()
            _failures.log("audit stream %s failed: %s", self.target, exc.strerror)

    def close(self) -> None:
        if self.target != "stdout":
            os.close(self._fd)
