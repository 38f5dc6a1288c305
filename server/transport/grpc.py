"""gRPC adapter (grpc.aio): health, reflection, and the service core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_configuration_pb2_grpc as pb_grpc
from server.service import HostAuthService
from server.transport.status import STATUS, classify

Req = TypeVar("Req")
Res = TypeVar("Res")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RunnerConfigurationService"].full_name


Context = grpc.aio.ServicerContext


async def _call(method: Callable[[Req], Awaitable[Res]], request: Req, context: Context[Req, Res]) -> Res:
    try:
        return await method(request)
    except Exception as exc:  # noqa: BLE001 # every failure becomes a status
        code, message = classify(method.__name__, exc)
    await context.abort(STATUS[code][0], message)
    raise AssertionError("unreachable: abort raises")


class GrpcRunnerConfiguration:
    """The servicer grpcio calls: one line per method into the core."""

    __slots__ = ("_core",)

    def __init__(self, core: HostAuthService) -> None:
        self._core = core

    async def CreateHostAuthenticationToken(  # noqa: N802
        self,
        request: pb.CreateHostAuthenticationTokenRequest,
        context: Context[pb.CreateHostAuthenticationTokenRequest, pb.CreateHostAuthenticationTokenResponse],
    ) -> pb.CreateHostAuthenticationTokenResponse:
        return await _call(self._core.create_host_authentication_token, request, context)

    async def GetHostAuthenticationToken(  # noqa: N802
        self,
        request: pb.GetHostAuthenticationTokenRequest,
        context: Context[pb.GetHostAuthenticationTokenRequest, pb.GetHostAuthenticationTokenResponse],
    ) -> pb.GetHostAuthenticationTokenResponse:
        return await _call(self._core.get_host_authentication_token, request, context)

    async def ListHostAuthenticationTokens(  # noqa: N802
        self,
        request: pb.ListHostAuthenticationTokensRequest,
        context: Context[pb.ListHostAuthenticationTokensRequest, pb.ListHostAuthenticationTokensResponse],
    ) -> pb.ListHostAuthenticationTokensResponse:
        return await _call(self._core.list_host_authentication_tokens, request, context)

    async def UpdateHostAuthenticationToken(  # noqa: N802
        self,
        request: pb.UpdateHostAuthenticationTokenRequest,
        context: Context[pb.UpdateHostAuthenticationTokenRequest, pb.UpdateHostAuthenticationTokenResponse],
    ) -> pb.UpdateHostAuthenticationTokenResponse:
        return await _call(self._core.update_host_authentication_token, request, context)

    async def DeleteHostAuthenticationToken(  # noqa: N802
        self,
        request: pb.DeleteHostAuthenticationTokenRequest,
        context: Context[pb.DeleteHostAuthenticationTokenRequest, pb.DeleteHostAuthenticationTokenResponse],
    ) -> pb.DeleteHostAuthenticationTokenResponse:
        return await _call(self._core.delete_host_authentication_token, request, context)

    async def GetHostAuthenticationTokenValue(  # noqa: N802
        self,
        request: pb.GetHostAuthenticationTokenValueRequest,
        context: Context[
            pb.GetHostAuthenticationTokenValueRequest, pb.GetHostAuthenticationTokenValueResponse
        ],
    ) -> pb.GetHostAuthenticationTokenValueResponse:
        return await _call(self._core.get_host_authentication_token_value, request, context)


@dataclass(frozen=True, slots=True)
class GrpcServer:
    server: grpc.aio.Server
    health: health_aio.HealthServicer

    async def mark_serving(self) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)


def build_grpc_server(core: HostAuthService, *, max_message_bytes: int) -> GrpcServer:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes)])
    pb_grpc.add_RunnerConfigurationServiceServicer_to_server(  # type: ignore[no-untyped-call]
        GrpcRunnerConfiguration(core), server
    )
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return GrpcServer(server, health_servicer)
