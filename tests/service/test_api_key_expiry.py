"""API keys that age: one created to expire authenticates until then and is
refused after on every wire (even while cached); its last use is recorded,
to the minute; the command creates expiring keys and lists them as JSON."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.api_keys import hash_api_key, new_api_key
from hostauth.store import ApiKeyStore
from tests.support.cli import run_cli
from tests.support.sensitive import remember
from tests.support.wire import RpcError, Wire

LIST = "ListHostAuthenticationTokens"


async def _expiring_key(api_keys: ApiKeyStore, seconds: float) -> tuple[str, bytes]:
    key = remember(new_api_key())
    await api_keys.create(
        hash_api_key(key),
        identity_pb2.PRINCIPAL_SERVICE_ACCOUNT,
        uuid4(),
        expires_in=timedelta(seconds=seconds),
    )
    return key, hash_api_key(key)


async def test_an_expiring_key_works_until_its_expiry_then_is_refused(
    wire: Wire, api_keys: ApiKeyStore
) -> None:
    key, _ = await _expiring_key(api_keys, 2.0)
    caller = wire.with_credential(key)
    await caller.call(LIST, pb.ListHostAuthenticationTokensRequest(), pb.ListHostAuthenticationTokensResponse)
    await asyncio.sleep(2.2)  # within the cache's time: the cached key is not served past its expiry
    with pytest.raises(RpcError) as refused:
        await caller.call(
            LIST, pb.ListHostAuthenticationTokensRequest(), pb.ListHostAuthenticationTokensResponse
        )
    assert refused.value.code == "unauthenticated"


async def test_the_last_use_is_recorded_at_most_once_a_minute(api_keys: ApiKeyStore) -> None:
    _, key_hash = await _expiring_key(api_keys, 3600)
    found = await api_keys.find_active(key_hash)
    assert found is not None
    assert found.last_used_at is None  # as it was before this use
    first = next(r for r in await api_keys.list() if r.id == found.id)
    assert first.last_used_at is not None
    assert abs((datetime.now(UTC) - first.last_used_at).total_seconds()) < 60
    await api_keys.find_active(key_hash)
    again = next(r for r in await api_keys.list() if r.id == found.id)
    assert again.last_used_at == first.last_used_at  # not written again within the minute


async def test_the_command_creates_an_expiring_key_and_lists_it_as_json(database_dsn: str) -> None:
    subject = str(uuid4())
    made = await run_cli(
        database_dsn,
        "api-keys",
        "create",
        "--principal",
        "service_account",
        "--subject",
        subject,
        "--expires-in",
        "90d",
    )
    assert made.returncode == 0, made.stderr
    remember(made.stdout.strip())
    listed = await run_cli(database_dsn, "api-keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (mine,) = [doc for doc in map(json.loads, listed.stdout.splitlines()) if doc["subject_id"] == subject]
    assert mine["state"] == "active"
    assert mine["last_used_at"] is None
    expires = datetime.fromisoformat(mine["expires_at"]) - datetime.fromisoformat(mine["created_at"])
    assert abs(expires - timedelta(days=90)) < timedelta(seconds=5)
    assert set(mine) == {
        "id",
        "principal",
        "subject_id",
        "grants",
        "description",
        "state",
        "created_at",
        "revoked_at",
        "expires_at",
        "last_used_at",
    }
    bad = await run_cli(
        database_dsn,
        "api-keys",
        "create",
        "--principal",
        "runner",
        "--subject",
        subject,
        "--expires-in",
        "soon",
    )
    assert bad.returncode == 2
    assert "a duration such as 90d" in bad.stderr
