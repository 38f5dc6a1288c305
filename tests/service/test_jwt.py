"""JWT authentication: what is accepted and what is refused, on gRPC and Connect JSON."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import grpc
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.jwt_verifier import JwtSettings, JwtVerifier
from hostauth.errors import Unauthenticated
from tests.support.jwts import AUDIENCE, ISSUER, Issuer
from tests.support.lifecycle import create, get_value, list_page
from tests.support.sensitive import remember
from tests.support.wire import ConnectWire, GrpcWire, RpcError, Wire, connect_error

AUTH_WIRES = ("grpc", "connect-json")


@pytest.fixture(params=AUTH_WIRES)
def auth_wire(request: pytest.FixtureRequest, wires: dict[str, Wire]) -> Wire:
    return wires[request.param]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, object], claims: dict[str, object], sign: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b64(hmac.new(sign, signing_input.encode(), hashlib.sha256).digest()) if sign else ""
    return remember(f"{signing_input}.{signature}")


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "https://issuer.test",
        "aud": "hostauth",
        "sub": str(uuid4()),
        "principal": "PRINCIPAL_SERVICE_ACCOUNT",
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return base


async def answer(wire: Wire, credential: str | None) -> tuple[str, str]:
    try:
        await list_page(wire.with_credential(credential), page_size=1)
    except RpcError as exc:
        return exc.code, exc.message
    return "ok", ""


async def refused(wire: Wire, credential: str | None, reason: str) -> None:
    code, message = await answer(wire, credential)
    assert (code, message) == ("unauthenticated", reason)
    if credential:
        assert credential not in message
        for part in credential.split("."):
            assert not part or part not in message


async def test_valid_jwt_is_accepted(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    for kid in ("rsa-1", "ec-1"):
        token = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", kid=kid)
        assert await answer(auth_wire, token) == ("ok", "")


async def test_grants_come_from_scope(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    created = await create(auth_wire)
    reader = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", scope="secrets:read openid")
    plain = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT")
    assert (await get_value(auth_wire.with_credential(reader), created.id)).id == created.id
    with pytest.raises(RpcError) as caught:
        await get_value(auth_wire.with_credential(plain), created.id)
    assert caught.value.code == "permission_denied"


async def test_expired(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    token = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", lifetime_s=-120)  # beyond the 30 s leeway
    await refused(auth_wire, token, "credential has expired")


async def test_within_leeway_is_accepted(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    token = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", lifetime_s=-5)
    assert await answer(auth_wire, token) == ("ok", "")


async def test_not_yet_valid(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    token = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", not_before_s=600)
    await refused(auth_wire, token, "credential is not yet valid")


async def test_wrong_audience(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    token = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", aud="another-service")
    await refused(auth_wire, token, "credential is for another audience")


async def test_wrong_issuer(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    token = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", iss="https://evil.test")
    await refused(auth_wire, token, "credential is from another issuer")


async def test_missing_required_claim(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    key, _ = jwt_issuer.keys["rsa-1"]
    no_exp = claims()
    del no_exp["exp"]
    token = remember(pyjwt.encode(no_exp, key, algorithm="RS256", headers={"kid": "rsa-1"}))
    await refused(auth_wire, token, "credential lacks a required claim")


async def test_bad_subject_or_principal(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    key, _ = jwt_issuer.keys["rsa-1"]
    not_uuid = remember(pyjwt.encode(claims(sub="alice"), key, algorithm="RS256", headers={"kid": "rsa-1"}))
    await refused(auth_wire, not_uuid, "credential subject is not a UUID")
    no_principal = remember(
        pyjwt.encode(claims(principal="ADMIN"), key, algorithm="RS256", headers={"kid": "rsa-1"})
    )
    await refused(auth_wire, no_principal, "credential lacks a valid 'principal' claim")


async def test_signed_by_an_unknown_key(auth_wire: Wire) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    same_kid = remember(pyjwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "rsa-1"}))
    await refused(auth_wire, same_kid, "credential signature does not verify")
    other_kid = remember(pyjwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "stranger"}))
    await refused(auth_wire, other_kid, "credential is signed by an unknown key")


async def test_alg_none(auth_wire: Wire) -> None:
    token = forge({"alg": "none", "typ": "JWT"}, claims(), None)
    await refused(auth_wire, token, "credential algorithm is not allowed")


async def test_hs256_signed_with_the_public_key(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    key, _ = jwt_issuer.keys["rsa-1"]
    public_pem = key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = forge({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), public_pem)
    await refused(auth_wire, token, "credential algorithm is not allowed")


async def test_key_rotated_in_the_jwks_file_without_restart(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    kid = f"rsa-{uuid4().hex[:8]}"
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwt_issuer.keys[kid] = (new_key, "RS256")  # can sign, not yet published
    early = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", kid=kid)
    await refused(auth_wire, early, "credential is signed by an unknown key")

    jwt_issuer.publish()  # the new key set lands on disk
    assert await answer(auth_wire, jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", kid=kid)) == (
        "ok",
        "",
    )

    jwt_issuer.remove_key(kid)  # and is withdrawn again
    await refused(auth_wire, early, "credential is signed by an unknown key")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing credential: send Authorization: Bearer <credential>"),
        ("Basic dXNlcjpwYXNz", "malformed Authorization header: expected Bearer <credential>"),
        ("Bearer", "malformed Authorization header: expected Bearer <credential>"),
        ("Bearer not-a-jwt", "credential is malformed"),
        ("Bearer a.b.c", "credential is malformed"),
        ("Bearer hak_unknownunknownunknownunknownunknownunknown0", "unknown or revoked API key"),
    ],
)
async def test_missing_and_malformed_credentials(auth_wire: Wire, header: str | None, reason: str) -> None:
    if header is None:
        await refused(auth_wire, None, reason)
        return
    wire = auth_wire.with_credential(None)
    if isinstance(wire, ConnectWire):
        response = await wire.post(
            "ListHostAuthenticationTokens",
            b"{}",
            {"content-type": "application/json", "authorization": header},
        )
        error = connect_error(response)
        code, message = error.code, error.message
    else:
        assert isinstance(wire, GrpcWire)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await wire.stub.ListHostAuthenticationTokens(
                pb.ListHostAuthenticationTokensRequest(), metadata=(("authorization", header),)
            )
        code, message = caught.value.code().name.lower(), caught.value.details()
    assert (code, message) == ("unauthenticated", reason)


# -- keys and algorithms must fit each other ---------------------------------


@pytest.mark.parametrize(("alg", "kid"), [("ES256", "rsa-1"), ("RS256", "ec-1")])
async def test_alg_that_does_not_fit_the_named_key(auth_wire: Wire, alg: str, kid: str) -> None:
    """PyJWT raises a TypeError for a key of the wrong type: it was an internal error."""
    token = forge({"alg": alg, "typ": "JWT", "kid": kid}, claims(), b"junk")
    await refused(auth_wire, token, "credential algorithm does not fit its key")


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
async def test_a_token_without_kid_is_checked_with_the_keys_of_its_type(
    auth_wire: Wire, jwt_issuer: Issuer, kid: str
) -> None:
    key, alg = jwt_issuer.keys[kid]
    token = remember(pyjwt.encode(claims(), key, algorithm=alg))  # type: ignore[arg-type]
    assert await answer(auth_wire, token) == ("ok", "")


async def test_a_kid_that_is_not_a_string(auth_wire: Wire) -> None:
    """PyJWT refuses it before any key is looked up (the key set is keyed by strings)."""
    token = forge({"alg": "RS256", "typ": "JWT", "kid": ["rsa-1"]}, claims(), b"junk")
    await refused(auth_wire, token, "credential is malformed")


async def test_a_jti_with_a_nul_is_not_stored(auth_wire: Wire, jwt_issuer: Issuer) -> None:
    """The credential id goes into every audit row: a NUL there failed every write."""
    token = jwt_issuer.token(uuid4(), "PRINCIPAL_SERVICE_ACCOUNT", jti="a\x00b")
    created = await create(auth_wire.with_credential(token))
    assert created.id


def _verifier(
    tmp_path: Path,
    *,
    algorithms: tuple[str, ...],
    jwks: list[dict[str, Any]] | None = None,
    pems: tuple[PrivateKeyTypes, ...] = (),
) -> JwtVerifier:
    jwks_file = None
    if jwks is not None:
        jwks_file = tmp_path / "jwks.json"
        jwks_file.write_text(json.dumps({"keys": jwks}))
    pem_files = []
    for i, key in enumerate(pems):
        path = tmp_path / f"key-{i}.pem"
        path.write_bytes(
            key.public_key().public_bytes(  # type: ignore[union-attr]
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        pem_files.append(path)
    return JwtVerifier(JwtSettings(ISSUER, AUDIENCE, jwks_file, tuple(pem_files), algorithms=algorithms))


def _signed(key: PrivateKeyTypes, alg: str, **headers: str) -> str:
    return remember(pyjwt.encode(claims(jti="j-1"), key, algorithm=alg, headers=headers or None))  # type: ignore[arg-type]


def test_pem_keys_of_two_types_each_verify_their_own(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    verifier = _verifier(tmp_path, algorithms=("RS256", "ES256"), pems=(rsa_key, ec_key))
    for key, alg in ((rsa_key, "RS256"), (ec_key, "ES256")):
        assert verifier.verify(_signed(key, alg)).credential_id == "jwt:j-1"
    p384 = ec.generate_private_key(ec.SECP384R1())  # an EC key, but not of ES256's curve
    with pytest.raises(Unauthenticated, match="signed by an unknown key"):
        _verifier(tmp_path, algorithms=("ES256",), pems=(p384,)).verify(_signed(ec_key, "ES256"))


def test_a_jwks_key_is_used_only_with_the_alg_it_declares(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    declared = _verifier(tmp_path, algorithms=("RS256", "PS256"), jwks=[{**jwk, "kid": "k", "alg": "RS256"}])
    assert declared.verify(_signed(key, "RS256", kid="k")).credential_id == "jwt:j-1"
    with pytest.raises(Unauthenticated, match="does not fit its key"):
        declared.verify(_signed(key, "PS256", kid="k"))
    with pytest.raises(Unauthenticated, match="signed by an unknown key"):
        declared.verify(_signed(key, "PS256"))
    undeclared = _verifier(tmp_path, algorithms=("RS256", "PS256"), jwks=[{**jwk, "kid": "k"}])
    assert undeclared.verify(_signed(key, "PS256", kid="k")).credential_id == "jwt:j-1"


def test_an_odd_jti_becomes_the_tokens_digest(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    verifier = _verifier(tmp_path, algorithms=("ES256",), pems=(key,))
    for jti in ("a\x00b", "with space", "x" * 129):
        token = remember(pyjwt.encode(claims(jti=jti), key, algorithm="ES256"))
        assert verifier.verify(token).credential_id.startswith("jwt:sha256:")


def test_a_key_file_rewritten_with_its_old_mtime_and_size_is_reread(tmp_path: Path) -> None:
    """As `cp -p` or `rsync -a` leave it: a withdrawn key must stop verifying."""
    old_key, new_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    verifier = _verifier(tmp_path, algorithms=("ES256",), pems=(old_key,))
    pem = tmp_path / "key-0.pem"
    assert verifier.verify(_signed(old_key, "ES256")).credential_id == "jwt:j-1"
    before = pem.stat()
    _verifier(tmp_path, algorithms=("ES256",), pems=(new_key,))  # rewrites key-0.pem in place
    os.utime(pem, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (pem.stat().st_size, pem.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        verifier.verify(_signed(old_key, "ES256"))
    assert verifier.verify(_signed(new_key, "ES256")).credential_id == "jwt:j-1"
