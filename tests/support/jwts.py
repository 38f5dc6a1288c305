"""A JWT issuer for tests: keys in a JWKS file the server reads, and tokens."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from tests.support.sensitive import remember

ISSUER = "https://issuer.test"
AUDIENCE = "hostauth"


def _public_jwk(key: PrivateKeyTypes, kid: str, alg: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))  # type: ignore[union-attr]
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


class Issuer:
    """Signs tokens; publishes its public keys to a JWKS file."""

    def __init__(self, jwks_file: Path) -> None:
        self.jwks_file = jwks_file
        self.keys: dict[str, tuple[PrivateKeyTypes, str]] = {}
        self.add_key("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
        self.add_key("ec-1", ec.generate_private_key(ec.SECP256R1()), "ES256")

    def add_key(self, kid: str, key: PrivateKeyTypes, alg: str) -> None:
        self.keys[kid] = (key, alg)
        self.publish()

    def remove_key(self, kid: str) -> None:
        del self.keys[kid]
        self.publish()

    def publish(self) -> None:
        doc = {"keys": [_public_jwk(key, kid, alg) for kid, (key, alg) in self.keys.items()]}
        tmp = self.jwks_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.jwks_file)  # atomic swap, as a key-rotation job would do

    def token(
        self,
        subject: uuid.UUID,
        principal: str,
        *,
        kid: str = "rsa-1",
        scope: str = "",
        lifetime_s: int = 300,
        not_before_s: int | None = None,
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(subject),
            "principal": principal,
            "iat": now,
            "exp": now + lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        if scope:
            claims["scope"] = scope
        if not_before_s is not None:
            claims["nbf"] = now + not_before_s
        claims.update(overrides)
        key, alg = self.keys[kid]
        return remember(jwt.encode(claims, key, algorithm=alg, headers={"kid": kid}))
