"""The AWS KMS key provider against a KMS emulator (moto, in server mode)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from prometheus_client import REGISTRY

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.caller import Call
from hostauth.crypto import DecryptionError, KeyProviders, LocalKeyring, Sealer, SecretContext, key_id_of
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.crypto.kms import KmsKeyProvider
from hostauth.keys.registry import Heartbeat, register_and_check
from hostauth.keys.rotation import retire, rewrap, rotate
from hostauth.runtime.assembly import postgres_core
from hostauth.store import connect_pool
from hostauth.store.encryption_keys import KeyStore
from tests.support.db import create_database
from tests.support.processes import free_port
from tests.support.requests import create_request

SECRET = b"gho_kms_0123456789abcdef"
CTX = SecretContext("6f1c2f64-1b7e-4a53-9d2a-0d7c1f0b9a11", "token")


@pytest.fixture(scope="module")
def kms_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def kms(kms_endpoint: str) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=kms_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",  # the emulator's, not a secret
    )


@pytest.fixture
def kms_key(kms: Any) -> str:
    key_id: str = kms.create_key(Description="hostauth test")["KeyMetadata"]["KeyId"]
    return key_id


def count_calls(kms: Any, operation: str) -> list[int]:
    calls = [0]

    def seen(**_: Any) -> None:
        calls[0] += 1

    kms.meta.events.register(f"before-call.kms.{operation}", seen)
    return calls


async def test_round_trip(kms: Any, kms_key: str) -> None:
    provider = KmsKeyProvider(kms_key, kms)
    sealer = Sealer(KeyProviders([provider], provider.key_id))
    blob = await sealer.seal(SECRET, CTX)
    assert key_id_of(blob) == "kms:" + kms_key
    assert SECRET not in blob
    assert await sealer.open(blob, CTX) == SECRET


async def test_wrong_encryption_context_is_refused(kms: Any, kms_key: str) -> None:
    provider = KmsKeyProvider(kms_key, kms, cache_size=0)
    sealer = Sealer(KeyProviders([provider], provider.key_id))
    blob = await sealer.seal(SECRET, CTX)
    refused = _metric("hostauth_kms_calls_total", operation="decrypt", outcome="refused")
    with pytest.raises(DecryptionError, match="KMS refused the data key"):
        await sealer.open(blob, SecretContext(CTX.token_id, "refresh_token"))
    assert _metric("hostauth_kms_calls_total", operation="decrypt", outcome="refused") - refused == 1
    # And KMS itself refuses the wrapped key outside its context.
    wrapped_len = int.from_bytes(blob[2 + blob[1] : 4 + blob[1]], "big")
    wrapped = blob[4 + blob[1] : 4 + blob[1] + wrapped_len]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=wrapped, EncryptionContext={"hostauth:token_id": "other"})


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_cache_hits_do_not_call_kms(kms: Any, kms_key: str) -> None:
    provider = KmsKeyProvider(kms_key, kms, status_ttl_s=60)
    sealer = Sealer(KeyProviders([provider], provider.key_id))
    decrypts = count_calls(kms, "Decrypt")
    hits, misses = (
        _metric("hostauth_data_key_cache_total", result="hit"),
        _metric("hostauth_data_key_cache_total", result="miss"),
    )
    ok = _metric("hostauth_kms_calls_total", operation="decrypt", outcome="ok")
    blob = await sealer.seal(SECRET, CTX)
    for _ in range(5):
        assert await sealer.open(blob, CTX) == SECRET
    assert decrypts[0] == 1
    # The metrics say the same: one decrypt at KMS, one miss, four hits.
    assert _metric("hostauth_kms_calls_total", operation="decrypt", outcome="ok") - ok == 1
    assert _metric("hostauth_data_key_cache_total", result="miss") - misses == 1
    assert _metric("hostauth_data_key_cache_total", result="hit") - hits == 4
    sealer.forget(CTX.token_id)  # the token was deleted
    assert provider.cached == 0
    assert await sealer.open(blob, CTX) == SECRET
    assert decrypts[0] == 2
    provider.flush(provider.key_id)  # the key was retired
    assert provider.cached == 0


async def test_cache_is_bounded_in_size_and_age(kms: Any, kms_key: str) -> None:
    small = KmsKeyProvider(kms_key, kms, cache_size=2)
    sealer = Sealer(KeyProviders([small], small.key_id))
    contexts = [SecretContext(f"token-{i}", "token") for i in range(3)]
    for ctx in contexts:
        await sealer.open(await sealer.seal(SECRET, ctx), ctx)
    assert small.cached == 2
    ageless = KmsKeyProvider(kms_key, kms, cache_ttl_s=0)
    sealer = Sealer(KeyProviders([ageless], ageless.key_id))
    decrypts = count_calls(kms, "Decrypt")
    blob = await sealer.seal(SECRET, CTX)
    await sealer.open(blob, CTX)
    await sealer.open(blob, CTX)
    assert decrypts[0] == 2


async def test_cached_key_is_not_used_while_kms_says_disabled(kms: Any, kms_key: str) -> None:
    provider = KmsKeyProvider(kms_key, kms, status_ttl_s=0)
    sealer = Sealer(KeyProviders([provider], provider.key_id))
    blob = await sealer.seal(SECRET, CTX)
    assert await sealer.open(blob, CTX) == SECRET  # now cached
    kms.disable_key(KeyId=kms_key)
    with pytest.raises(DecryptionError, match="disabled"):
        await sealer.open(blob, CTX)
    assert provider.cached == 0
    kms.enable_key(KeyId=kms_key)
    assert await sealer.open(blob, CTX) == SECRET


async def test_rotate_from_a_local_key_to_kms_and_rewrap(
    kms: Any, kms_key: str, admin_dsn: str, admin_call: Call
) -> None:
    local = LocalKeyring.from_json(generate_keyring_json("local-1"), source="test")
    provider = KmsKeyProvider(kms_key, kms)
    keys = KeyProviders([local, provider], "local-1")
    pool = await connect_pool(await create_database(admin_dsn))
    try:
        store = KeyStore(pool)
        sealer = Sealer(keys, await register_and_check(keys, store))
        core = await postgres_core(pool, sealer)
        req = create_request()
        token_id = (await core.create_host_authentication_token(req, admin_call)).token.id
        await rotate(keys, store, provider.key_id, 1.0)
        sealer.set_primary(provider.key_id)
        assert await rewrap(sealer, store, out=io.StringIO()) == 1
        value = await core.get_host_authentication_token_value(
            pb.GetHostAuthenticationTokenValueRequest(id=token_id), admin_call
        )
        assert (value.token, value.refresh_token) == (req.token, req.refresh_token)
        assert await store.keys_in_use() == {provider.key_id: 2}
    finally:
        await pool.close()


async def test_retiring_the_key_flushes_its_cache_on_every_replica(
    kms: Any, kms_key: str, admin_dsn: str
) -> None:
    local = LocalKeyring.from_json(generate_keyring_json("local-1"), source="test")
    provider = KmsKeyProvider(kms_key, kms, status_ttl_s=60)
    keys = KeyProviders([local, provider], provider.key_id)
    pool = await connect_pool(await create_database(admin_dsn))
    try:
        store = KeyStore(pool)
        sealer = Sealer(keys, await register_and_check(keys, store))
        assert sealer.primary_id == provider.key_id
        await sealer.open(await sealer.seal(SECRET, CTX), CTX)
        assert provider.cached >= 1  # (the start-up key check is cached too)
        await rotate(keys, store, "local-1", 1.0)
        await retire(store, provider.key_id)  # no stored row uses it
        await Heartbeat(store, sealer, 1.0).beat()
        assert sealer.primary_id == "local-1"  # followed the database
        assert provider.cached == 0
    finally:
        await pool.close()
