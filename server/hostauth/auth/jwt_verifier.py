"""JWTs from an external issuer, verified with PyJWT against configured keys.

Keys come from a JWKS file and/or PEM public key files, re-read whenever a
file changes on disk (checked on each verification: one stat per file), so a
rotated key set needs no restart; and/or from a JWKS URL, fetched at start,
every JWKS_REFRESH_S, and at once for a token naming a key id not yet
known (at most every JWKS_REFETCH_S). Only asymmetric algorithms are accepted,
and symmetric ("oct") keys in a JWKS are ignored: no `none`, and no HMAC
keyed with a public key. A token is checked only against keys that fit its
algorithm: by type and curve, and by the JWK's own `alg` when it has one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gitpod.v1 import identity_pb2
from hostauth.auth.caller import Caller
from hostauth.config import JwtSettings
from hostauth.errors import Unauthenticated

log = logging.getLogger(__name__)

_PLAIN_JTI = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces

_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "credential has expired"),
    (jwt.ImmatureSignatureError, "credential is not yet valid"),
    (jwt.InvalidAudienceError, "credential is for another audience"),
    (jwt.InvalidIssuerError, "credential is from another issuer"),
    (jwt.MissingRequiredClaimError, "credential lacks a required claim"),
    (jwt.InvalidSignatureError, "credential signature does not verify"),
    (jwt.InvalidAlgorithmError, "credential algorithm is not allowed"),
)


_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    alg: str | None  # the JWK's own "alg", when it names one (RFC 8725 3.1)

    def fits(self, alg: str) -> bool:
        """Whether a token signed with alg can be checked with this key: the
        key's own alg if it declares one, and the key's type. PyJWT raises a
        TypeError, not a verification failure, for a key of the wrong type."""
        if self.alg is not None and self.alg != alg:
            return False
        if alg[:2] in ("RS", "PS"):
            return isinstance(self.key, rsa.RSAPublicKey)
        if alg in _CURVES:
            key = self.key
            return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES[alg])
        return alg == "EdDSA" and isinstance(self.key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)


def _keys_of_jwks(doc: Any) -> tuple[dict[str, _Key], list[_Key]]:
    """A JWKS document's verification keys: by kid, and all of them."""
    by_kid: dict[str, _Key] = {}
    every: list[_Key] = []
    for jwk in doc.get("keys", []) if isinstance(doc, dict) else []:
        if jwk.get("kty") == "oct":
            continue  # symmetric: never a verification key here
        alg = jwk.get("alg")
        key = _Key(jwt.PyJWK.from_dict(jwk).key, alg if isinstance(alg, str) else None)
        every.append(key)
        if "kid" in jwk:
            by_kid[jwk["kid"]] = key
    return by_kid, every


# A JWKS URL's key set is fetched again after this long, or at once (at most
# this often) for a token naming a key id it lacks; each fetch within the
# timeout, and at most so many keys kept.
JWKS_REFRESH_S = 300.0
JWKS_REFETCH_S = 30.0
JWKS_TIMEOUT_S = 5.0
JWKS_MAX_KEYS = 64


class _RemoteKeys:
    """The keys of a JWKS URL, fetched by PyJWT's PyJWKClient (no redirects
    followed, a timeout) off the event loop, one fetch at a time."""

    def __init__(self, url: str) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=JWKS_TIMEOUT_S)
        self.url = url
        self.by_kid: dict[str, _Key] = {}
        self.every: list[_Key] = []
        self._tried_at = -JWKS_REFETCH_S
        self._fetched_at = -JWKS_REFRESH_S
        self._unknown_at = -JWKS_REFETCH_S  # the last fetch a token's unknown key id asked for
        self._fetching: asyncio.Task[None] | None = None

    def fetch(self) -> None:
        """Blocking: the key set now (the keys in use stay on a failure)."""
        self._tried_at = time.monotonic()
        try:
            by_kid, every = _keys_of_jwks(self._client.fetch_data())
        except (jwt.PyJWKClientError, jwt.PyJWKError, ValueError, TypeError) as exc:
            log.error(
                "JWT keys not fetched from %s: %s; keeping the %d in use", self.url, exc, len(self.every)
            )
            return
        self.by_kid, self.every = dict(list(by_kid.items())[:JWKS_MAX_KEYS]), every[:JWKS_MAX_KEYS]
        self._fetched_at = time.monotonic()
        log.info("fetched %d JWT verification key(s) from %s", len(self.every), self.url)

    def due(self, unknown_kid: bool) -> bool:
        """Whether to fetch before verifying: the set is old (and the last
        attempt not a moment ago), or a token names a key id it lacks and
        none did within JWKS_REFETCH_S (garbage key ids cost one fetch each
        interval, not one each)."""
        now = time.monotonic()
        if now - self._fetched_at >= JWKS_REFRESH_S and now - self._tried_at >= JWKS_REFETCH_S / 10:
            return True
        if unknown_kid and now - self._unknown_at >= JWKS_REFETCH_S:
            self._unknown_at = now
            return True
        return False

    @property
    def in_flight(self) -> bool:
        return self._fetching is not None and not self._fetching.done()

    async def refresh(self) -> None:
        """Fetch in a thread; callers arriving meanwhile wait for the same fetch."""
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(asyncio.to_thread(self.fetch))
        await asyncio.shield(self._fetching)


