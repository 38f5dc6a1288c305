"""RunnerInteractionService on every wire, against a real PostgreSQL: a
runner signs up with its X25519 key and reads tokens sealed to it; whoever
else asks is refused as for tokens, and the wire carries ciphertext only."""

from __future__ import annotations

import base64
import json
from uuid import UUID, uuid4

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x448
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import CryptoError

from gitpod.v1 import identity_pb2
from hostauth.core.policy import READ_SECRETS
from hostauth.core.service import HostAuthService
from hostauth.crypto import Sealer
from hostauth.runner_client import RunnerClient, RunnerKey
from hostauth.runtime.assembly import postgres_core
from hostauth.store import ApiKeyStore
from tests.support.integrations import SEALED_READ, new_runner, sealed_read, signup
from tests.support.lifecycle import create, get_value
from tests.support.requests import create_request
from tests.support.serving import make_api_key, serving
from tests.support.wire import ConnectWire, GrpcWire, Wire, outcome

P = identity_pb2


async def trail(pool: asyncpg.Pool, subject_id: str) -> list[tuple[str, str, UUID | None]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT method, outcome, token_id FROM audit_events WHERE subject_id = $1 ORDER BY id",
            UUID(subject_id),
        )
    return [(r["method"], r["outcome"], r["token_id"]) for r in rows]


def spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined, no-any-return]


async def test_sealed_read_opens_with_the_runners_key_only(
    wire: Wire, api_keys: ApiKeyStore, pool: asyncpg.Pool
) -> None:
    runner = await new_runner(wire, api_keys)
    req = create_request(runner_id=runner.id)
    token = await create(wire, req)
    got = await sealed_read(runner.wire, runner.id, req.subject.id, req.host)
    assert runner.key.open(got.value) == req.token
    assert runner.key.open(got.refresh_token) == req.refresh_token
    assert (got.token_id, got.expires_at, got.source) == (token.id, req.expires_at, req.source)
    # 48 bytes of sealed-box overhead, and nothing of the plaintext.
    assert len(got.value) == len(req.token) + 48
    assert req.token.encode() not in got.SerializeToString()
    other = await new_runner(wire, api_keys)
    for box in (got.value, got.refresh_token):
        with pytest.raises(CryptoError):
            other.key.open(box)
    # Recorded before the secret left, naming the token.
    assert (await trail(pool, runner.id))[-1] == (SEALED_READ, "ok", UUID(token.id))


async def test_no_refresh_token_is_empty(wire: Wire, api_keys: ApiKeyStore) -> None:
    runner = await new_runner(wire, api_keys)
    req = create_request(runner_id=runner.id, refresh_token="", expires_at=None)
    await create(wire, req)
    got = await sealed_read(runner.wire, runner.id, req.subject.id, req.host)
    assert runner.key.open(got.value) == req.token
    assert (got.refresh_token, got.HasField("expires_at")) == (b"", False)


async def test_a_new_key_seals_the_next_read(wire: Wire, api_keys: ApiKeyStore, pool: asyncpg.Pool) -> None:
    runner = await new_runner(wire, api_keys)
    req = create_request(runner_id=runner.id)
    await create(wire, req)
    old_key, new_key = runner.key, RunnerKey.generate()
    assert await signup(runner.wire, new_key.public_der) == runner.id
    got = await sealed_read(runner.wire, runner.id, req.subject.id, req.host)
    assert new_key.open(got.value) == req.token
    with pytest.raises(CryptoError):
        old_key.open(got.value)
    signups = [o for m, o, _ in await trail(pool, runner.id) if m == "RunnerInteractionService/Signup"]
    assert signups == ["ok", "ok"]  # the first key and its replacement


