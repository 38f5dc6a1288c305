"""A client for runners (and services) of hostauth's runner side.

A runner keeps an X25519 key pair (`RunnerKey`), signs up with its public
key, and reads a principal's token for a host; the answer's secrets are
sealed boxes that only the runner's private key opens (`RunnerClient.token`
opens them). An SCM integration's client secret is opened the same way
(`RunnerKey.open`).

    key = RunnerKey.generate()              # keep key.private_bytes() safe
    async with RunnerClient("https://hostauth:8080", credential) as client:
        runner_id = await client.signup(key)
        value = await client.token(runner_id, principal_id, "github.com", key)
        value.token, value.refresh_token     # plaintext, here only

It speaks Connect (proto) through connectrpc's generated client; nothing
beyond PyNaCl, which opens the boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from uuid import UUID

from nacl.public import PrivateKey, SealedBox
from pyqwest import Client, HTTPTransport

from gitpod.v1 import runner_interaction_pb2 as ri
from gitpod.v1.runner_interaction_connect import RunnerInteractionServiceClient
from hostauth.crypto.sealed_box import der_of


class RunnerKey:
    """A runner's X25519 key pair."""

    __slots__ = ("_box", "_private")

    def __init__(self, private: bytes) -> None:
        self._private = PrivateKey(private)
        self._box = SealedBox(self._private)

    @classmethod
    def generate(cls) -> RunnerKey:
        return cls(bytes(PrivateKey.generate()))

    def private_bytes(self) -> bytes:
        """The 32 raw bytes of the private key, for the runner to keep."""
        return bytes(self._private)

    @property
    def public_der(self) -> bytes:
        """The public key in PKIX DER, as Signup takes it."""
        return der_of(bytes(self._private.public_key))

    def open(self, sealed: bytes) -> str:
        """The plaintext of a sealed box to this key (nacl.exceptions.CryptoError
        when it was sealed to another)."""
        return bytes(self._box.decrypt(sealed)).decode()

    def __repr__(self) -> str:
        return "RunnerKey(<private>)"


@dataclass(frozen=True, slots=True)
class TokenValue:
    """A token as the runner reads it, opened."""

    token_id: UUID
    token: str
    refresh_token: str  # empty when none is stored
    expires_at: datetime | None
    source: int  # gitpod.v1.HostAuthenticationTokenSource

    def __repr__(self) -> str:
        return f"TokenValue(token_id={self.token_id}, <secrets>)"


class RunnerClient:
    """RunnerInteractionService over Connect, with one credential (an API
    key or JWT of the runner). ca_pem: the CA to trust for https (else the
    system's)."""

    __slots__ = ("_client", "_headers", "_http")

    def __init__(
        self, base_url: str, credential: str, *, ca_pem: bytes | None = None, timeout_s: float = 10
    ) -> None:
        transport = HTTPTransport(
            tls_ca_cert=ca_pem,
            tls_include_system_certs=ca_pem is None,
            timeout=timeout_s,
            follow_redirects=False,
        )
        self._http = Client(transport)
        self._client = RunnerInteractionServiceClient(base_url, http_client=self._http)
        self._headers = {"authorization": f"Bearer {credential}"}

    def __repr__(self) -> str:
        return "RunnerClient(<credential>)"

    async def signup(self, key: RunnerKey) -> UUID:
        """Register (or replace) the runner's public key; the runner's id."""
        answer = await self._client.signup(ri.SignupRequest(public_key=key.public_der), headers=self._headers)
        return UUID(answer.runner_id)

    async def token(self, runner_id: UUID, principal_id: UUID, host: str, key: RunnerKey) -> TokenValue:
        """The principal's token for the host, opened with the runner's key."""
        request = ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest(
            runner_id=str(runner_id), principal_id=str(principal_id), host=host
        )
        answer = await self._client.get_host_authentication_token_value(request, headers=self._headers)
        return TokenValue(
            token_id=UUID(answer.token_id),
            token=key.open(answer.value),
            refresh_token=key.open(answer.refresh_token) if answer.refresh_token else "",
            expires_at=answer.expires_at.ToDatetime(tzinfo=UTC) if answer.HasField("expires_at") else None,
            source=answer.source,
        )

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> RunnerClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
