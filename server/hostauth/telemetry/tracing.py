"""OpenTelemetry traces, configured by the standard OTEL_* variables.

On when they name an OTLP endpoint or a traces exporter (config.py:
`tracing_configured`); then each worker has its own tracer provider (the
sampler from OTEL_TRACES_SAMPLER, the resource from OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES, service.name "hostauth" when unnamed), exports
over OTLP/HTTP with protobuf (OTEL_EXPORTER_OTLP_*) in batches, and
asyncpg's statements are spans (their SQL text, never parameter values).
Off, nothing here is imported beyond this module, and `span` hands back
one shared context manager that does nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

_provider: TracerProvider | None = None
tracer: Tracer | None = None

_NOTHING = contextlib.nullcontext()


def start_tracing(version: str) -> None:
    """The tracer provider of this process, exporting as OTEL_* says."""
    global _provider, tracer
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.version": version})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "hostauth"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider, tracer = provider, provider.get_tracer("hostauth", version)


def stop_tracing() -> None:
    """Export what is left, then stop."""
    global _provider, tracer
    if _provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    _provider.shutdown()
    _provider, tracer = None, None


def span(name: str, attributes: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one while tracing, else nothing."""
    if tracer is None:
        return _NOTHING
    return _child(tracer, name, attributes)


@contextlib.contextmanager
def _child(tracer: Tracer, name: str, attributes: Mapping[str, Any] | None) -> Iterator[None]:
    with tracer.start_as_current_span(name, attributes=attributes):
        yield


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), or None."""
    if tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
