"""Every RPC the service answers, by service and method: the core method
that answers it (unbound: the adapters bind it to the core of the moment)
and its request type. One table for both wires."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.auth.caller import Call
from hostauth.core.service import HostAuthService
from hostauth.transport.calls import CoreMethod

CONFIGURATION = pb.DESCRIPTOR.services_by_name["RunnerConfigurationService"].full_name
INTERACTION = ri.DESCRIPTOR.services_by_name["RunnerInteractionService"].full_name
SERVICES = (CONFIGURATION, INTERACTION)


async def _create_integration(
    core: HostAuthService, req: pb.CreateSCMIntegrationRequest, call: Call
) -> pb.CreateSCMIntegrationResponse:
    return await core.integrations.create(req, call)


async def _get_integration(
    core: HostAuthService, req: pb.GetSCMIntegrationRequest, call: Call
) -> pb.GetSCMIntegrationResponse:
    return await core.integrations.get(req, call)


async def _list_integrations(
    core: HostAuthService, req: pb.ListSCMIntegrationsRequest, call: Call
) -> pb.ListSCMIntegrationsResponse:
    return await core.integrations.list(req, call)


async def _update_integration(
    core: HostAuthService, req: pb.UpdateSCMIntegrationRequest, call: Call
) -> pb.UpdateSCMIntegrationResponse:
    return await core.integrations.update(req, call)


async def _delete_integration(
    core: HostAuthService, req: pb.DeleteSCMIntegrationRequest, call: Call
) -> pb.DeleteSCMIntegrationResponse:
    return await core.integrations.delete(req, call)


async def _signup(core: HostAuthService, req: ri.SignupRequest, call: Call) -> ri.SignupResponse:
    return await core.runners.signup(req, call)


async def _sealed_read(
    core: HostAuthService, req: ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest, call: Call
) -> ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse:
    return await core.runners.get_token_value(req, call)


Bound = tuple[CoreMethod[Any, Message], type[Message]]

METHODS: dict[str, dict[str, Bound]] = {
    CONFIGURATION: {
        "CreateHostAuthenticationToken": (
            HostAuthService.create_host_authentication_token,
            pb.CreateHostAuthenticationTokenRequest,
        ),
        "GetHostAuthenticationToken": (
            HostAuthService.get_host_authentication_token,
            pb.GetHostAuthenticationTokenRequest,
        ),
        "ListHostAuthenticationTokens": (
            HostAuthService.list_host_authentication_tokens,
            pb.ListHostAuthenticationTokensRequest,
        ),
        "UpdateHostAuthenticationToken": (
            HostAuthService.update_host_authentication_token,
            pb.UpdateHostAuthenticationTokenRequest,
        ),
        "DeleteHostAuthenticationToken": (
            HostAuthService.delete_host_authentication_token,
            pb.DeleteHostAuthenticationTokenRequest,
        ),
        "GetHostAuthenticationTokenValue": (
            HostAuthService.get_host_authentication_token_value,
            pb.GetHostAuthenticationTokenValueRequest,
        ),
        "CreateSCMIntegration": (_create_integration, pb.CreateSCMIntegrationRequest),
        "GetSCMIntegration": (_get_integration, pb.GetSCMIntegrationRequest),
        "ListSCMIntegrations": (_list_integrations, pb.ListSCMIntegrationsRequest),
        "UpdateSCMIntegration": (_update_integration, pb.UpdateSCMIntegrationRequest),
        "DeleteSCMIntegration": (_delete_integration, pb.DeleteSCMIntegrationRequest),
    },
    INTERACTION: {
        "Signup": (_signup, ri.SignupRequest),
        "GetHostAuthenticationTokenValue": (
            _sealed_read,
            ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest,
        ),
    },
}


def qualified(service: str, method: str) -> str:
    """How logs and the audit trail name a method: bare for
    RunnerConfigurationService (as ever), with its service otherwise."""
    return method if service == CONFIGURATION else f"{service.rsplit('.', 1)[-1]}/{method}"


# By (service, method), made once: a call looks its name up.
QUALIFIED = {
    (service, name): qualified(service, name) for service, methods in METHODS.items() for name in methods
}