class _KeySet:
    """The verification keys, reloaded when their files change."""

    def __init__(self, settings: JwtSettings, remote: _RemoteKeys | None = None) -> None:
        self._settings = settings
        self._remote = remote
        self._stamp: tuple[tuple[int, ...], ...] | None = None
        self._by_kid: dict[str, _Key] = {}
        self._all: list[_Key] = []

    def _files(self) -> list[Path]:
        jwks = [self._settings.jwks_file] if self._settings.jwks_file else []
        return [*jwks, *self._settings.pem_files]

    def _current_stamp(self) -> tuple[tuple[int, ...], ...]:
        # ctime and inode as well: a copy that keeps the old mtime and size
        # (cp -p, rsync -a) still changes the ctime, a rename the inode.
        stamps = []
        for path in self._files():
            st = path.stat()
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size))
        return tuple(stamps)

    def refresh(self) -> None:
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return
        by_kid: dict[str, _Key] = {}
        every: list[_Key] = []
        if self._settings.jwks_file is not None:
            by_kid, every = _keys_of_jwks(json.loads(self._settings.jwks_file.read_text()))
        for pem in self._settings.pem_files:
            every.append(_Key(load_pem_public_key(pem.read_bytes()), None))
        self._by_kid, self._all, self._stamp = by_kid, every, stamp
        log.info("loaded %d JWT verification key(s)", len(every))

    def knows(self, kid: str) -> bool:
        return kid in self._by_kid or (self._remote is not None and kid in self._remote.by_kid)

    def candidates(self, kid: str | None, alg: str) -> list[Any]:
        """The keys a token with this kid and alg may be checked against."""
        by_kid, every = self._by_kid, self._all
        if self._remote is not None:
            by_kid, every = {**self._remote.by_kid, **by_kid}, [*every, *self._remote.every]
        if kid is not None and kid in by_kid:
            named = by_kid[kid]
            if not named.fits(alg):
                raise Unauthenticated("credential algorithm does not fit its key")
            return [named.key]
        if kid is not None and by_kid and not self._settings.pem_files:
            return []
        return [k.key for k in every if k.fits(alg)]


class JwtVerifier:
    __slots__ = ("_keys", "_remote", "_settings")

    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        self._remote = _RemoteKeys(settings.jwks_url) if settings.jwks_url else None
        self._keys = _KeySet(settings, self._remote)
        self._keys.refresh()
        if self._remote is not None:
            self._remote.fetch()  # at start; a failure is retried when a token needs the keys

    async def verify_async(self, token: str) -> Caller:
        """verify(), fetching a JWKS URL's keys first when they are due or the
        token names a key id they lack."""
        remote = self._remote
        if remote is not None:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.PyJWTError:
                kid = None
            unknown = isinstance(kid, str) and not self._keys.knows(kid)
            if (unknown and remote.in_flight) or remote.due(unknown):  # one fetch serves them all
                await remote.refresh()
        return self.verify(token)

    def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("credential is malformed") from None
        if header.get("alg") not in self._settings.algorithms:
            raise Unauthenticated("credential algorithm is not allowed")
        try:
            self._keys.refresh()
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            log.error("cannot load JWT keys: %s", type(exc).__name__)
            raise Unauthenticated("credential cannot be verified now") from None
        # PyJWT has refused a kid that is not a string.
        claims = self._decode(token, header.get("kid"), header["alg"])
        return self._caller(token, claims)

    def _decode(self, token: str, kid: str | None, alg: str) -> dict[str, Any]:
        failure: jwt.PyJWTError | None = None
        for key in self._keys.candidates(kid, alg):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._settings.audience,
                    issuer=self._settings.issuer,
                    leeway=self._settings.leeway_s,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
                return claims
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError) as exc:
                failure = exc  # another key may be the one
            except jwt.PyJWTError as exc:
                raise Unauthenticated(_reason(exc)) from None
        raise Unauthenticated(_reason(failure) if failure else "credential is signed by an unknown key")

    def _caller(self, token: str, claims: dict[str, Any]) -> Caller:
        try:
            subject_id = UUID(str(claims["sub"]))
        except ValueError:
            raise Unauthenticated("credential subject is not a UUID") from None
        name = claims.get(self._settings.principal_claim)
        value = identity_pb2.Principal.DESCRIPTOR.values_by_name.get(name) if isinstance(name, str) else None
        principal = value.number if value is not None else identity_pb2.PRINCIPAL_UNSPECIFIED
        if principal == identity_pb2.PRINCIPAL_UNSPECIFIED:
            raise Unauthenticated(f"credential lacks a valid {self._settings.principal_claim!r} claim")
        jti = claims.get("jti")
        # The credential id is stored with every audit row: an odd jti (a NUL
        # would fail every insert) is replaced by the token's digest.
        plain = isinstance(jti, str) and _PLAIN_JTI.fullmatch(jti)
        credential_id = f"jwt:{jti}" if plain else f"jwt:sha256:{_digest(token)}"
        scope = claims.get("scope", "")
        grants = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return Caller(principal, subject_id, credential_id, grants)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _reason(exc: jwt.PyJWTError | None) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "credential is not valid"
