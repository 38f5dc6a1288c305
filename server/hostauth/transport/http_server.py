"""The HTTP server under the Connect app: granian, on its native interface.

granian is the fastest server measured for this service, and its native
interface (RSGI, through rsgi_bridge.py) faster than its ASGI one
(docs/benchmarks.md, decisions). Connect unary needs no trailers, so
granian's lack of them does not matter; gRPC is served by grpc.aio on its
own port. The servers it was compared with live in bench/http_servers.py.

What a client that connects and then sends slowly or nothing can hold
(`HttpLimits`): plaintext HTTP is HTTP/1.1 alone unless h2c is asked for,
since granian's HTTP/1-or-2 detection waits for a connection's first bytes
without a time limit, while HTTP/1's header read timeout runs from the
connection's start and between its requests, so an idle or trickling
connection is closed. A body has its own timeout (rsgi_bridge.py); the
connections a worker serves at once are bounded, the rest wait in the
listen backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from hostauth.transport.rsgi_bridge import AsgiOverRsgi

log = logging.getLogger(__name__)

# How long a stop waits for calls in flight (gRPC's too) before it ends them:
# a client that never finishes sending its request held the stop for ever.
SHUTDOWN_GRACE_S = 5.0


# After the grace, for granian to stop once the calls still reading are answered.
_END_WAIT_S = 1.0

# Connections waiting to be accepted, beyond those a worker serves.
_BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    # Until a request's headers are in, from the connection's start or the
    # previous answer: an idle or trickling connection is closed after it.
    header_timeout_s: float = 10.0
    # Until the whole body is in (rsgi_bridge.py): deadline_exceeded after it.
    body_timeout_s: float = 10.0
    # Connections one worker serves at once on this port.
    max_connections: int = 4096
    # Request headers, on either HTTP version: HTTP/1.1 answers 431 above it.
    max_header_bytes: int = 64 << 10
    # HTTP/2 without TLS (h2c) besides HTTP/1.1.
    h2c: bool = False


async def serve_granian(
    app: Any,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    native: bool = True,
    limits: HttpLimits = HttpLimits(),  # frozen
    peers: Callable[[int], str | None] | None = None,
) -> None:
    """Serve `app` on an already bound socket until `stop` is set; the socket
    is handed over (closed here). native=False: granian's ASGI interface, for
    the benchmark's comparison."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.server.embed import Server

    host, port = sock.getsockname()[:2]
    sock.close()  # never listened on; granian binds the port itself (SO_REUSEPORT on Linux)
    bridge = AsgiOverRsgi(app, body_timeout_s=limits.body_timeout_s, peers=peers) if native else None
    target, interface = (bridge, Interfaces.RSGI) if bridge is not None else (app, Interfaces.ASGINL)
    server = Server(
        target,
        address=host,
        port=port,
        interface=interface,
        http=HTTPModes.auto if limits.h2c else HTTPModes.http1,
        log_enabled=False,
        backlog=_BACKLOG,
        backpressure=limits.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(limits.header_timeout_s * 1000),
            # Reads of headers beyond this are refused (431).
            max_buffer_size=max(limits.max_header_bytes, 8192),
        ),
        http2_settings=HTTP2Settings(
            max_headers_size=limits.max_header_bytes,
            # A connection that sends the preface and then nothing is closed
            # once its pings go unanswered.
            keep_alive_interval=int(limits.header_timeout_s * 1000),
            keep_alive_timeout=max(1, int(limits.header_timeout_s)),
        ),
    )
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.stop()  # type: ignore[no-untyped-call]
    try:
        await asyncio.wait_for(asyncio.shield(serving), SHUTDOWN_GRACE_S)
    except TimeoutError:
        # Calls still reading their bodies are answered (unavailable) and
        # their connections closed, so that granian finishes its own stop;
        # cancelling it mid-way leaves its shutdown callback to fail.
        ended = bridge.end_reads() if bridge is not None else 0
        try:
            await asyncio.wait_for(asyncio.shield(serving), _END_WAIT_S)
            log.info(
                "stopped %d HTTP call(s) still sending their requests after %g s", ended, SHUTDOWN_GRACE_S
            )
        except TimeoutError:
            log.warning("HTTP calls still open after %g s; ending them", SHUTDOWN_GRACE_S + _END_WAIT_S)
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
    finally:
        if bridge is not None:
            await bridge.close()


# The signature every HTTP server under the Connect app has (bench/http_servers.py).
HttpServer = Callable[[Any, socket.socket, asyncio.Event], Coroutine[Any, Any, None]]
