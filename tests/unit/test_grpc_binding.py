"""Every RPC of the proto service is bound to a core method and its request
type, by wire name (hostauth/transport/grpc.py)."""

from __future__ import annotations

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.core.service import HostAuthService
from hostauth.transport.grpc import SERVICE_NAME, core_methods


def test_each_rpc_has_its_core_method_and_request_type() -> None:
    service = pb.DESCRIPTOR.services_by_name["RunnerConfigurationService"]
    bound = core_methods()
    assert service.full_name == SERVICE_NAME
    assert set(bound) == {m.name for m in service.methods}
    for m in service.methods:
        method, request_type = bound[m.name]
        assert request_type.DESCRIPTOR.full_name == m.input_type.full_name
        # The core method answers with the RPC's response type.
        assert method.__annotations__["return"].endswith(m.output_type.name)
        assert getattr(HostAuthService, method.__name__) is method
