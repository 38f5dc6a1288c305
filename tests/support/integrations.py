"""Typed shortcuts for the SCM integration and runner-side RPCs over a Wire,
and runners with keys and credentials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.runner_client import RunnerKey
from hostauth.store import ApiKeyStore
from tests.support.requests import secret
from tests.support.serving import make_api_key
from tests.support.wire import Wire

SIGNUP = "RunnerInteractionService/Signup"
SEALED_READ = "RunnerInteractionService/GetHostAuthenticationTokenValue"


def integration_request(runner_id: str, **overrides: Any) -> pb.CreateSCMIntegrationRequest:
    fields: dict[str, Any] = {
        "runner_id": runner_id,
        "scm_id": "github",
        "host": "github.com",
        "oauth_client_id": "Iv1.client-" + uuid4().hex[:8],
        "oauth_plaintext_client_secret": secret("cs_"),
        "pat": True,
    }
    fields.update(overrides)
    return pb.CreateSCMIntegrationRequest(**{k: v for k, v in fields.items() if v is not None})


async def create_integration(wire: Wire, req: pb.CreateSCMIntegrationRequest) -> str:
    return (await wire.call("CreateSCMIntegration", req, pb.CreateSCMIntegrationResponse)).id


async def get_integration(wire: Wire, integration_id: str) -> pb.SCMIntegration:
    req = pb.GetSCMIntegrationRequest(id=integration_id)
    return (await wire.call("GetSCMIntegration", req, pb.GetSCMIntegrationResponse)).integration


async def list_integrations(
    wire: Wire, *runner_ids: str, page_size: int = 0, token: str = ""
) -> pb.ListSCMIntegrationsResponse:
    req = pb.ListSCMIntegrationsRequest(
        pagination={"page_size": page_size, "token": token},  # type: ignore[arg-type]
        filter=pb.ListSCMIntegrationsRequest.Filter(runner_ids=list(runner_ids)),
    )
    return await wire.call("ListSCMIntegrations", req, pb.ListSCMIntegrationsResponse)


async def update_integration(wire: Wire, integration_id: str, **fields: Any) -> None:
    req = pb.UpdateSCMIntegrationRequest(id=integration_id, **fields)
    await wire.call("UpdateSCMIntegration", req, pb.UpdateSCMIntegrationResponse)


async def delete_integration(wire: Wire, integration_id: str) -> None:
    req = pb.DeleteSCMIntegrationRequest(id=integration_id)
    await wire.call("DeleteSCMIntegration", req, pb.DeleteSCMIntegrationResponse)


async def signup(wire: Wire, public_key: bytes) -> str:
    answer = await wire.call(SIGNUP, ri.SignupRequest(public_key=public_key), ri.SignupResponse)
    return answer.runner_id


async def sealed_read(
    wire: Wire, runner_id: str, principal_id: str, host: str
) -> ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse:
    req = ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest(
        runner_id=runner_id, principal_id=principal_id, host=host
    )
    return await wire.call(
        SEALED_READ, req, ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse
    )


@dataclass
class Runner:
    """A runner: its id, key pair, and a wire with its own credential."""

    id: str
    key: RunnerKey
    wire: Wire


async def new_runner(wire: Wire, api_keys: ApiKeyStore, *, signed_up: bool = True) -> Runner:
    runner_id = uuid4()
    credential = await make_api_key(api_keys, identity_pb2.PRINCIPAL_RUNNER, runner_id)
    runner = Runner(str(runner_id), RunnerKey.generate(), wire.with_credential(credential))
    if signed_up:
        assert await signup(runner.wire, runner.key.public_der) == runner.id
    return runner
