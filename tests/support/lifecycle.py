"""Typed shortcuts for each RPC over a Wire."""

from __future__ import annotations

from typing import Any

from gitpod.v1 import runner_configuration_pb2 as pb
from tests.support.requests import create_request
from tests.support.wire import Wire


async def create(
    wire: Wire, req: pb.CreateHostAuthenticationTokenRequest | None = None
) -> pb.HostAuthenticationToken:
    req = req or create_request()
    answer = await wire.call("CreateHostAuthenticationToken", req, pb.CreateHostAuthenticationTokenResponse)
    return answer.token


async def get(wire: Wire, token_id: str) -> pb.HostAuthenticationToken:
    req = pb.GetHostAuthenticationTokenRequest(id=token_id)
    return (await wire.call("GetHostAuthenticationToken", req, pb.GetHostAuthenticationTokenResponse)).token


async def list_page(
    wire: Wire, *, page_size: int = 0, token: str = "", **filters: str
) -> pb.ListHostAuthenticationTokensResponse:
    req = pb.ListHostAuthenticationTokensRequest(
        pagination={"page_size": page_size, "token": token},  # type: ignore[arg-type]
        filter=pb.ListHostAuthenticationTokensRequest.Filter(**filters),
    )
    return await wire.call("ListHostAuthenticationTokens", req, pb.ListHostAuthenticationTokensResponse)


async def list_all(wire: Wire, *, page_size: int, **filters: str) -> list[str]:
    """Walk every page; return the ids in the order they came."""
    ids: list[str] = []
    token = ""
    while True:
        page = await list_page(wire, page_size=page_size, token=token, **filters)
        assert len(page.tokens) <= (page_size or 25)
        ids += [t.id for t in page.tokens]
        token = page.pagination.next_token
        if not token:
            return ids


async def update(wire: Wire, token_id: str, **fields: Any) -> None:
    req = pb.UpdateHostAuthenticationTokenRequest(id=token_id, **fields)
    await wire.call("UpdateHostAuthenticationToken", req, pb.UpdateHostAuthenticationTokenResponse)


async def delete(wire: Wire, token_id: str) -> None:
    req = pb.DeleteHostAuthenticationTokenRequest(id=token_id)
    await wire.call("DeleteHostAuthenticationToken", req, pb.DeleteHostAuthenticationTokenResponse)


async def get_value(wire: Wire, token_id: str) -> pb.GetHostAuthenticationTokenValueResponse:
    req = pb.GetHostAuthenticationTokenValueRequest(id=token_id)
    return await wire.call("GetHostAuthenticationTokenValue", req, pb.GetHostAuthenticationTokenValueResponse)
