"""The HTTP servers the benchmark compares granian's native interface with:
granian over ASGI, uvicorn and hypercorn, under the same Connect app.

The bench's service entry (bench/server.py) picks one with
HOSTAUTH_BENCH_HTTP_SERVER; the product serves granian alone.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from hostauth.transport.http_server import SHUTDOWN_GRACE_S, HttpServer, serve_granian


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
    await serve_granian(app, sock, stop, native=False)


SERVERS: dict[str, HttpServer] = {
    "granian": serve_granian,
    "granian-asgi": _granian_asgi,
    "uvicorn": _uvicorn,
    "hypercorn": _hypercorn,
}
