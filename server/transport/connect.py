"""Connect adapter: an ASGI app serving Connect JSON and Connect proto."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1.runner_configuration_connect import RunnerConfigurationServiceASGIApplication
from server.service import HostAuthService
from server.transport.status import STATUS, classify

Req = TypeVar("Req")
Res = TypeVar("Res")
Ctx = RequestContext[Any, Any]


async def _call(method: Callable[[Req], Awaitable[Res]], request: Req) -> Res:
    try:
        return await method(request)
    except Exception as exc:  # noqa: BLE001 # every failure becomes a status
        code, message = classify(method.__name__, exc)
    raise ConnectError(STATUS[code][1], message)


class ConnectRunnerConfiguration:
    """Implements the generated RunnerConfigurationService protocol."""

    __slots__ = ("_core",)

    def __init__(self, core: HostAuthService) -> None:
        self._core = core

    async def create_host_authentication_token(
        self, request: pb.CreateHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.CreateHostAuthenticationTokenResponse:
        return await _call(self._core.create_host_authentication_token, request)

    async def get_host_authentication_token(
        self, request: pb.GetHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.GetHostAuthenticationTokenResponse:
        return await _call(self._core.get_host_authentication_token, request)

    async def list_host_authentication_tokens(
        self, request: pb.ListHostAuthenticationTokensRequest, ctx: Ctx, /
    ) -> pb.ListHostAuthenticationTokensResponse:
        return await _call(self._core.list_host_authentication_tokens, request)

    async def update_host_authentication_token(
        self, request: pb.UpdateHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.UpdateHostAuthenticationTokenResponse:
        return await _call(self._core.update_host_authentication_token, request)

    async def delete_host_authentication_token(
        self, request: pb.DeleteHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.DeleteHostAuthenticationTokenResponse:
        return await _call(self._core.delete_host_authentication_token, request)

    async def get_host_authentication_token_value(
        self, request: pb.GetHostAuthenticationTokenValueRequest, ctx: Ctx, /
    ) -> pb.GetHostAuthenticationTokenValueResponse:
        return await _call(self._core.get_host_authentication_token_value, request)


def build_connect_app(
    core: HostAuthService, *, max_message_bytes: int
) -> RunnerConfigurationServiceASGIApplication:
    return RunnerConfigurationServiceASGIApplication(
        ConnectRunnerConfiguration(core), read_max_bytes=max_message_bytes
    )
