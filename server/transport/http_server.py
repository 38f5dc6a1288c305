"""The ASGI server under the Connect app (chosen by measurement: README)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any


async def serve_asgi(kind: str, app: Any, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve `app` on an already bound socket until `stop` is set.

    The socket is handed over: it is closed when serving ends.
    """
    if kind == "uvicorn":
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))

        async def _stop() -> None:
            await stop.wait()
            server.should_exit = True

        stopper = asyncio.create_task(_stop())
        try:
            await server.serve(sockets=[sock])
        finally:
            stopper.cancel()
            sock.close()
        return

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    # Hypercorn wraps the descriptor in its own socket object and closes it.
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = 2
    await serve(app, config, shutdown_trigger=stop.wait, mode="asgi")
