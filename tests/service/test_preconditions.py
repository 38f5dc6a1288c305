"""Tokens' versions as etags (AIP-154) on every wire: each token answer
carries one (a Connect header, gRPC trailing metadata), and Update and
Delete with `if-match` change nothing when the token changed meanwhile."""

from __future__ import annotations

import re

import pytest

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.store import ApiKeyStore
from tests.support.integrations import new_runner
from tests.support.lifecycle import create, get
from tests.support.requests import create_request, secret
from tests.support.wire import Wire, outcome

Token = pb.HostAuthenticationToken


async def etag_of_get(wire: Wire, token_id: str) -> str:
    answer: dict[str, str] = {}
    await wire.call(
        "GetHostAuthenticationToken",
        pb.GetHostAuthenticationTokenRequest(id=token_id),
        pb.GetHostAuthenticationTokenResponse,
        answer=answer,
    )
    return answer["etag"]


async def conditional_update(wire: Wire, token_id: str, etag: str, **fields: object) -> dict[str, str]:
    answer: dict[str, str] = {}
    await wire.call(
        "UpdateHostAuthenticationToken",
        pb.UpdateHostAuthenticationTokenRequest(id=token_id, **fields),  # type: ignore[arg-type]
        pb.UpdateHostAuthenticationTokenResponse,
        headers={"if-match": etag},
        answer=answer,
    )
    return answer


async def conditional_delete(wire: Wire, token_id: str, etag: str) -> None:
    await wire.call(
        "DeleteHostAuthenticationToken",
        pb.DeleteHostAuthenticationTokenRequest(id=token_id),
        pb.DeleteHostAuthenticationTokenResponse,
        headers={"if-match": etag},
    )


async def test_every_token_answer_carries_its_version(wire: Wire, api_keys: ApiKeyStore) -> None:
    runner = await new_runner(wire, api_keys)
    req = create_request(runner_id=runner.id)
    answer: dict[str, str] = {}
    made = (
        await wire.call(
            "CreateHostAuthenticationToken", req, pb.CreateHostAuthenticationTokenResponse, answer=answer
        )
    ).token
    assert answer["etag"] == '"1"'
    assert await etag_of_get(wire, made.id) == '"1"'
    # A Create of the same triple rewrites the token: a new version.
    again: dict[str, str] = {}
    await wire.call(
        "CreateHostAuthenticationToken",
        create_request(runner_id=runner.id, subject=req.subject, token=secret("gho_")),
        pb.CreateHostAuthenticationTokenResponse,
        answer=again,
    )
    assert again["etag"] == '"2"'
    value: dict[str, str] = {}
    await wire.call(
        "GetHostAuthenticationTokenValue",
        pb.GetHostAuthenticationTokenValueRequest(id=made.id),
        pb.GetHostAuthenticationTokenValueResponse,
        answer=value,
    )
    assert value["etag"] == '"2"'
    sealed: dict[str, str] = {}
    await runner.wire.call(
        "RunnerInteractionService/GetHostAuthenticationTokenValue",
        ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest(
            runner_id=runner.id, principal_id=req.subject.id, host=req.host
        ),
        ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse,
        answer=sealed,
    )
    assert sealed["etag"] == '"2"'
    # A page names each token's version.
    other = await create(wire, create_request(runner_id=runner.id, host="gitlab.com"))
    page: dict[str, str] = {}
    await wire.call(
        "ListHostAuthenticationTokens",
        pb.ListHostAuthenticationTokensRequest(filter={"runner_id": runner.id}),  # type: ignore[arg-type]
        pb.ListHostAuthenticationTokensResponse,
        answer=page,
    )
    assert dict(re.findall(r'([0-9a-f-]{36})="(\d+)"', page["etag"])) == {made.id: "2", other.id: "1"}


async def test_update_with_the_current_etag_writes_and_answers_the_next(wire: Wire) -> None:
    token = await create(wire, create_request())
    answer = await conditional_update(wire, token.id, '"1"', scopes=["first"])
    assert answer["etag"] == '"2"'
    assert list((await get(wire, token.id)).scopes) == ["first"]
    # A stale etag changes nothing and says what the version is now.
    code, message = await outcome(conditional_update(wire, token.id, '"1"', scopes=["lost"]))
    assert (code, message) == (
        "failed_precondition",
        f'host authentication token {token.id} changed: it is at version "2", not "1";'
        " read it again and retry with its etag",
    )
    assert list((await get(wire, token.id)).scopes) == ["first"]
    assert await etag_of_get(wire, token.id) == '"2"'
    # Without a precondition, as ever.
    await wire.call(
        "UpdateHostAuthenticationToken",
        pb.UpdateHostAuthenticationTokenRequest(id=token.id, scopes=["last"]),
        pb.UpdateHostAuthenticationTokenResponse,
    )
    assert list((await get(wire, token.id)).scopes) == ["last"]
    assert await etag_of_get(wire, token.id) == '"3"'
    # `*` asks only that the token exists.
    await conditional_update(wire, token.id, "*", scopes=["any"])
    assert list((await get(wire, token.id)).scopes) == ["any"]


async def test_delete_with_a_stale_etag_deletes_nothing(wire: Wire) -> None:
    token = await create(wire, create_request())
    await conditional_update(wire, token.id, '"1"', scopes=["moved on"])
    code, _ = await outcome(conditional_delete(wire, token.id, '"1"'))
    assert code == "failed_precondition"
    assert (await get(wire, token.id)).id == token.id
    await conditional_delete(wire, token.id, '"2"')
    code, _ = await outcome(get(wire, token.id))
    assert code == "not_found"
    # Gone: a precondition on a missing token is not_found, as without one.
    assert await outcome(conditional_delete(wire, token.id, '"2"')) == (
        "not_found",
        f"host authentication token {token.id} not found",
    )


@pytest.mark.parametrize("etag", ["2", 'W/"1"', '"x"', '"1', ""])
async def test_a_malformed_if_match_names_the_header(wire: Wire, etag: str) -> None:
    token = await create(wire, create_request())
    assert await outcome(conditional_update(wire, token.id, etag, scopes=["x"])) == (
        "invalid_argument",
        'if-match: value must be an etag of this service, such as "3" (from a previous answer\'s etag)',
    )
    assert list((await get(wire, token.id)).scopes) == list(token.scopes)
