"""One client interface over the three wires the service speaks.

Every RPC test runs through `Wire.call` on gRPC, Connect JSON and Connect
proto, and compares outcomes as (code, message) where it fails.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_configuration_pb2_grpc as pb_grpc
from gitpod.v1 import runner_interaction_pb2_grpc as ri_grpc

SERVICE = "gitpod.v1.RunnerConfigurationService"
# A method of RunnerInteractionService is named "RunnerInteractionService/<method>".
INTERACTION = "RunnerInteractionService"
WIRES = ("grpc", "connect-json", "connect-proto")
# Get and List also run as Connect GET (the other methods go by POST there).
READ_WIRES = (*WIRES, "connect-get")
NO_SIDE_EFFECTS = {
    "GetHostAuthenticationToken",
    "ListHostAuthenticationTokens",
    "GetSCMIntegration",
    "ListSCMIntegrations",
}


def path_of(method: str) -> str:
    """The HTTP path of a method: RunnerConfigurationService's by its bare name."""
    return f"/gitpod.v1.{method}" if "/" in method else f"/{SERVICE}/{method}"


M = TypeVar("M", bound=Message)

# HTTP status of each Connect code, as the Connect protocol defines them.
CONNECT_HTTP_STATUS = {
    "invalid_argument": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "failed_precondition": 400,
    "not_found": 404,
    "already_exists": 409,
    "aborted": 409,
    "resource_exhausted": 429,
    "unimplemented": 501,
    "internal": 500,
    "unknown": 500,
    "data_loss": 500,
    "unavailable": 503,
    "deadline_exceeded": 504,
}


@dataclass
class RpcError(Exception):
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


async def outcome(call: Awaitable[object]) -> tuple[str, str]:
    """("ok", "") or the call's (code, message)."""
    try:
        await call
    except RpcError as exc:
        return exc.code, exc.message
    return "ok", ""


class Wire(Protocol):
    name: str
    credential: str | None

    async def call(
        self,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        timeout_s: float | None = None,
        headers: dict[str, str] | None = None,
        answer: dict[str, str] | None = None,
    ) -> M:
        """headers: sent too (gRPC metadata); answer: filled with the
        answer's headers (gRPC: trailing metadata)."""
        ...

    def with_credential(self, credential: str | None) -> Wire: ...


def response_type(method: str) -> type[Message]:
    name = method + "Response"
    return getattr(pb, name)  # type: ignore[no-any-return]


class GrpcWire:
    name = "grpc"

    def __init__(
        self, target: str, credential: str | None = None, *, tls: grpc.ChannelCredentials | None = None
    ) -> None:
        self.target = target
        self.channel = (
            grpc.aio.secure_channel(target, tls) if tls is not None else grpc.aio.insecure_channel(target)
        )
        self.stub = pb_grpc.RunnerConfigurationServiceStub(self.channel)
        self.interaction = ri_grpc.RunnerInteractionServiceStub(self.channel)
        self.credential = credential

    def with_credential(self, credential: str | None) -> GrpcWire:
        other = copy.copy(self)
        other.credential = credential
        return other

    async def call(
        self,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        timeout_s: float | None = None,
        headers: dict[str, str] | None = None,
        answer: dict[str, str] | None = None,
    ) -> M:
        metadata = (("authorization", f"Bearer {self.credential}"),) if self.credential else ()
        metadata += tuple((headers or {}).items())
        service, _, name = method.rpartition("/")
        stub = self.interaction if service == INTERACTION else self.stub
        call = getattr(stub, name)(request, metadata=metadata, timeout=timeout_s)
        try:
            result = await call
        except grpc.aio.AioRpcError as exc:
            if answer is not None:
                answer.update((k, str(v)) for k, v in exc.trailing_metadata() or ())
            raise RpcError(exc.code().name.lower(), exc.details() or "") from None
        if answer is not None:
            answer.update((k, str(v)) for k, v in await call.trailing_metadata() or ())
        assert isinstance(result, response_type)
        return result

    async def close(self) -> None:
        await self.channel.close()