async def test_a_runner_without_a_key_is_told_to_sign_up(
    wire: Wire, api_keys: ApiKeyStore, pool: asyncpg.Pool
) -> None:
    runner = await new_runner(wire, api_keys, signed_up=False)
    req = create_request(runner_id=runner.id)
    await create(wire, req)
    code, message = await outcome(sealed_read(runner.wire, runner.id, req.subject.id, req.host))
    assert code == "failed_precondition"
    assert message == (
        f"runner {runner.id} has no public key: it signs up first"
        " (gitpod.v1.RunnerInteractionService/Signup with its X25519 public key)"
    )
    assert (await trail(pool, runner.id))[-1] == (SEALED_READ, "failed_precondition", None)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"", "public_key: value is required"),
        (b"garbage", "public_key: must be an X25519 public key (OID 1.3.101.110) in PKIX, ASN.1 DER format"),
        (
            spki(rsa.generate_private_key(65537, 2048).public_key()),
            "public_key: must be an X25519 public key (OID 1.3.101.110), not an RSA key",
        ),
        (
            spki(ec.generate_private_key(ec.SECP256R1()).public_key()),
            "public_key: must be an X25519 public key (OID 1.3.101.110),"
            " not an elliptic-curve (ECDSA/ECDH) key",
        ),
        (
            spki(ed25519.Ed25519PrivateKey.generate().public_key()),
            "public_key: must be an X25519 public key (OID 1.3.101.110), not an Ed25519 key",
        ),
        (
            spki(x448.X448PrivateKey.generate().public_key()),
            "public_key: must be an X25519 public key (OID 1.3.101.110), not an X448 key",
        ),
        (
            # The all-zero X25519 key: a low-order point nothing can be sealed to.
            bytes.fromhex("302a300506032b656e032100") + bytes(32),
            "public_key: is not a usable X25519 public key (a low-order point)",
        ),
    ],
    ids=["empty", "garbage", "rsa", "p256", "ed25519", "x448", "low-order"],
)
async def test_signup_takes_only_an_x25519_key(
    wire: Wire, api_keys: ApiKeyStore, key: bytes, message: str
) -> None:
    runner = await new_runner(wire, api_keys, signed_up=False)
    assert await outcome(signup(runner.wire, key)) == ("invalid_argument", message)


@pytest.mark.parametrize(
    "principal", [P.PRINCIPAL_USER, P.PRINCIPAL_SERVICE_ACCOUNT, P.PRINCIPAL_ENVIRONMENT]
)
async def test_only_a_runner_signs_up(wire: Wire, api_keys: ApiKeyStore, principal: int) -> None:
    caller = wire.with_credential(await make_api_key(api_keys, principal, uuid4(), READ_SECRETS))
    assert await outcome(signup(caller, RunnerKey.generate().public_der)) == (
        "permission_denied",
        "only a runner signs up, with its own credential",
    )


async def test_who_may_read_sealed(wire: Wire, api_keys: ApiKeyStore) -> None:
    runner = await new_runner(wire, api_keys)
    user_id = uuid4()
    req = create_request(runner_id=runner.id, subject=P.Subject(id=str(user_id), principal=P.PRINCIPAL_USER))
    await create(wire, req)
    args = (runner.id, req.subject.id, req.host)
    hidden = (
        "not_found",
        f"no host authentication token of principal {req.subject.id} for host 'github.com'"
        f" on runner {runner.id}",
    )
    other_runner = await new_runner(wire, api_keys)
    assert await outcome(sealed_read(other_runner.wire, *args)) == hidden
    user = wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, user_id))
    assert await outcome(sealed_read(user, *args)) == (
        "permission_denied",
        "RunnerInteractionService/GetHostAuthenticationTokenValue is not allowed for this caller",
    )
    stranger = wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, uuid4()))
    assert await outcome(sealed_read(stranger, *args)) == hidden
    no_grant = wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_SERVICE_ACCOUNT, uuid4()))
    assert await outcome(sealed_read(no_grant, *args)) == (
        "permission_denied",
        "RunnerInteractionService/GetHostAuthenticationTokenValue is not allowed for this caller",
    )
    # A service account with secrets:read gets it, sealed to the runner all the same.
    got = await sealed_read(wire, *args)
    assert runner.key.open(got.value) == req.token
    # Missing answers as hidden does.
    missing = (runner.id, str(uuid4()), req.host)
    code, _ = await outcome(sealed_read(runner.wire, *missing))
    assert code == "not_found"


