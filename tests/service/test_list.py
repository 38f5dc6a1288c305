"""ListHostAuthenticationTokens: filters and keyset pagination, on every wire."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode
from uuid import uuid4

import pytest

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.caller import Call
from hostauth.core.service import HostAuthService
from tests.support.lifecycle import list_all, list_page
from tests.support.requests import create_request
from tests.support.wire import ConnectWire, RpcError, Wire, connect_error


async def make_tokens(core: HostAuthService, call: Call, runner_id: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        answer = await core.create_host_authentication_token(create_request(runner_id=runner_id), call)
        ids.append(answer.token.id)
    return ids


@pytest.fixture(scope="session")
async def sixty(core: HostAuthService, admin_call: Call) -> tuple[str, list[str]]:
    """60 tokens of one runner, and their ids in List order."""
    runner_id = str(uuid4())
    created = await make_tokens(core, admin_call, runner_id, 60)
    page = await core.list_host_authentication_tokens(
        pb.ListHostAuthenticationTokensRequest(
            pagination={"page_size": 100},  # type: ignore[arg-type]
            filter=pb.ListHostAuthenticationTokensRequest.Filter(runner_id=runner_id),
        ),
        admin_call,
    )
    order = [t.id for t in page.tokens]
    assert sorted(order) == sorted(created)
    assert page.pagination.next_token == ""
    return runner_id, order


@pytest.mark.parametrize("page_size", [1, 7, 25, 100])
async def test_walk_returns_each_token_once_in_a_stable_order(
    read_wire: Wire, sixty: tuple[str, list[str]], page_size: int
) -> None:
    runner_id, order = sixty
    assert await list_all(read_wire, page_size=page_size, runner_id=runner_id) == order


async def test_default_page_size_is_25(read_wire: Wire, sixty: tuple[str, list[str]]) -> None:
    runner_id, order = sixty
    page = await list_page(read_wire, runner_id=runner_id)
    assert [t.id for t in page.tokens] == order[:25]
    assert page.pagination.next_token


async def test_walk_while_others_insert_and_delete(
    read_wire: Wire, core: HostAuthService, admin_call: Call
) -> None:
    runner_id = str(uuid4())
    stable = await make_tokens(core, admin_call, runner_id, 40)
    volatile = await make_tokens(core, admin_call, runner_id, 20)
    walking = asyncio.Event()
    walking.set()

    async def churn() -> int:
        changes = 0
        while walking.is_set() and changes < 200:
            await core.create_host_authentication_token(create_request(runner_id=runner_id), admin_call)
            if volatile:
                await core.delete_host_authentication_token(
                    pb.DeleteHostAuthenticationTokenRequest(id=volatile.pop()), admin_call
                )
            changes += 1
            await asyncio.sleep(0)
        return changes

    churner = asyncio.create_task(churn())
    try:
        seen = await list_all(read_wire, page_size=3, runner_id=runner_id)
    finally:
        walking.clear()
        changes = await churner
    assert changes > 0  # the walk really ran alongside writes
    assert len(seen) == len(set(seen)), "a token came twice"
    assert set(stable) <= set(seen), "a token that existed for the whole walk was skipped"


async def test_json_client_pages_with_query_parameters(
    wires: dict[str, Wire], sixty: tuple[str, list[str]]
) -> None:
    """The older SDK: the body stays the same, cursor and size go in the URL."""
    wire = wires["connect-json"]
    assert isinstance(wire, ConnectWire)
    runner_id, order = sixty
    # The body asks for 100 a page: the query's pageSize overrides it.
    body = json.dumps({"filter": {"runnerId": runner_id}, "pagination": {"pageSize": 100}}).encode()
    seen: list[str] = []
    token = ""
    while True:
        query = urlencode({"token": token, "pageSize": 7} if token else {"pageSize": 7})
        response = await wire.post(
            f"ListHostAuthenticationTokens?{query}", body, {"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        doc = response.json()
        assert len(doc.get("tokens", [])) <= 7
        seen += [t["id"] for t in doc.get("tokens", [])]
        token = doc.get("pagination", {}).get("nextToken", "")
        if not token:
            break
    assert seen == order


@pytest.mark.parametrize("page_size", ["abc", "1.5", "99999999999"])
async def test_json_query_page_size_must_be_an_integer(wires: dict[str, Wire], page_size: str) -> None:
    wire = wires["connect-json"]
    assert isinstance(wire, ConnectWire)
    response = await wire.post(
        f"ListHostAuthenticationTokens?pageSize={page_size}", b"{}", {"content-type": "application/json"}
    )
    error = connect_error(response)
    assert (error.code, error.message) == (
        "invalid_argument",
        "pagination.page_size: value must be a 32-bit integer",
    )


def tampered(token: str) -> list[str]:
    middle = len(token) // 2
    flipped = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    return [flipped, token[:-3], token + "AAAA", "not-a-cursor", "@@@"]


async def test_forged_cursors_are_invalid(read_wire: Wire, sixty: tuple[str, list[str]]) -> None:
    runner_id, _ = sixty
    token = (await list_page(read_wire, page_size=7, runner_id=runner_id)).pagination.next_token
    for forged in tampered(token):
        with pytest.raises(RpcError) as caught:
            await list_page(read_wire, page_size=7, token=forged, runner_id=runner_id)
        assert (caught.value.code, caught.value.message) == (
            "invalid_argument",
            "pagination.token: value is not a valid page token",
        ), forged


async def test_cursor_for_other_filters_is_invalid(read_wire: Wire, sixty: tuple[str, list[str]]) -> None:
    runner_id, _ = sixty
    token = (await list_page(read_wire, page_size=7, runner_id=runner_id)).pagination.next_token
    for filters in ({}, {"runner_id": str(uuid4())}, {"runner_id": runner_id, "subject_id": str(uuid4())}):
        with pytest.raises(RpcError) as caught:
            await list_page(read_wire, page_size=7, token=token, **filters)
        assert (caught.value.code, caught.value.message) == (
            "invalid_argument",
            "pagination.token: the page token was made for a List with other filters",
        )


@pytest.mark.parametrize("page_size", [101, -1, 1000])
async def test_page_size_out_of_range(read_wire: Wire, page_size: int) -> None:
    with pytest.raises(RpcError) as caught:
        await list_page(read_wire, page_size=page_size)
    assert caught.value.code == "invalid_argument"
    assert caught.value.message == (
        "pagination.page_size: value must be greater than or equal to 0 and less than or equal to 100"
    )


async def test_filters_combine(read_wire: Wire, core: HostAuthService, admin_call: Call) -> None:
    subject_a, subject_b = str(uuid4()), str(uuid4())
    runner_1, runner_2 = str(uuid4()), str(uuid4())

    async def make(runner_id: str, subject_id: str) -> str:
        subject = identity_pb2.Subject(id=subject_id, principal=identity_pb2.PRINCIPAL_USER)
        answer = await core.create_host_authentication_token(
            create_request(runner_id=runner_id, subject=subject), admin_call
        )
        return answer.token.id

    a1, a2, b1 = (
        await make(runner_1, subject_a),
        await make(runner_2, subject_a),
        await make(runner_1, subject_b),
    )

    async def ids(**filters: str) -> set[str]:
        return set(await list_all(read_wire, page_size=2, **filters))

    assert await ids(subject_id=subject_a) == {a1, a2}
    assert await ids(user_id=subject_a) == {a1, a2}  # the deprecated name of subject_id
    assert await ids(subject_id=subject_a, user_id=subject_a) == {a1, a2}
    assert await ids(runner_id=runner_1) == {a1, b1}
    assert await ids(runner_id=runner_1, subject_id=subject_a) == {a1}
    assert await ids(subject_id=subject_a, user_id=subject_b) == set()  # no token has two subjects


@pytest.mark.parametrize("name", ["runner_id", "subject_id", "user_id"])
async def test_filter_ids_must_be_uuids(read_wire: Wire, name: str) -> None:
    for value in ("", "abc", f"{uuid4()}\n"):
        with pytest.raises(RpcError) as caught:
            await list_page(read_wire, **{name: value})
        assert (caught.value.code, caught.value.message) == (
            "invalid_argument",
            f"filter.{name}: value must be a valid UUID",
        )
