"""The Connect ASGI app served on granian's native interface (RSGI).

granian's ASGI interface awaits its Rust side for every receive() and send()
(three per unary call); RSGI reads a body in one await and writes a response
in one plain call, which is faster for every method (docs/benchmarks.md,
decisions). A Connect unary call needs no more of ASGI than one request body
and one response, which is all this bridge gives: a response is written once
its last body part is sent, and receive() goes quiet after the body, as
ConnectApp's own wrapper makes it on other servers (connect.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from hostauth.tls.front import peer_identity
from hostauth.transport.calls import STOPPED_MID_CALL

# A body that announces at most this many bytes is read in one await; a
# longer one, or one of no announced length, is handed over chunk by chunk, so
# that connectrpc refuses an oversized message as it arrives.
READ_WHOLE_MAX = 1 << 20

# What the app left of a body (it refused the message as too large, or before
# reading it) is still read, up to this much, and dropped: a client that sends
# its whole request before it reads the answer, as most do, would otherwise
# meet a reset connection and lose the answer with it.
DRAIN_MAX = 16 << 20

# The answers to a body still being read when its deadline passes, or when
# the stop's grace is out: Connect errors, before the app has the message.
_LATE = "late"
_STOPPED = "stopped"


def _connect_error(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


def _ended_answer(reason: str, timeout_s: float) -> tuple[int, bytes]:
    if reason == _LATE:
        return 504, _connect_error(
            "deadline_exceeded", f"the request body did not arrive within {timeout_s:g} s"
        )
    return 503, _connect_error("unavailable", STOPPED_MID_CALL)


_SWEEP_S = 0.25  # how often body reads are checked against their deadline


class _BodyReads:
    """The body reads in flight and the deadline of each, checked a few
    times a second by one task that cancels the late ones: a timer per read
    (asyncio.timeout) costs a visible share of a cheap call, this a dict
    entry."""

    __slots__ = ("_reads", "_sweeper", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._reads: dict[asyncio.Task[Any], tuple[float, _Call]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def begin(self, call: _Call, deadline: float) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._reads[task] = (deadline, call)
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return task

    def end(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._reads.pop(task, None)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP_S)
            now = loop.time()
            late = [(task, call) for task, (deadline, call) in self._reads.items() if now >= deadline]
            for task, call in late:
                del self._reads[task]
                call.ended = _LATE
                task.cancel()

    def end_all(self) -> int:
        """End every read in flight (the stop's grace is out); how many."""
        reads, self._reads = self._reads, {}
        for task, (_, call) in reads.items():
            call.ended = _STOPPED
            task.cancel()
        return len(reads)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None


class AsgiOverRsgi:
    __slots__ = ("_app", "_body_reads", "_peers")

    def __init__(
        self, app: Any, *, body_timeout_s: float = 10.0, peers: Callable[[int], str | None] | None = None
    ) -> None:
        self._app = app
        # Behind the TLS front: the client certificate's identity by the port
        # the front's connection comes from (tls/front.py).
        self._peers = peers
        # From the app's first read of the body to its last byte.
        self._body_reads = _BodyReads(body_timeout_s)

    def end_reads(self) -> int:
        """Answer every call still reading its body `unavailable`, so the
        server can close their connections and stop; how many."""
        return self._body_reads.end_all()

    async def close(self) -> None:
        await self._body_reads.close()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return  # no websockets here
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()]
        server_host, _, server_port = scope.server.rpartition(":")
        client_host, _, client_port = scope.client.rpartition(":")
        asgi_scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": scope.path,
            "query_string": scope.query_string.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": (client_host, int(client_port or 0)),
            "server": (server_host, int(server_port or 0)),
        }
        # A GET or HEAD carries no body (Connect GET has its message in the
        # URL): nothing to drain, and no await for it.
        bodiless = scope.method in ("GET", "HEAD")
        call = _Call(
            protocol,
            _announced_length(scope.headers.get("content-length")),
            self._body_reads,
            drained=bodiless,
        )
        peer = self._peers(int(client_port or 0)) if self._peers is not None else None
        token = peer_identity.set(peer) if peer is not None else None
        try:
            await self._app(asgi_scope, call.receive, call.send)
        finally:
            if token is not None:
                peer_identity.reset(token)
            await call.drain()


def _announced_length(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


class _Call:
    __slots__ = (
        "_announced",
        "_answered",
        "_body_deadline",
        "_body_done",
        "_body_reads",
        "_chunks",
        "_drained",
        "_headers",
        "_parts",
        "_protocol",
        "_status",
        "ended",
    )

    def __init__(
        self, protocol: Any, announced: int | None, body_reads: _BodyReads, *, drained: bool = False
    ) -> None:
        self._protocol = protocol
        self._announced = announced
        self._body_reads = body_reads
        self.ended: str | None = None  # why _BodyReads cancelled the read: _LATE or _STOPPED
        self._body_deadline: float | None = None
        self._answered = False
        self._body_done = False
        self._drained = drained
        self._chunks: Any = None  # the body's chunks, when it is streamed
        self._status = 500
        self._headers: list[tuple[str, str]] = []
        self._parts: list[bytes] = []

    async def receive(self) -> dict[str, Any]:
        if self._body_done:
            await asyncio.get_running_loop().create_future()  # never set: ends by cancellation
        reads = self._body_reads
        if self._body_deadline is None:
            self._body_deadline = asyncio.get_running_loop().time() + reads.timeout_s
        task = reads.begin(self, self._body_deadline)
        try:
            return await self._read()
        except RuntimeError:  # granian's RSGIProtocolClosed and RSGIProtocolError: the client left
            self._body_done = True
            return {"type": "http.disconnect"}
        except asyncio.CancelledError:
            if self.ended is None or task is None:
                raise
            task.uncancel()  # the cancel was ours, not the caller's
            # Answered here, since the app cannot tell this from a client
            # that left; what it sends after is dropped.
            self._body_done = self._drained = True
            status, body = _ended_answer(self.ended, reads.timeout_s)
            self._answer(status, [("content-type", "application/json")], body)
            return {"type": "http.disconnect"}
        finally:
            reads.end(task)

    async def _read(self) -> dict[str, Any]:
        if self._chunks is None and self._announced is not None and self._announced <= READ_WHOLE_MAX:
            self._body_done = True
            return {"type": "http.request", "body": await self._protocol(), "more_body": False}
        if self._chunks is None:
            self._chunks = self._protocol.__aiter__()
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if not self._answered:
            self._answered = True
            self._protocol.response_bytes(status, headers, body)

    async def drain(self) -> None:
        if self._body_done or self._drained:
            return
        self._body_done = self._drained = True
        if self._chunks is None:
            self._chunks = self._protocol.__aiter__()
        left = DRAIN_MAX
        reads = self._body_reads
        deadline = self._body_deadline or asyncio.get_running_loop().time() + reads.timeout_s
        task = reads.begin(self, deadline)
        try:
            while left > 0:
                left -= len(await self._chunks.__anext__())
        except (StopAsyncIteration, RuntimeError):  # the end, or the client left
            pass
        except asyncio.CancelledError:
            if self.ended is None or task is None:
                raise
            task.uncancel()  # too slow, or stopping: what is left is not read
        finally:
            reads.end(task)

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())
            ]
        elif kind == "http.response.body":
            body = message.get("body", b"")
            if message.get("more_body", False):
                self._parts.append(body)
                return
            if self._parts:
                body = b"".join((*self._parts, body))
            self._answer(self._status, self._headers, body)
