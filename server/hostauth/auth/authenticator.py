"""From an Authorization header to a Call: API key or JWT, or unauthenticated."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from hostauth.auth.api_keys import hash_api_key, looks_like_api_key
from hostauth.auth.caller import Call, Caller
from hostauth.auth.jwt_verifier import JwtVerifier
from hostauth.errors import Unauthenticated
from hostauth.store.api_keys import ApiKeyRow

log = logging.getLogger(__name__)

# A client's request id is kept when it is short and plain; else a new one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_CALLERS = 10_000


def request_id_from(header: str | None) -> str:
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return os.urandom(16).hex()  # 128 random bits, as a uuid4's hex but a sixth of its cost


class ApiKeyLookup(Protocol):
    async def find_active(self, key_hash: bytes) -> ApiKeyRow | None: ...


class IdentityLookup(Protocol):
    def caller(self, identity: str) -> Caller | None: ...


class Authenticator:
    __slots__ = ("_api_keys", "_callers", "_identities", "_jwt")

    def __init__(
        self, api_keys: ApiKeyLookup, jwt: JwtVerifier | None, identities: IdentityLookup | None = None
    ) -> None:
        self._api_keys = api_keys
        self._jwt = jwt
        # Client certificates' identities (tls/identities.py); None: mutual TLS is off.
        self._identities = identities
        # The Caller of each active key seen, made once: a key's principal,
        # subject and grants never change (a key is revoked, not edited), and
        # the lookup above still runs, so a revoked key is refused.
        self._callers: dict[UUID, Caller] = {}

    async def authenticate(
        self, authorization: Sequence[str], rid: str, method: str, peer: str | None = None
    ) -> Call:
        """The call's caller, from every Authorization header it sent, or
        Unauthenticated with a reason that never quotes the credential. rid
        is the call's request id (request_id_from), already on its answer.
        peer is the identity of the client certificate the connection was
        made with (checked against the client CA in the handshake): it is
        the credential of a call that sends no Authorization header."""
        try:
            if len(authorization) > 1:
                # A proxy in front may have checked another copy than we would.
                raise Unauthenticated("more than one Authorization header: send one")
            if not authorization and peer is not None and self._identities is not None:
                caller = self._identities.caller(peer)
                if caller is None:
                    raise Unauthenticated(f"client certificate {peer!r} is not mapped to a principal")
            else:
                caller = await self._caller(authorization[0] if authorization else None)
        except Unauthenticated as exc:
            log.warning("request %s: unauthenticated %s: %s", rid, method, exc.message)
            raise
        return Call(caller, rid)

    async def _caller(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated("missing credential: send Authorization: Bearer <credential>")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("malformed Authorization header: expected Bearer <credential>")
        if looks_like_api_key(credential):
            row = await self._api_keys.find_active(hash_api_key(credential))
            if row is None:
                raise Unauthenticated("unknown or revoked API key")
            caller = self._callers.get(row.id)
            if caller is None:
                if len(self._callers) >= _MAX_CALLERS:
                    self._callers.clear()
                caller = Caller(row.principal, row.subject_id, f"api_key:{row.id}", frozenset(row.grants))
                self._callers[row.id] = caller
            return caller
        if self._jwt is None:
            raise Unauthenticated("credential is not an API key, and JWTs are not configured")
        return await self._jwt.verify_async(credential)
