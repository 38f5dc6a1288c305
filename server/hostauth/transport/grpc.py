"""gRPC adapter (grpc.aio): health, reflection, and the service core."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hostauth.auth.authenticator import request_id_from
from hostauth.auth.caller import Call
from hostauth.core import versions
from hostauth.core.service import HostAuthService
from hostauth.telemetry.calls import CODE_NAMES, GRPC, OK
from hostauth.tls.identities import identity_of_pem
from hostauth.transport.calls import Calls, CoreMethod, Refused, Undecodable
from hostauth.transport.methods import CONFIGURATION, METHODS, QUALIFIED, SERVICES
from hostauth.transport.status import STATUS

Req = TypeVar("Req")
Res = TypeVar("Res")

SERVICE_NAME = CONFIGURATION


Context = grpc.aio.ServicerContext
log = logging.getLogger(__name__)

# grpc.aio cancels a call whose client leaves. An Update or a Delete already
# under way is finished instead, as on Connect (server/hostauth/transport/connect.py),
# so a departed client's write has the same outcome on every wire. Create
# already runs in a statement shared with other requests, which completes.
# A deadline still calls it off, as on Connect (see _DEADLINE_SLACK_S).
_FINISHED_WHEN_LEFT = frozenset(
    {
        "UpdateHostAuthenticationToken",
        "DeleteHostAuthenticationToken",
        "CreateSCMIntegration",
        "UpdateSCMIntegration",
        "DeleteSCMIntegration",
        "Signup",
    }
)


# A client's own deadline usually ends the call first: it resets the stream
# when its timer fires, a moment before the server's copy of that deadline
# (counted from when the request arrived) runs out. A cancel that close to
# the deadline is taken for the deadline.
_DEADLINE_SLACK_S = 1.0

# W3C trace context, when the caller sends it.
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})


def _outcome_unheard(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:  # retrieved: nobody waits for it
        log.info("a call whose client left ended with %s", type(task.exception()).__name__)


async def _finished_unless_late(work: Awaitable[Res], context: Context[Any, Any], calls: Calls) -> Res:
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    # The call's own budget (Calls.answer) started a moment before this.
    budget_end = loop.time() + calls.budget_s - _DEADLINE_SLACK_S
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        remaining = context.time_remaining()
        if (
            (remaining is not None and remaining < _DEADLINE_SLACK_S)  # the deadline ended the call
            or loop.time() >= budget_end  # so did its budget
            or calls.ending  # a stop out of grace
        ):
            task.cancel()
        else:
            task.add_done_callback(_outcome_unheard)
        raise


async def _call(
    calls: Calls,
    service: str,
    name: str,
    method: CoreMethod[Req, Res],
    request: Req | Undecodable,
    context: Context[Req, Res],
    peer: str | None = None,
) -> Res:
    authorization: list[str] = []
    request_id: str | None = None
    if_match: str | None = None
    carrier: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            authorization.append(value)
        elif key == "x-request-id" and isinstance(value, str):
            request_id = value
        elif key == "if-match" and isinstance(value, str):
            if_match = value
        elif key in _TRACE_KEYS and isinstance(value, str):
            carrier[key] = value
    telemetry = calls.telemetry
    record = telemetry.begin(name, GRPC, carrier, service) if telemetry.active else None
    rid = request_id_from(request_id)
    # The request id goes back in the trailers, which travel with the status,
    # refusals included: initial metadata of its own would be a separate send
    # (docs/benchmarks.md, decisions). An abort keeps trailers set here.
    context.set_trailing_metadata((("x-request-id", rid),))
    if name in _FINISHED_WHEN_LEFT:
        method = _finishing(method, context, calls)
    answer = versions.Answer(if_match)
    versions.current.set(answer)  # this call's task only
    try:
        result = await calls.answer(
            QUALIFIED[service, name], authorization, rid, method, request, peer, record
        )
    except Refused as refused:
        code, message = refused.code, refused.message
    except asyncio.CancelledError:
        if record is not None:
            remaining = context.time_remaining()
            late = remaining is not None and remaining < _DEADLINE_SLACK_S
            telemetry.end(record, "DeadlineExceeded" if late else "Canceled")
        raise
    else:
        etag = answer.etag()
        if etag is not None:
            context.set_trailing_metadata((("x-request-id", rid), ("etag", etag)))
        if record is not None:
            telemetry.end(record, OK)
        return result
    if record is not None:
        telemetry.end(record, CODE_NAMES[code])
    await context.abort(STATUS[code][0], message)
    raise AssertionError("unreachable: abort raises")


def _finishing(
    method: CoreMethod[Req, Res], context: Context[Any, Any], calls: Calls
) -> CoreMethod[Req, Res]:
    async def finished(core: HostAuthService, request: Req, call: Call) -> Res:
        return await _finished_unless_late(method(core, request, call), context, calls)

    return finished


def _decoder(message_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    # grpcio answers a deserializer's exception with UNKNOWN; bad input is the
    # caller's mistake, so it must come back as INVALID_ARGUMENT, as on Connect.
    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Undecodable(f"unmarshal message: {exc}")

    return decode


def _method_handler(
    calls: Calls,
    service: str,
    name: str,
    method: CoreMethod[Any, Message],
    request_type: type[Message],
    client_certs: bool = False,
) -> grpc.RpcMethodHandler[Any, Any]:
    async def handle(request: Message | Undecodable, context: Context[Any, Any]) -> Message:
        return await _call(calls, service, name, method, request, context)

    async def handle_with_peer(request: Message | Undecodable, context: Context[Any, Any]) -> Message:
        return await _call(calls, service, name, method, request, context, _peer(context))

    return grpc.unary_unary_rpc_method_handler(
        handle_with_peer if client_certs else handle,
        request_deserializer=_decoder(request_type),
        response_serializer=lambda message: message.SerializeToString(),
    )


def core_methods(service: str = CONFIGURATION) -> dict[str, tuple[CoreMethod[Any, Message], type[Message]]]:
    """Each RPC of a proto service by its wire name: the core method that
    answers it (unbound), and its request type."""
    return METHODS[service]


_PEERS_KEPT = 1024
_peers: dict[bytes, str | None] = {}


def _peer(context: Context[Any, Any]) -> str | None:
    """The identity of the connection's client certificate (grpc verified it
    against the client CA in the handshake), parsed once per certificate."""
    pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
    if pem is None:
        return None
    if pem not in _peers:
        if len(_peers) >= _PEERS_KEPT:
            _peers.clear()
        _peers[pem] = identity_of_pem(pem)
    return _peers[pem]


def service_handlers(
    calls: Calls, *, client_certs: bool = False
) -> tuple[grpc.GenericRpcHandler[Any, Any], ...]:
    return tuple(
        grpc.method_handlers_generic_handler(
            service,
            {
                name: _method_handler(calls, service, name, method, request_type, client_certs)
                for name, (method, request_type) in METHODS[service].items()
            },
        )
        for service in SERVICES
    )


@dataclass(frozen=True, slots=True)
class GrpcServer:
    server: grpc.aio.Server
    health: Any  # health.aio.HealthServicer: grpc-stubs does not know the aio module

    async def mark_serving(self) -> None:
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def publish(self, ready: bool) -> None:
        """Readiness as gRPC health (transport/health.py)."""
        await (self.mark_serving() if ready else self.mark_not_serving())

    async def mark_not_serving(self) -> None:
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


_IDLE_MS = 5 * 60 * 1000
_MAX_METADATA_BYTES = 64 << 10  # as the HTTP port's headers


def build_grpc_server(
    calls: Calls,
    *,
    max_message_bytes: int,
    reuse_port: bool = False,
    extra_handlers: tuple[grpc.GenericRpcHandler[Any, Any], ...] = (),
    handshake_timeout_s: float = 10.0,
    max_connections: int = 4096,
    client_certs: bool = False,
) -> GrpcServer:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            # grpcio shares ports by default; a lone server should fail on a taken port.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # A connection that never sends the HTTP/2 preface and settings
            # is closed after this (the default is two minutes).
            ("grpc.server_handshake_timeout_ms", int(handshake_timeout_s * 1000)),
            # Connections beyond this are closed as they arrive.
            ("grpc.max_allowed_incoming_connections", max_connections),
            # A client connection with no call for this long is sent GOAWAY
            # (clients reconnect when they next call).
            ("grpc.max_connection_idle_ms", _IDLE_MS),
            ("grpc.max_metadata_size", _MAX_METADATA_BYTES),
        ]
    )
    server.add_generic_rpc_handlers(service_handlers(calls, client_certs=client_certs))
    if extra_handlers:
        server.add_generic_rpc_handlers(extra_handlers)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined] # public, unstubbed
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return GrpcServer(server, health_servicer)
