"""Get, Update, Delete and GetHostAuthenticationTokenValue on every wire."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID, uuid4

import asyncpg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gitpod.v1 import runner_configuration_pb2 as pb
from tests.support.lifecycle import create, delete, get, get_value, list_page, update
from tests.support.requests import EXPIRES, create_request, secret
from tests.support.wire import RpcError, Wire

LATER = Timestamp(seconds=1893456000)  # 2030-01-01T00:00:00Z
PAST = Timestamp(seconds=946684800)  # 2000-01-01T00:00:00Z


async def expect_error(code: str, call: object) -> str:
    with pytest.raises(RpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code == code, caught.value
    return caught.value.message


async def test_round_trip(read_wire: Wire) -> None:
    wire = read_wire
    req = create_request()
    created = await create(wire, req)

    assert await get(wire, created.id) == created
    listed = await list_page(wire, runner_id=req.runner_id)
    assert list(listed.tokens) == [created]
    assert listed.pagination.next_token == ""

    new_token, new_refresh = secret("gho_rotated_"), secret("ghr_rotated_")
    await update(
        wire, created.id, token=new_token, refresh_token=new_refresh, expires_at=LATER, scopes=["read"]
    )
    updated = await get(wire, created.id)
    assert updated.expires_at == LATER
    assert list(updated.scopes) == ["read"]
    assert (updated.host, updated.runner_id, updated.subject) == (
        created.host,
        created.runner_id,
        created.subject,
    )

    value = await get_value(wire, created.id)
    assert (value.id, value.token, value.refresh_token) == (created.id, new_token, new_refresh)
    assert value.expires_at == LATER

    await delete(wire, created.id)
    message = await expect_error("not_found", get(wire, created.id))
    assert message == f"host authentication token {created.id} not found"
    assert list((await list_page(wire, runner_id=req.runner_id)).tokens) == []
    for call in (delete(wire, created.id), get_value(wire, created.id), update(wire, created.id, token="x")):
        assert await expect_error("not_found", call) == message


async def test_get_value_returns_exactly_what_create_stored(wire: Wire) -> None:
    req = create_request()
    created = await create(wire, req)
    value = await get_value(wire, created.id)
    assert (value.token, value.refresh_token, value.expires_at) == (req.token, req.refresh_token, EXPIRES)


async def test_get_value_of_an_expired_token_still_answers(wire: Wire) -> None:
    req = create_request(expires_at=PAST)
    value = await get_value(wire, (await create(wire, req)).id)
    assert (value.token, value.refresh_token, value.expires_at) == (req.token, req.refresh_token, PAST)


async def test_get_value_without_refresh_token_or_expiry(wire: Wire) -> None:
    req = create_request(refresh_token="", expires_at=None)
    value = await get_value(wire, (await create(wire, req)).id)
    assert (value.token, value.refresh_token, value.HasField("expires_at")) == (req.token, "", False)


async def test_unknown_id_is_not_found_everywhere(read_wire: Wire) -> None:
    missing = str(uuid4())
    expected = f"host authentication token {missing} not found"
    assert await expect_error("not_found", get(read_wire, missing)) == expected
    for call in (
        delete(read_wire, missing),
        get_value(read_wire, missing),
        update(read_wire, missing, token="t"),
    ):
        assert await expect_error("not_found", call) == expected


@pytest.mark.parametrize(
    ("token_id", "violation"),
    [
        ("", "id: value is required"),
        ("abc", "id: value must be a valid UUID"),
        ("1" * 36, "id: value must be a valid UUID"),
        ("7f0c1a52-4a0e-4f5c-9a57-1b2c3d4e5f60\n", "id: value must be a valid UUID"),
    ],
)
async def test_malformed_ids_are_invalid(read_wire: Wire, token_id: str, violation: str) -> None:
    for call in (
        get(read_wire, token_id),
        delete(read_wire, token_id),
        get_value(read_wire, token_id),
        update(read_wire, token_id, token="t"),
    ):
        assert await expect_error("invalid_argument", call) == violation


async def test_ids_are_case_insensitive(wire: Wire) -> None:
    created = await create(wire)
    assert (await get(wire, created.id.upper())).id == created.id


# Each optional field of Update alone: (fields sent, what Get / GetValue must then show)
async def test_update_each_field_alone(wire: Wire) -> None:
    req = create_request()
    created = await create(wire, req)
    token_id = created.id

    async def state() -> tuple[pb.HostAuthenticationToken, pb.GetHostAuthenticationTokenValueResponse]:
        return await get(wire, token_id), await get_value(wire, token_id)

    before, value_before = await state()

    new_token = secret("gho_only_")
    await update(wire, token_id, token=new_token)
    after, value = await state()
    assert after == before
    assert (value.token, value.refresh_token) == (new_token, req.refresh_token)

    await update(wire, token_id, expires_at=LATER)
    after, value = await state()
    assert after.expires_at == LATER
    after.expires_at.CopyFrom(before.expires_at)
    assert after == before
    assert (value.token, value.refresh_token) == (new_token, req.refresh_token)

    new_refresh = secret("ghr_only_")
    await update(wire, token_id, refresh_token=new_refresh)
    _, value = await state()
    assert (value.token, value.refresh_token) == (new_token, new_refresh)

    await update(wire, token_id, refresh_token="")  # present and empty clears it
    _, value = await state()
    assert (value.token, value.refresh_token) == (new_token, "")

    await update(wire, token_id, scopes=["admin:org"])
    after, _ = await state()
    assert list(after.scopes) == ["admin:org"]

    await update(wire, token_id, scopes=[])  # an empty list leaves the scopes
    after, value = await state()
    assert list(after.scopes) == ["admin:org"]
    assert (value.token, value.refresh_token, value.expires_at) == (new_token, "", LATER)
    assert value_before.token == req.token


async def test_update_with_no_fields_changes_nothing(wire: Wire) -> None:
    req = create_request()
    created = await create(wire, req)
    await update(wire, created.id)
    assert await get(wire, created.id) == created
    assert (await get_value(wire, created.id)).token == req.token


async def test_update_rules(wire: Wire) -> None:
    created = await create(wire)
    message = await expect_error("invalid_argument", update(wire, created.id, token=""))
    assert message == "token: value length must be at least 1 characters"
    message = await expect_error("invalid_argument", update(wire, created.id, scopes=["a", "b\x00"]))
    assert message == "scopes[1]: value must not contain NUL characters"


async def test_update_has_no_scope_limit(wire: Wire) -> None:
    created = await create(wire)
    scopes = [f"s{i}" for i in range(300)]
    await update(wire, created.id, scopes=scopes)
    assert list((await get(wire, created.id)).scopes) == scopes


async def test_update_seals_under_a_fresh_data_key(wire: Wire, pool: asyncpg.Pool) -> None:
    req = create_request()
    created = await create(wire, req)

    async def ciphertext() -> bytes:
        async with pool.acquire() as conn:
            value: bytes = await conn.fetchval(
                "SELECT token_ciphertext FROM host_authentication_tokens WHERE id = $1", UUID(created.id)
            )
        return value

    first = await ciphertext()
    await update(wire, created.id, token=req.token)  # the same secret again
    second = await ciphertext()
    header = 2 + first[1] + 2  # version, id length, id, wrapped length
    assert first[header : header + 60] != second[header : header + 60]  # another wrapped data key
    assert req.token.encode() not in second


async def test_concurrent_updates_of_different_fields_both_survive(wire: Wire) -> None:
    created = await create(wire)
    for round_ in range(10):
        token, scopes = secret(f"gho_{round_}_"), [f"round-{round_}"]
        await asyncio.gather(
            update(wire, created.id, token=token),
            update(wire, created.id, scopes=scopes),
            update(wire, created.id, expires_at=Timestamp(seconds=LATER.seconds + round_)),
        )
        got, value = await get(wire, created.id), await get_value(wire, created.id)
        assert value.token == token
        assert list(got.scopes) == scopes
        assert got.expires_at.seconds == LATER.seconds + round_


async def test_delete_removes_the_row_and_its_ciphertexts(wire: Wire, pool: asyncpg.Pool) -> None:
    created = await create(wire)
    await delete(wire, created.id)
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM host_authentication_tokens WHERE id = $1", UUID(created.id)
        )
    assert count == 0


async def test_create_after_delete_makes_a_new_token(wire: Wire) -> None:
    req = create_request()
    first = await create(wire, req)
    await delete(wire, first.id)
    second = await create(wire, req)
    assert second.id != first.id
    assert (await get_value(wire, second.id)).token == req.token


@pytest.mark.parametrize("column", ["token_ciphertext", "refresh_token_ciphertext"])
async def test_get_value_of_altered_ciphertext_is_data_loss(
    wire: Wire, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, column: str
) -> None:
    req = create_request()
    created = await create(wire, req)
    async with pool.acquire() as conn:
        # Flip one bit of the sealed secret's last byte (its tag).
        await conn.execute(
            f"UPDATE host_authentication_tokens SET {column} = "
            f"set_byte({column}, length({column}) - 1, get_byte({column}, length({column}) - 1) # 1) "
            "WHERE id = $1",
            UUID(created.id),
        )
    with caplog.at_level(logging.ERROR):
        message = await expect_error("data_loss", get_value(wire, created.id))
    assert message == f"the stored secrets of host authentication token {created.id} cannot be decrypted"
    logged = caplog.text
    assert created.id in logged
    for value in (req.token, req.refresh_token):
        assert value not in message
        assert value not in logged
