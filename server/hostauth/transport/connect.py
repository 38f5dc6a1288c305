"""Connect adapter: an ASGI app serving Connect JSON and Connect proto.

Also Connect GET for the methods without side effects, gzip both ways, and
the older JSON SDK's List paging through URL query parameters.
"""

from __future__ import annotations

import asyncio
import json
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import parse_qs

from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from gitpod.v1.runner_configuration_connect import RunnerConfigurationServiceASGIApplication
from gitpod.v1.runner_interaction_connect import RunnerInteractionServiceASGIApplication
from hostauth.auth.authenticator import request_id_from
from hostauth.auth.caller import Call
from hostauth.core import versions
from hostauth.core.service import HostAuthService
from hostauth.errors import FieldViolation, InvalidArgument
from hostauth.telemetry.calls import (
    CODE_NAMES,
    CONNECT_JSON,
    CONNECT_PROTO,
    OK,
    CallRecord,
    CallTelemetry,
    code_name,
)
from hostauth.tls.front import peer_identity
from hostauth.transport.calls import Calls, CoreMethod, Refused
from hostauth.transport.codecs import connect_codecs
from hostauth.transport.cors import Cors
from hostauth.transport.health import HEALTH_PATHS, Readiness, answer_health
from hostauth.transport.methods import CONFIGURATION, INTERACTION, METHODS, QUALIFIED
from hostauth.transport.status import STATUS

Req = TypeVar("Req")
Res = TypeVar("Res")
Ctx = RequestContext[Any, Any]

LIST_PATH = "/gitpod.v1.RunnerConfigurationService/ListHostAuthenticationTokens"
# The services' methods by path: only these are counted (a path is the caller's to choose).
_METHODS = {f"/{service}/{name}": (service, name) for service, methods in METHODS.items() for name in methods}
_INTERACTION_PREFIX = f"/{INTERACTION}/"
# The telemetry record of the call being served, for the adapter to fill in.
_current_record: ContextVar[CallRecord | None] = ContextVar("call_record", default=None)
# The query parameters of the List request being served, if it had any.
_list_query: ContextVar[dict[str, list[str]] | None] = ContextVar("list_query", default=None)


def apply_list_query(request: pb.ListHostAuthenticationTokensRequest, query: dict[str, list[str]]) -> None:
    """The older JSON SDK pages with `?token=...&pageSize=...` on an unchanged
    body: those parameters override the body's pagination."""
    if "token" in query:
        request.pagination.token = query["token"][-1]
    if "pageSize" in query:
        try:
            request.pagination.page_size = int(query["pageSize"][-1])
        except ValueError:  # not a number, or beyond int32
            raise InvalidArgument(
                [FieldViolation("pagination.page_size", "value must be a 32-bit integer")]
            ) from None


async def _list(
    core: HostAuthService, request: pb.ListHostAuthenticationTokensRequest, call: Call
) -> pb.ListHostAuthenticationTokensResponse:
    query = _list_query.get()
    if query:
        apply_list_query(request, query)
    return await core.list_host_authentication_tokens(request, call)


class _Adapter:
    """The step every Connect call takes into Calls."""

    __slots__ = ("_calls",)

    def __init__(self, calls: Calls) -> None:
        self._calls = calls

    async def _call(self, method: CoreMethod[Req, Res], request: Req, ctx: Ctx) -> Res:
        headers = ctx.request_headers
        rid = request_id_from(headers.get("x-request-id"))
        ctx.response_headers["x-request-id"] = rid  # on refusals too
        record = _current_record.get()
        answer = versions.Answer(headers.get("if-match"))
        versions.current.set(answer)  # this request's context only
        try:
            result = await self._calls.answer(
                QUALIFIED[ctx.method.service_name, ctx.method.name],
                headers.getall("authorization"),
                rid,
                method,
                request,
                peer_identity.get(),
                record,
            )
        except Refused as refused:
            if record is not None:
                record.code = CODE_NAMES[refused.code]
            raise ConnectError(STATUS[refused.code][1], refused.message) from None
        etag = answer.etag()
        if etag is not None:
            ctx.response_headers["etag"] = etag
        return result


