"""The ASGI server under the Connect app.

granian by default: measured here with this service at 2x hypercorn's rate for
GetValue and 4x for the echo floor (docs/benchmarks.md), and on its native
interface (RSGI, server/transport/rsgi_bridge.py) faster again than on its
ASGI one. Connect unary needs no trailers, so granian's lack of them does not
matter; gRPC is served by grpc.aio on its own port. granian over ASGI
("granian-asgi"), hypercorn and uvicorn stay selectable (HOSTAUTH_HTTP_SERVER)
for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from server.transport.rsgi_bridge import AsgiOverRsgi

log = logging.getLogger(__name__)

# How long a stop waits for calls in flight (gRPC's too) before it ends them:
# a client that never finishes sending its request held the stop for ever.
SHUTDOWN_GRACE_S = 5.0


async def _granian(app: Any, sock: socket.socket, stop: asyncio.Event, *, native: bool = True) -> None:
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


async def _uvicorn(app: Any, sock: socket.socket, stop: asyncio.Event) -> None:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        )
    )

    async def _stop() -> None:
        await stop.wait()
        server.should_exit = True

    stopper = asyncio.create_task(_stop())
    sock.listen(1024)
    try:
        await server.serve(sockets=[sock])
    finally:
        stopper.cancel()
        sock.close()


async def _hypercorn(app: Any, sock: socket.socket, stop: asyncio.Event) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock.listen(1024)
    config = Config()
    # Hypercorn wraps the descriptor in its own socket object and closes it.
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = SHUTDOWN_GRACE_S
    await serve(app, config, shutdown_trigger=stop.wait, mode="asgi")


async def _granian_asgi(app: Any, sock: socket.socket, stop: asyncio.Event) -> None:
    await _granian(app, sock, stop, native=False)


SERVERS = {"granian": _granian, "granian-asgi": _granian_asgi, "uvicorn": _uvicorn, "hypercorn": _hypercorn}


async def serve_asgi(kind: str, app: Any, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve `app` on an already bound socket until `stop` is set.

    The socket is handed over: it is closed when serving ends.
    """
    await SERVERS[kind](app, sock, stop)