async def test_a_runner_reads_only_sealed(wire: Wire, api_keys: ApiKeyStore) -> None:
    runner = await new_runner(wire, api_keys)
    token = await create(wire, create_request(runner_id=runner.id))
    assert await outcome(get_value(runner.wire, token.id)) == (
        "permission_denied",
        "a runner reads its tokens sealed to its key: call"
        " gitpod.v1.RunnerInteractionService/GetHostAuthenticationTokenValue",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"runner_id": "", "principal_id": str(uuid4()), "host": "github.com"},
            "runner_id: value is required",
        ),
        (
            {"runner_id": str(uuid4()), "principal_id": "x", "host": "github.com"},
            "principal_id: value must be a valid UUID",
        ),
        (
            {"runner_id": str(uuid4()), "principal_id": str(uuid4()), "host": ""},
            "host: value length must be at least 1 characters",
        ),
    ],
)
async def test_sealed_read_rules(wire: Wire, fields: dict[str, str], message: str) -> None:
    assert await outcome(sealed_read(wire, **fields)) == ("invalid_argument", message)


async def test_connect_json_carries_ciphertext_only(wires: dict[str, Wire], api_keys: ApiKeyStore) -> None:
    """The raw bytes on the wire, as Gitpod's SDK sends and reads them."""
    json_wire = wires["connect-json"]
    assert isinstance(json_wire, ConnectWire)
    runner = await new_runner(json_wire, api_keys)
    assert isinstance(runner.wire, ConnectWire)
    req = create_request(runner_id=runner.id)
    await create(json_wire, req)
    body = {"runnerId": runner.id, "principalId": req.subject.id, "host": req.host}
    response = await runner.wire.post(
        "RunnerInteractionService/GetHostAuthenticationTokenValue",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    for value in (req.token, req.refresh_token):
        assert value.encode() not in response.content
    doc = response.json()
    assert set(doc) == {"tokenId", "value", "refreshToken", "expiresAt", "source"}
    assert doc["source"] == "HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH"
    assert runner.key.open(base64.b64decode(doc["value"])) == req.token
    # Gitpod's runner sends environmentClasses with its key: accepted, not kept.
    signup_body = {
        "publicKey": base64.b64encode(runner.key.public_der).decode(),
        "environmentClasses": [
            {"id": "small", "displayName": "Small", "configuration": [{"key": "cpu", "value": "2"}]}
        ],
    }
    answer = await runner.wire.post(
        "RunnerInteractionService/Signup",
        json.dumps(signup_body).encode(),
        {"content-type": "application/json"},
    )
    assert (answer.status_code, answer.json()) == (200, {"runnerId": runner.id})


async def test_the_python_client(running: object, wire: Wire, api_keys: ApiKeyStore) -> None:
    runner_id = uuid4()
    credential = await make_api_key(api_keys, P.PRINCIPAL_RUNNER, runner_id)
    req = create_request(runner_id=str(runner_id))
    await create(wire, req)
    key = RunnerKey.generate()
    async with RunnerClient(running.http_url, credential) as client:  # type: ignore[attr-defined]
        assert await client.signup(key) == runner_id
        value = await client.token(runner_id, UUID(req.subject.id), req.host, key)
    assert (value.token, value.refresh_token, value.source) == (req.token, req.refresh_token, req.source)
    assert value.expires_at is not None
    assert value.expires_at.timestamp() == pytest.approx(req.expires_at.ToSeconds() + 0.123456)
    assert req.token not in repr(value)
    assert credential not in repr(client)


async def test_plaintext_reads_can_be_turned_off(
    pool: asyncpg.Pool, sealer: Sealer, api_keys: ApiKeyStore, database_dsn: str, admin_key: str
) -> None:
    core: HostAuthService = await postgres_core(pool, sealer, plaintext_reads=False)
    async with serving(core, api_keys, database_dsn) as running:
        clients: list[Wire] = [
            GrpcWire(str(running.grpc), admin_key),
            ConnectWire(running.http_url, "json", credential=admin_key),
            ConnectWire(running.http_url, "proto", credential=admin_key),
        ]
        for wire in clients:
            runner = await new_runner(wire, api_keys)
            req = create_request(runner_id=runner.id)
            token = await create(wire, req)
            code, message = await outcome(get_value(wire, token.id))
            assert code == "unimplemented", wire.name
            assert "HOSTAUTH_PLAINTEXT_READS=off" in message
            got = await sealed_read(runner.wire, runner.id, req.subject.id, req.host)
            assert runner.key.open(got.value) == req.token
            await wire.close()  # type: ignore[attr-defined]
