"""The benchmark's framework floor: an echo method on both servers.

Served by the bench's own entry (bench/server.py), beside the service's
methods. It decodes, dispatches and encodes like every other method, and
does nothing else (no authentication, no database), so `make bench` can
divide the service's rates by it.
"""

from __future__ import annotations

from typing import Any

import grpc
from connectrpc.request import RequestContext

from bench.gen.hostauth.bench.v1 import echo_pb2
from bench.gen.hostauth.bench.v1.echo_connect import EchoServiceASGIApplication
from hostauth.runtime.serve import Extras
from hostauth.transport.codecs import connect_codecs
from hostauth.transport.http_server import HttpServer, serve_granian

SERVICE = "hostauth.bench.v1.EchoService"
PATH_PREFIX = f"/{SERVICE}/"


class _ConnectEcho:
    async def echo(
        self, request: echo_pb2.EchoRequest, ctx: RequestContext[Any, Any], /
    ) -> echo_pb2.EchoResponse:
        return echo_pb2.EchoResponse(payload=request.payload)


def connect_echo_app(max_message_bytes: int) -> EchoServiceASGIApplication:
    return EchoServiceASGIApplication(
        _ConnectEcho(),
        read_max_bytes=max_message_bytes,
        codecs=connect_codecs(),
    )


async def _grpc_echo(request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
    return echo_pb2.EchoResponse(payload=request.payload)


def grpc_echo_handler() -> grpc.GenericRpcHandler[Any, Any]:
    handler = grpc.unary_unary_rpc_method_handler(
        _grpc_echo,
        request_deserializer=echo_pb2.EchoRequest.FromString,
        response_serializer=lambda message: message.SerializeToString(),
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler})


def echo_extras(http_server: HttpServer = serve_granian) -> Extras:
    """What the bench adds to the service: the echo on both ports."""
    return Extras(
        connect_routes=((PATH_PREFIX, connect_echo_app),),
        grpc_handlers=(grpc_echo_handler(),),
        http_server=http_server,
    )
