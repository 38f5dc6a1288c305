"""The service's log lines: text, or one JSON object a line
(HOSTAUTH_LOG_FORMAT), from HOSTAUTH_LOG_LEVEL up.

A JSON line has time, level, logger and message, the request id and trace
id of the call it was logged in (when there is one), and the event's own
fields (the `extra` of the logging call: the access log's method,
transport, code, duration, principal and credential id). No line carries a
secret: the service logs ids, names, counts and codes only.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from hostauth.log_repeats import QuietRepeats
from hostauth.telemetry import tracing

# The request id of the call being served (set by transport/calls.py).
request_id_var: ContextVar[str] = ContextVar("request_id", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CallContext(logging.Filter):
    """Adds the current call's request id and trace id to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or None
        record.trace_id = tracing.current_trace_id()
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(trace_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """The root logger's one handler, on stderr, in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallContext())
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("asyncpg.pool").addFilter(QuietRepeats())  # a traceback per reconnect attempt