class ConnectRunnerConfiguration(_Adapter):
    """Implements the generated RunnerConfigurationService protocol."""

    __slots__ = ()

    async def create_host_authentication_token(
        self, request: pb.CreateHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.CreateHostAuthenticationTokenResponse:
        return await self._call(HostAuthService.create_host_authentication_token, request, ctx)

    async def get_host_authentication_token(
        self, request: pb.GetHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.GetHostAuthenticationTokenResponse:
        return await self._call(HostAuthService.get_host_authentication_token, request, ctx)

    async def list_host_authentication_tokens(
        self, request: pb.ListHostAuthenticationTokensRequest, ctx: Ctx, /
    ) -> pb.ListHostAuthenticationTokensResponse:
        return await self._call(_list, request, ctx)

    async def update_host_authentication_token(
        self, request: pb.UpdateHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.UpdateHostAuthenticationTokenResponse:
        return await self._call(HostAuthService.update_host_authentication_token, request, ctx)

    async def delete_host_authentication_token(
        self, request: pb.DeleteHostAuthenticationTokenRequest, ctx: Ctx, /
    ) -> pb.DeleteHostAuthenticationTokenResponse:
        return await self._call(HostAuthService.delete_host_authentication_token, request, ctx)

    async def get_host_authentication_token_value(
        self, request: pb.GetHostAuthenticationTokenValueRequest, ctx: Ctx, /
    ) -> pb.GetHostAuthenticationTokenValueResponse:
        return await self._call(HostAuthService.get_host_authentication_token_value, request, ctx)

    async def create_scm_integration(
        self, request: pb.CreateSCMIntegrationRequest, ctx: Ctx, /
    ) -> pb.CreateSCMIntegrationResponse:
        return await self._call(METHODS_OF["CreateSCMIntegration"], request, ctx)

    async def get_scm_integration(
        self, request: pb.GetSCMIntegrationRequest, ctx: Ctx, /
    ) -> pb.GetSCMIntegrationResponse:
        return await self._call(METHODS_OF["GetSCMIntegration"], request, ctx)

    async def list_scm_integrations(
        self, request: pb.ListSCMIntegrationsRequest, ctx: Ctx, /
    ) -> pb.ListSCMIntegrationsResponse:
        return await self._call(METHODS_OF["ListSCMIntegrations"], request, ctx)

    async def update_scm_integration(
        self, request: pb.UpdateSCMIntegrationRequest, ctx: Ctx, /
    ) -> pb.UpdateSCMIntegrationResponse:
        return await self._call(METHODS_OF["UpdateSCMIntegration"], request, ctx)

    async def delete_scm_integration(
        self, request: pb.DeleteSCMIntegrationRequest, ctx: Ctx, /
    ) -> pb.DeleteSCMIntegrationResponse:
        return await self._call(METHODS_OF["DeleteSCMIntegration"], request, ctx)


METHODS_OF: dict[str, CoreMethod[Any, Any]] = {
    name: method for name, (method, _) in METHODS[CONFIGURATION].items()
}
_INTERACTION_OF: dict[str, CoreMethod[Any, Any]] = {
    name: method for name, (method, _) in METHODS[INTERACTION].items()
}


class ConnectRunnerInteraction(_Adapter):
    """Implements the generated RunnerInteractionService protocol."""

    __slots__ = ()

    async def signup(self, request: ri.SignupRequest, ctx: Ctx, /) -> ri.SignupResponse:
        return await self._call(_INTERACTION_OF["Signup"], request, ctx)

    async def get_host_authentication_token_value(
        self, request: ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest, ctx: Ctx, /
    ) -> ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse:
        return await self._call(_INTERACTION_OF["GetHostAuthenticationTokenValue"], request, ctx)


class ConnectApp:
    """The ASGI app: the generated Connect application, plus List's query,
    and any routes of an embedding program's own (the benchmark's echo),
    checked in the same step rather than by an app wrapped around this one."""

    __slots__ = ("_cors", "_inner", "_interaction", "_readiness", "_routes", "_telemetry")

    def __init__(
        self,
        inner: RunnerConfigurationServiceASGIApplication,
        routes: tuple[tuple[str, Any], ...] = (),
        readiness: Readiness | None = None,
        cors: Cors | None = None,
        telemetry: CallTelemetry | None = None,
        interaction: RunnerInteractionServiceASGIApplication | None = None,
    ) -> None:
        self._inner = inner
        self._interaction = interaction
        self._routes = routes
        self._readiness = readiness
        self._cors = cors
        self._telemetry = telemetry if telemetry is not None and telemetry.active else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        if scope["path"] in HEALTH_PATHS and self._readiness is not None:
            await answer_health(self._readiness, scope, send)
            return
        if self._cors is not None:
            send = await self._cors.handle(scope, send)
            if send is None:
                return
        if self._routes:
            for prefix, app in self._routes:
                if scope["path"].startswith(prefix):
                    await app(scope, receive, send)
                    return
        if self._telemetry is not None and (method := _METHODS.get(scope["path"])) is not None:
            await self._observed(self._telemetry, method, scope, receive, send)
            return
        await self._serve(scope, receive, send)

    async def _observed(
        self, telemetry: CallTelemetry, method: tuple[str, str], scope: Any, receive: Any, send: Any
    ) -> None:
        transport, carrier = _transport_and_trace(scope)
        record = telemetry.begin(method[1], transport, carrier, method[0])
        assert record is not None
        watch = _AnswerWatch(send, record)
        token = _current_record.set(record)
        try:
            await self._serve(scope, receive, watch)
        finally:
            _current_record.reset(token)
            telemetry.end(record, watch.code())

    async def _serve(self, scope: Any, receive: Any, send: Any) -> None:
        receive = _QuietAfterBody(receive)
        if not all(value.isascii() for _, value in scope["headers"]):
            scope = _with_utf8_headers(scope)
        if scope["method"] == "POST" and scope["path"] == LIST_PATH and scope["query_string"]:
            token = _list_query.set(parse_qs(scope["query_string"].decode("latin-1")))
            try:
                await self._inner(scope, receive, send)
            finally:
                _list_query.reset(token)
            return
        if self._interaction is not None and scope["path"].startswith(_INTERACTION_PREFIX):
            await self._interaction(scope, receive, send)
            return
        await self._inner(scope, receive, send)


def _transport_and_trace(scope: Any) -> tuple[str, dict[str, str]]:
    """connect_json or connect_proto (by content type, or a GET's encoding),
    and the W3C trace context headers."""
    transport = CONNECT_JSON
    carrier: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.startswith(b"application/proto"):
                transport = CONNECT_PROTO
        elif name in (b"traceparent", b"tracestate"):
            carrier[name.decode()] = value.decode("latin-1")
    if scope["method"] == "GET" and b"encoding=proto" in scope["query_string"]:
        transport = CONNECT_PROTO
    return transport, carrier


# Connect's HTTP statuses, for an answer whose code is not in its body.
_HTTP_CODES = {
    400: "InvalidArgument", 401: "Unauthenticated", 403: "PermissionDenied", 404: "Unimplemented",
    408: "DeadlineExceeded", 409: "Aborted", 412: "FailedPrecondition", 413: "ResourceExhausted",
    415: "Unimplemented", 429: "ResourceExhausted", 499: "Canceled", 501: "Unimplemented",
    503: "Unavailable", 504: "DeadlineExceeded",
}  # fmt: skip


class _AnswerWatch:
    """The app's send(), noting the answer's status; an error answered
    before the adapter saw the call (a body that does not decode, one too
    large) gives its code in its JSON body."""

    __slots__ = ("_body", "_record", "_send", "_status")

    def __init__(self, send: Any, record: CallRecord) -> None:
        self._send = send
        self._record = record
        self._status = 0
        self._body = b""

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
        elif self._status != 200 and self._record.code is None and len(self._body) < 4096:
            self._body += message.get("body", b"")
        await self._send(message)

    def code(self) -> str:
        if self._record.code is not None:
            return self._record.code
        if self._status == 200:
            return OK
        if self._status == 0:  # nothing answered: the client left
            return "Canceled"
        try:
            return code_name(json.loads(self._body)["code"])
        except (ValueError, KeyError, TypeError):
            return _HTTP_CODES.get(self._status, "Unknown")


def _with_utf8_headers(scope: Any) -> Any:
    """The scope with every header value valid UTF-8, bytes that are not
    replaced (U+FFFD). connectrpc decodes header values strictly and answered
    one that is not UTF-8 (HTTP allows any byte above 0x7F) with a 500 that
    quoted the codec's error; through granian's native interface such a
    request already went through. A header that matters then fails on its
    own terms (an authorization becomes unauthenticated); one that does not
    is ignored. The check before it is cheap next to the request."""
    headers = [(name, value.decode("utf-8", "replace").encode()) for name, value in scope["headers"]]
    return {**scope, "headers": headers}


class _QuietAfterBody:
    """The request's receive() up to the end of its body; after that, a
    receive() that waits until it is cancelled (a disconnect is not seen).

    So no method watches for its client's disconnect once the body is read.
    connectrpc's watch (a receive() kept pending for the whole call: a task
    and a future per request) would cancel the handler, but every method is
    one short, bounded database step. Create, Get and GetValue run in a
    statement shared with other requests, which completes whatever one
    client does; List, Update and Delete are one query or one transaction,
    better finished than cut off, and the watch costs a visible share of
    each method's rate (docs/benchmarks.md, decisions). Deadlines still end
    any call.
    """

    __slots__ = ("_body_done", "_receive")

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._body_done = False

    async def __call__(self) -> Any:
        if self._body_done:
            await asyncio.get_running_loop().create_future()  # never set: ends by cancellation
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self._body_done = True
        return message


def build_connect_app(
    calls: Calls,
    *,
    max_message_bytes: int,
    routes: tuple[tuple[str, Any], ...] = (),
    readiness: Readiness | None = None,
    cors_origins: tuple[str, ...] = (),
) -> ConnectApp:
    return ConnectApp(
        RunnerConfigurationServiceASGIApplication(
            ConnectRunnerConfiguration(calls),
            read_max_bytes=max_message_bytes,
            codecs=connect_codecs(),
        ),
        routes,
        readiness,
        Cors(cors_origins) if cors_origins else None,
        calls.telemetry,
        RunnerInteractionServiceASGIApplication(
            ConnectRunnerInteraction(calls), read_max_bytes=max_message_bytes, codecs=connect_codecs()
        ),
    )
