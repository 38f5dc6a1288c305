"""CORS for browser Connect clients, off unless HOSTAUTH_CORS_ORIGINS names
the exact origins allowed.

A preflight from an allowed origin is answered with the headers Connect
clients send and read; any other origin gets no CORS header, so the browser
stops. GetHostAuthenticationTokenValue is never allowed cross-origin: its
preflight is refused, and a call to it that carries an Origin header (what
a browser adds) is answered permission_denied without running, so no page
can make a secret be read, even one whose answer it could not see.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

# Never cross-origin: the method that answers with secrets.
SECRET_PATHS = frozenset(
    {
        "/gitpod.v1.RunnerConfigurationService/GetHostAuthenticationTokenValue",
        "/gitpod.v1.RunnerInteractionService/GetHostAuthenticationTokenValue",
    }
)

_ALLOW_HEADERS = (
    b"Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Accept-Encoding, Content-Encoding,"
    b" Accept-Encoding, Authorization, X-Request-Id, X-User-Agent, Grpc-Timeout, X-Grpc-Web, If-Match"
)
_EXPOSE_HEADERS = (
    b"X-Request-Id, Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Connect-Content-Encoding, Etag"
)
_MAX_AGE = b"7200"

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _origin(scope: Any) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            return bytes(value)
    return None


class Cors:
    __slots__ = ("_origins",)

    def __init__(self, origins: tuple[str, ...]) -> None:
        self._origins = frozenset(o.encode() for o in origins)

    async def handle(self, scope: Any, send: Send) -> Send | None:
        """None when the request was answered here (a preflight, or a secret
        read from a browser); else the send to answer it through, which adds
        the CORS headers for an allowed origin."""
        origin = _origin(scope)
        if origin is None:
            return send
        allowed = origin in self._origins and scope["path"] not in SECRET_PATHS
        if scope["method"] == "OPTIONS":
            await _preflight(send, origin if allowed else None)
            return None
        if scope["path"] in SECRET_PATHS:
            await _refused(send)
            return None
        if not allowed:
            return send

        async def with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", ()),
                    (b"access-control-allow-origin", origin),
                    (b"access-control-expose-headers", _EXPOSE_HEADERS),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        return with_cors


async def _preflight(send: Send, origin: bytes | None) -> None:
    headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
    if origin is not None:
        headers += [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", b"POST, GET"),
            (b"access-control-allow-headers", _ALLOW_HEADERS),
            (b"access-control-max-age", _MAX_AGE),
        ]
    await send({"type": "http.response.start", "status": 204 if origin else 403, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _refused(send: Send) -> None:
    body = json.dumps(
        {"code": "permission_denied", "message": "GetHostAuthenticationTokenValue is not served to browsers"}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
