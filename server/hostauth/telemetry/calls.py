"""What each call leaves behind: its metrics, its server span, its access
log line; one record per call, begun and ended by the wire's adapter.

Off (no metrics address, no tracing, no access log), `begin` is one
attribute check and returns None. On, a call's metrics are a few integer
additions (tally.py), written to the exported metrics each second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gitpod.v1 import runner_configuration_pb2, runner_interaction_pb2
from gitpod.v1.identity_pb2 import Principal
from hostauth.auth.caller import Caller
from hostauth.errors import ErrorCode
from hostauth.telemetry import tracing
from hostauth.telemetry.metrics import known_series
from hostauth.telemetry.tally import CallTally, MethodTally

if TYPE_CHECKING:
    from opentelemetry.context import Context

access_log = logging.getLogger("hostauth.access")

SERVICE = "gitpod.v1.RunnerConfigurationService"
INTERACTION_SERVICE = "gitpod.v1.RunnerInteractionService"
# Both services have it: the plaintext read and the runner's sealed one.
GET_VALUE = "GetHostAuthenticationTokenValue"
METHODS = tuple(
    runner_configuration_pb2.DESCRIPTOR.services_by_name["RunnerConfigurationService"].methods_by_name
)
INTERACTION_METHODS = tuple(
    runner_interaction_pb2.DESCRIPTOR.services_by_name["RunnerInteractionService"].methods_by_name
)
OK = "OK"

GRPC = "grpc"
CONNECT_JSON = "connect_json"
CONNECT_PROTO = "connect_proto"

# Codes as go-grpc-prometheus names them (Go's codes.Code.String()).
GRPC_CODE_NAMES = {
    "ok": "OK",
    "canceled": "Canceled",
    "unknown": "Unknown",
    "invalid_argument": "InvalidArgument",
    "deadline_exceeded": "DeadlineExceeded",
    "not_found": "NotFound",
    "already_exists": "AlreadyExists",
    "permission_denied": "PermissionDenied",
    "resource_exhausted": "ResourceExhausted",
    "failed_precondition": "FailedPrecondition",
    "aborted": "Aborted",
    "out_of_range": "OutOfRange",
    "unimplemented": "Unimplemented",
    "internal": "Internal",
    "unavailable": "Unavailable",
    "data_loss": "DataLoss",
    "unauthenticated": "Unauthenticated",
}
CODE_NAMES = {code: GRPC_CODE_NAMES[code.value] for code in ErrorCode}
_SNAKE = {name: snake for snake, name in GRPC_CODE_NAMES.items()}

# Server spans are errors for these codes only (OpenTelemetry's RPC conventions).
_SERVER_ERRORS = frozenset(
    {"Unknown", "DeadlineExceeded", "Unimplemented", "Internal", "Unavailable", "DataLoss"}
)
_GRPC_STATUS_NUMBERS = {name: number for number, name in enumerate(GRPC_CODE_NAMES.values())}


def code_name(connect_code: str) -> str:
    """A Connect code ("invalid_argument") in go-grpc-prometheus's terms."""
    return GRPC_CODE_NAMES.get(connect_code, "Unknown")


class CallRecord:
    """One call, from its arrival to its answer."""

    __slots__ = (
        "_token", "caller", "code", "method", "request_id", "service", "span", "started", "tally",
        "transport",
    )  # fmt: skip

    def __init__(self, method: str, transport: str, service: str = SERVICE) -> None:
        self.method = method
        self.service = service
        self.transport = transport
        self.started = time.perf_counter()
        self.code: str | None = None  # set by whoever knows the answer first
        self.caller: Caller | None = None
        self.request_id = ""
        self.span: Any = None
        self.tally: MethodTally | None = None
        self._token: object = None


class CallTelemetry:
    """The telemetry of one process's calls."""

    __slots__ = ("access_log", "active", "metrics", "tally")

    def __init__(self, *, metrics: bool, access_log: bool) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.active = metrics or access_log or tracing.tracer is not None
        self.tally = CallTally()  # written to the metrics by flush(), each second
        if metrics:
            transports = (GRPC, CONNECT_JSON, CONNECT_PROTO)
            known_series(SERVICE, METHODS, transports)
            known_series(INTERACTION_SERVICE, INTERACTION_METHODS, transports)

    def begin(
        self, method: str, transport: str, carrier: Mapping[str, str] | None = None, service: str = SERVICE
    ) -> CallRecord | None:
        """A record of a call of `service`'s `method` arriving; carrier: its
        traceparent and tracestate, when tracing."""
        if not self.active:
            return None
        record = CallRecord(method, transport, service)
        if self.metrics:
            tally = record.tally = self.tally.of(service, method, transport)
            tally.started += 1
        if tracing.tracer is not None:
            _start_span(record, carrier or {})
        return record

    def end(self, record: CallRecord, code: str) -> None:
        """The call answered with `code` (go-grpc-prometheus's name)."""
        elapsed = time.perf_counter() - record.started
        tally = record.tally
        if tally is not None:
            tally.answered(code, elapsed)
            if record.method == GET_VALUE:
                outcome = "served" if code == OK else _SNAKE.get(code, "unknown")
                reads = self.tally.reads
                reads[outcome] = reads.get(outcome, 0) + 1
        if record.span is not None:
            _end_span(record, code)
        if self.access_log:
            _log_access(record, code, elapsed)

    def flush(self) -> None:
        if self.metrics:
            self.tally.flush()


def _start_span(record: CallRecord, carrier: Mapping[str, str]) -> None:
    from opentelemetry import context, propagate, trace

    assert tracing.tracer is not None
    parent: Context = propagate.extract(carrier)
    span = tracing.tracer.start_span(
        f"{record.service}/{record.method}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc" if record.transport == GRPC else "connect_rpc",
            "rpc.service": record.service,
            "rpc.method": record.method,
            "hostauth.transport": record.transport,
        },
    )
    record.span = span
    record._token = context.attach(trace.set_span_in_context(span, parent))


def _end_span(record: CallRecord, code: str) -> None:
    from opentelemetry import context, trace

    span = record.span
    if record.request_id:
        span.set_attribute("hostauth.request_id", record.request_id)
    if record.transport == GRPC:
        span.set_attribute("rpc.grpc.status_code", _GRPC_STATUS_NUMBERS.get(code, 2))
    elif code != OK:
        span.set_attribute("rpc.connect_rpc.error_code", _SNAKE.get(code, "unknown"))
    if code in _SERVER_ERRORS:
        span.set_status(trace.Status(trace.StatusCode.ERROR, code))
    span.end()
    context.detach(record._token)  # type: ignore[arg-type]


def _log_access(record: CallRecord, code: str, elapsed: float) -> None:
    caller = record.caller
    principal = Principal.Name(caller.principal) if caller is not None else None
    credential = caller.credential_id if caller is not None else None
    request_id = record.request_id or None
    access_log.info(
        "%s %s %s %.1f ms request=%s principal=%s credential=%s",
        record.method
        if record.service == SERVICE
        else f"{record.service.rsplit('.', 1)[-1]}/{record.method}",
        record.transport,
        code,
        elapsed * 1000,
        request_id or "-",
        principal or "-",
        credential or "-",
        extra={
            "method": record.method,
            "service": record.service,
            "transport": record.transport,
            "code": code,
            "duration_ms": round(elapsed * 1000, 3),
            "request_id": request_id,
            "principal": principal,
            "subject_id": str(caller.subject_id) if caller is not None else None,
            "credential_id": credential,
        },
    )
