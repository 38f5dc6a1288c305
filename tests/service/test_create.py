"""CreateHostAuthenticationToken on every wire, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import asyncpg
import pytest
from google.protobuf import json_format

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.crypto import DecryptionError, Sealer, SecretContext
from tests.support.requests import EXPIRES, create_request, secret
from tests.support.wire import Wire

CREATE = "CreateHostAuthenticationToken"
Response = pb.CreateHostAuthenticationTokenResponse


async def create(wire: Wire, req: pb.CreateHostAuthenticationTokenRequest) -> pb.HostAuthenticationToken:
    return (await wire.call(CREATE, req, Response)).token


async def test_returns_every_metadata_field_and_no_secret(wire: Wire) -> None:
    req = create_request()
    token = await create(wire, req)

    assert UUID(token.id)
    assert token.runner_id == req.runner_id
    assert token.host == "github.com"
    assert token.source == pb.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
    assert token.expires_at == EXPIRES
    assert token.integration_id == req.integration_id
    assert list(token.scopes) == ["repo", "read:org"]
    assert token.subject == req.subject
    assert token.user_id == req.subject.id  # filled because the principal is a user
    for form in (token.SerializeToString(), json_format.MessageToJson(token).encode()):
        assert req.token.encode() not in form
        assert req.refresh_token.encode() not in form


async def test_deprecated_user_id_becomes_a_user_subject(wire: Wire) -> None:
    user = str(uuid4())
    token = await create(wire, create_request(subject=None, user_id=user))
    assert token.subject == identity_pb2.Subject(id=user, principal=identity_pb2.PRINCIPAL_USER)
    assert token.user_id == user


async def test_user_id_only_for_user_principals(wire: Wire) -> None:
    subject = identity_pb2.Subject(id=str(uuid4()), principal=identity_pb2.PRINCIPAL_SERVICE_ACCOUNT)
    token = await create(wire, create_request(subject=subject))
    assert token.subject == subject
    assert token.user_id == ""


async def test_user_id_equal_to_subject_id_is_accepted(wire: Wire) -> None:
    req = create_request()
    req.user_id = req.subject.id
    token = await create(wire, req)
    assert token.subject == req.subject


async def test_minimal_request(wire: Wire) -> None:
    req = pb.CreateHostAuthenticationTokenRequest(runner_id=str(uuid4()), host="gitlab.com", token="t")
    token = await create(wire, req)
    assert token.runner_id == req.runner_id
    assert not token.HasField("subject")
    assert not token.HasField("expires_at")
    assert token.integration_id == ""
    assert list(token.scopes) == []


async def test_row_bytes_hold_no_secret(wire: Wire, pool: asyncpg.Pool) -> None:
    req = create_request()
    token = await create(wire, req)
    async with pool.acquire() as conn:
        # Every column of the row, in PostgreSQL's own text and binary forms.
        text = await conn.fetchval(
            "SELECT t::text FROM host_authentication_tokens t WHERE id = $1", UUID(token.id)
        )
        raw = await conn.fetchval(
            "SELECT token_ciphertext || coalesce(refresh_token_ciphertext, '') "
            "FROM host_authentication_tokens WHERE id = $1",
            UUID(token.id),
        )
    assert req.host in text  # the query did find the row
    for value in (req.token, req.refresh_token):
        assert value not in text
        assert value.encode() not in raw
        assert value.encode().hex() not in text


async def _ciphertexts(pool: asyncpg.Pool, token_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT token_ciphertext, refresh_token_ciphertext FROM host_authentication_tokens WHERE id = $1",
            UUID(token_id),
        )
    assert row is not None
    return row


async def test_ciphertext_moved_to_another_row_or_field_does_not_open(
    wire: Wire, pool: asyncpg.Pool, sealer: Sealer
) -> None:
    first = create_request()
    second = create_request()
    a = await create(wire, first)
    b = await create(wire, second)
    # In place, each ciphertext opens to its own secret.
    row_a = await _ciphertexts(pool, a.id)
    assert await sealer.open(row_a["token_ciphertext"], SecretContext(a.id, "token")) == first.token.encode()
    assert await sealer.open(row_a["refresh_token_ciphertext"], SecretContext(a.id, "refresh_token")) == (
        first.refresh_token.encode()
    )

    async with pool.acquire() as conn:
        # a's token into b's row, and b's token into b's refresh_token.
        await conn.execute(
            "UPDATE host_authentication_tokens SET token_ciphertext = $1, refresh_token_ciphertext = "
            "token_ciphertext WHERE id = $2",
            row_a["token_ciphertext"],
            UUID(b.id),
        )
    row_b = await _ciphertexts(pool, b.id)
    with pytest.raises(DecryptionError) as moved_row:
        await sealer.open(row_b["token_ciphertext"], SecretContext(b.id, "token"))
    with pytest.raises(DecryptionError) as moved_field:
        await sealer.open(row_b["refresh_token_ciphertext"], SecretContext(b.id, "refresh_token"))
    for err in (moved_row.value, moved_field.value):
        assert b.id in str(err)
        assert "copied from another row or field" in str(err)
        for value in (first.token, second.token, first.refresh_token, second.refresh_token):
            assert value not in str(err)
            assert value not in repr(err)


async def test_second_create_of_a_triple_keeps_the_id_and_replaces_the_secret(
    wire: Wire, pool: asyncpg.Pool, sealer: Sealer
) -> None:
    first = create_request()
    again = create_request(
        runner_id=first.runner_id,
        subject=first.subject,
        host=first.host,
        token=secret("gho_new_"),
        refresh_token="",
        scopes=["repo"],
        source=pb.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
    )
    a = await create(wire, first)
    b = await create(wire, again)
    assert b.id == a.id
    assert list(b.scopes) == ["repo"]
    assert b.source == pb.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM host_authentication_tokens WHERE runner_id = $1", UUID(first.runner_id)
        )
    assert count == 1
    row = await _ciphertexts(pool, a.id)
    assert await sealer.open(row["token_ciphertext"], SecretContext(a.id, "token")) == again.token.encode()
    assert row["refresh_token_ciphertext"] is None


async def test_another_host_or_subject_is_another_token(wire: Wire) -> None:
    first = create_request()
    other_host = create_request(runner_id=first.runner_id, subject=first.subject, host="gitlab.com")
    other_subject = create_request(runner_id=first.runner_id, host=first.host)
    ids = {(await create(wire, r)).id for r in (first, other_host, other_subject)}
    assert len(ids) == 3


async def test_concurrent_creates_of_one_triple_end_with_one_row(wire: Wire, pool: asyncpg.Pool) -> None:
    base = create_request()
    reqs = [create_request(runner_id=base.runner_id, subject=base.subject, host=base.host) for _ in range(8)]
    tokens = await asyncio.gather(*(create(wire, r) for r in reqs))
    assert len({t.id for t in tokens}) == 1
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM host_authentication_tokens WHERE runner_id = $1", UUID(base.runner_id)
        )
    assert count == 1


async def test_triple_without_subject_is_unique_too(wire: Wire) -> None:
    runner = str(uuid4())
    a = await create(wire, create_request(runner_id=runner, subject=None))
    b = await create(wire, create_request(runner_id=runner, subject=None))
    assert a.id == b.id
