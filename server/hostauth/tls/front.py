"""TLS on the HTTP port: a front in the worker's event loop that does the
handshake and passes the bytes on to granian, which listens on loopback.

granian's own TLS reads its certificate once at start and tells the app
nothing of a client certificate; this front takes a new certificate as soon
as it is on disk (certificates.py) and knows each connection's client
certificate, kept by the port its connection to granian comes from, which
the request's scope names (`peer_for`). HTTP/2 is agreed by ALPN and passed
through (granian tells the versions apart by their first bytes).

What a client that connects and then stalls can hold: the handshake and the
first request bytes must come within the header timeout, a connection with
nothing sent either way for IDLE_S is closed, and beyond
`max_connections` a new connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from contextvars import ContextVar

from hostauth.tls.certificates import ServerCertificates
from hostauth.tls.identities import identity_of

log = logging.getLogger(__name__)

IDLE_S = 300.0
_CHUNK = 64 << 10

# The client certificate's identity of the connection the current request
# came on (None: no certificate, or plaintext), set by the RSGI bridge.
peer_identity: ContextVar[str | None] = ContextVar("peer_identity", default=None)


class TlsFront:
    __slots__ = (
        "_backend_port", "_certs", "_conns", "_handshake_s", "_max", "_peers", "_server", "_sweeper",
    )  # fmt: skip

    def __init__(
        self,
        certs: ServerCertificates,
        backend_port: int,
        *,
        handshake_timeout_s: float,
        max_connections: int,
    ) -> None:
        self._certs = certs
        self._backend_port = backend_port
        self._handshake_s = handshake_timeout_s
        self._max = max_connections
        # The identity of each connection to granian, by its local port.
        self._peers: dict[int, str] = {}
        # Each open connection's transports and when it last moved a byte.
        self._conns: dict[asyncio.StreamWriter, list[float]] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def peer_for(self, client_port: int) -> str | None:
        return self._peers.get(client_port)

    async def start(self, sock: socket.socket) -> None:
        # The server's context is the one of the start; each handshake is
        # switched to the current one (from the client hello's callback, which
        # runs with or without SNI), so a renewed certificate needs no new server.
        base = self._certs.context()
        base.sni_callback = self._current_certificate
        self._server = await asyncio.start_server(
            self._connection, sock=sock, backlog=1024, ssl=base, ssl_handshake_timeout=self._handshake_s
        )
        self._sweeper = asyncio.create_task(self._sweep())

    def _current_certificate(
        self, conn: ssl.SSLObject, _server_name: str | None, base: ssl.SSLContext
    ) -> None:
        current = self._certs.context()
        if current is not base:
            conn.context = current

    async def close(self) -> None:
        """Stop accepting; open connections stay until granian closes its side."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            cutoff = time.monotonic() - IDLE_S
            for writer, last in list(self._conns.items()):
                if last[0] < cutoff:
                    writer.transport.abort()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self._max:
            writer.transport.abort()  # refused at once, not queued
            return
        activity = [time.monotonic()]
        self._conns[writer] = activity
        backend: asyncio.StreamWriter | None = None
        port = 0
        try:
            try:
                first = await asyncio.wait_for(reader.read(_CHUNK), self._handshake_s)
            except (OSError, ssl.SSLError, TimeoutError):
                return
            if not first:
                return
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            b_reader, backend = await asyncio.open_connection("127.0.0.1", self._backend_port)
            port = backend.get_extra_info("sockname")[1]
            identity = identity_of(der) if der else None
            if identity is not None:
                self._peers[port] = identity
            backend.write(first)
            up = asyncio.create_task(_pump(reader, backend, activity))
            down = asyncio.create_task(_pump(b_reader, writer, activity))
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
            if not down.done() and up.exception() is None:
                # The client sent all it will (a half close): granian answers, then closes.
                await asyncio.wait((down,), timeout=self._handshake_s)
            for task in (up, down):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, ssl.SSLError):
                    await task
        except (OSError, ssl.SSLError):
            pass
        finally:
            self._conns.pop(writer, None)
            self._peers.pop(port, None)
            for w in (backend, writer):
                if w is not None:
                    w.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity: list[float]) -> None:
    while data := await reader.read(_CHUNK):
        activity[0] = time.monotonic()
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()
