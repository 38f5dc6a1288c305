"""Every RPC of both proto services is bound to a core method and its
request type, by wire name (hostauth/transport/methods.py), for both wires."""

from __future__ import annotations

import pytest

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.transport.grpc import SERVICE_NAME, core_methods
from hostauth.transport.methods import METHODS, SERVICES

DESCRIPTORS = {
    d.full_name: d
    for d in (
        pb.DESCRIPTOR.services_by_name["RunnerConfigurationService"],
        ri.DESCRIPTOR.services_by_name["RunnerInteractionService"],
    )
}


def test_both_services_are_served() -> None:
    assert set(SERVICES) == set(METHODS) == set(DESCRIPTORS)
    assert SERVICE_NAME == "gitpod.v1.RunnerConfigurationService"


@pytest.mark.parametrize("service", sorted(DESCRIPTORS))
def test_each_rpc_has_its_core_method_and_request_type(service: str) -> None:
    descriptor = DESCRIPTORS[service]
    bound = core_methods(service)
    assert set(bound) == {m.name for m in descriptor.methods}
    for m in descriptor.methods:
        method, request_type = bound[m.name]
        assert request_type.DESCRIPTOR.full_name == m.input_type.full_name
        # The core method answers with the RPC's response type.
        assert method.__annotations__["return"].endswith(m.output_type.name)
