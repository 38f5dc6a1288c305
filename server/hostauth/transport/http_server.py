"""The HTTP server under the Connect app: granian, on its native interface.

granian is the fastest server measured for this service, and its native
interface (RSGI, through rsgi_bridge.py) faster than its ASGI one
(docs/benchmarks.md, decisions). Connect unary needs no trailers, so
granian's lack of them does not matter; gRPC is served by grpc.aio on its
own port. The servers it was compared with live in bench/http_servers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from hostauth.transport.rsgi_bridge import AsgiOverRsgi

log = logging.getLogger(__name__)

# How long a stop waits for calls in flight (gRPC's too) before it ends them:
# a client that never finishes sending its request held the stop for ever.
SHUTDOWN_GRACE_S = 5.0


async def serve_granian(app: Any, sock: socket.socket, stop: asyncio.Event, *, native: bool = True) -> None:
    """Serve `app` on an already bound socket until `stop` is set; the socket
    is handed over (closed here). native=False: granian's ASGI interface, for
    the benchmark's comparison."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    host, port = sock.getsockname()[:2]
    sock.close()  # never listened on; granian binds the port itself (SO_REUSEPORT on Linux)
    target, interface = (AsgiOverRsgi(app), Interfaces.RSGI) if native else (app, Interfaces.ASGINL)
    server = Server(
        target, address=host, port=port, interface=interface, http=HTTPModes.auto, log_enabled=False
    )
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.stop()  # type: ignore[no-untyped-call]
    try:
        await asyncio.wait_for(asyncio.shield(serving), SHUTDOWN_GRACE_S)
    except TimeoutError:
        log.warning("HTTP calls still open after %g s; ending them", SHUTDOWN_GRACE_S)
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


# The signature every HTTP server under the Connect app has (bench/http_servers.py).
HttpServer = Callable[[Any, socket.socket, asyncio.Event], Coroutine[Any, Any, None]]