class ConnectWire:
    """Connect unary POST, as the SDKs send it, with a JSON or proto body."""

    def __init__(
        self,
        base_url: str,
        encoding: str,
        *,
        use_get: bool = False,
        credential: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = "connect-get" if use_get else f"connect-{encoding}"
        self.encoding = encoding
        self.use_get = use_get
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30, verify=tls or True)
        self.credential = credential

    def with_credential(self, credential: str | None) -> ConnectWire:
        other = copy.copy(self)
        other.credential = credential
        return other

    def auth_headers(self, headers: dict[str, str]) -> dict[str, str]:
        if self.credential and "authorization" not in headers:
            return {**headers, "authorization": f"Bearer {self.credential}"}
        return headers

    async def post(self, method: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post(path_of(method), content=body, headers=self.auth_headers(headers))

    async def get(self, method: str, message: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        """Connect GET: the message in the URL, as the current SDK sends Get and List."""
        params = {
            "connect": "v1",
            "encoding": self.encoding,
            "base64": "1",
            "message": base64.urlsafe_b64encode(message).rstrip(b"=").decode(),
        }
        headers = self.auth_headers(headers or {})
        return await self.http.get(path_of(method), params=params, headers=headers)

    async def call(
        self,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        timeout_s: float | None = None,
        headers: dict[str, str] | None = None,
        answer: dict[str, str] | None = None,
    ) -> M:
        if self.encoding == "json":
            body = json_format.MessageToJson(request).encode()
        else:
            body = request.SerializeToString()
        deadline = {} if timeout_s is None else {"connect-timeout-ms": str(round(timeout_s * 1000))}
        extra = {**deadline, **(headers or {})}
        if self.use_get and method.rpartition("/")[2] in NO_SIDE_EFFECTS:
            response = await self.get(method, body, extra)
        else:
            content = {"content-type": f"application/{self.encoding}", "connect-protocol-version": "1"}
            response = await self.post(method, body, {**content, **extra})
        if answer is not None:
            answer.update(response.headers.items())
        if response.status_code != 200:
            raise connect_error(response)
        assert response.headers["content-type"] == f"application/{self.encoding}"
        result = response_type()
        if self.encoding == "json":
            json_format.Parse(response.content, result)
        else:
            result.ParseFromString(response.content)
        return result

    async def close(self) -> None:
        await self.http.aclose()


def connect_error(response: httpx.Response) -> RpcError:
    """The Connect error of a non-200 answer; checks its HTTP status too."""
    doc: dict[str, Any] = json.loads(response.content)
    code = doc["code"]
    assert response.status_code == CONNECT_HTTP_STATUS[code], (response.status_code, doc)
    return RpcError(code, doc.get("message", ""))


async def refused_with_headers(
    wire: Wire, method: str, request: Message, headers: list[tuple[str, str]]
) -> tuple[RpcError, list[str]]:
    """A call expected to fail, sent with exactly these headers (repeats
    kept; no credential added): its error, and the x-request-id values of
    the answer (Connect's headers, gRPC's trailers)."""
    if isinstance(wire, GrpcWire):
        call = getattr(wire.stub, method)(request, metadata=tuple(headers))
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            error = RpcError(exc.code().name.lower(), exc.details() or "")
        else:
            raise AssertionError(f"{method} succeeded")
        ids = [str(v) for k, v in await call.trailing_metadata() or () if k == "x-request-id"]
        return error, ids
    assert isinstance(wire, ConnectWire)
    body = (
        json_format.MessageToJson(request).encode()
        if wire.encoding == "json"
        else request.SerializeToString()
    )
    response = await wire.http.post(
        f"/{SERVICE}/{method}",
        content=body,
        headers=[("content-type", f"application/{wire.encoding}"), *headers],
    )
    return connect_error(response), response.headers.get_list("x-request-id")


class Ports(Protocol):
    http_port: int
    grpc_port: int


def wires_of(server: Ports, key: str | None) -> list[Wire]:
    """A client of each wire (gRPC, Connect JSON, Connect proto) to the
    server, with this credential; new connections each time."""
    url = f"http://127.0.0.1:{server.http_port}"
    return [
        GrpcWire(f"127.0.0.1:{server.grpc_port}", key),
        ConnectWire(url, "json", credential=key),
        ConnectWire(url, "proto", credential=key),
    ]
