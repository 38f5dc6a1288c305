"""Runs both transports over one service core in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from hostauth.config import Address, Settings
from hostauth.runtime.tuning import schedule_as_batch, shares_one_core
from hostauth.tls.certificates import ServerCertificates
from hostauth.tls.front import TlsFront
from hostauth.transport.calls import Calls
from hostauth.transport.connect import build_connect_app
from hostauth.transport.grpc import GrpcServer, build_grpc_server
from hostauth.transport.health import Readiness, stop_watching, watching
from hostauth.transport.http_server import SHUTDOWN_GRACE_S, HttpLimits, HttpServer, serve_granian

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Running:
    """Where the servers listen (ports resolved when 0 was asked for)."""

    http: Address
    grpc: Address
    grpc_server: GrpcServer
    readiness: Readiness
    tls: bool = False

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.http}"


@dataclass(frozen=True, slots=True)
class Extras:
    """What a program that embeds the service adds to it: the benchmark adds
    its echo method on both ports and may put another HTTP server under
    Connect (bench/server.py). The product runs with none."""

    # Connect paths served by an app of their own, checked before the
    # service's: (path prefix, the request size limit -> ASGI app).
    connect_routes: tuple[tuple[str, Callable[[int], Any]], ...] = ()
    grpc_handlers: tuple[grpc.GenericRpcHandler[Any, Any], ...] = ()
    # None: granian, with the settings' connection limits.
    http_server: HttpServer | None = None


NO_EXTRAS = Extras()


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
        h2c=settings.http_h2c,
    )


def bind_http(addr: Address, *, reuse_port: bool) -> socket.socket:
    """The HTTP port, bound but not listening: the ASGI server listens on it
    (or, granian, binds its own and this one is closed). A listening socket in
    a SO_REUSEPORT group takes its share of new connections at once, and
    closing it would reset the ones queued on it."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # worker processes share the port; the kernel spreads connections
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((addr.host, addr.port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {addr}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


# Where granian listens behind the TLS front.
_BEHIND_FRONT = Address("127.0.0.1", 0)

# What a stop keeps of its grace for the answers of the calls it ends to go out.
_ANSWER_S = 0.5

# Where to knock when the server listens on every address.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


async def _until_accepting(
    addr: Address, port: int, server: asyncio.Task[None], *, within_s: float = 30.0
) -> None:
    """Until the HTTP port takes connections. granian binds it itself a
    moment after it starts, and a client that came in that moment was
    refused; so the service says it serves (the log line, gRPC health) only
    once both transports would answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    host = _LOOPBACK.get(addr.host, addr.host)
    while True:
        if server.done():
            server.result()  # the HTTP server's own error, if it failed
            raise RuntimeError("the HTTP server stopped before it took a connection")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.005)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def serve(
    calls: Calls,
    settings: Settings,
    *,
    reuse_port: bool = False,
    extras: Extras = NO_EXTRAS,
) -> AsyncIterator[Running]:
    tls = settings.tls
    certs = ServerCertificates(tls) if tls is not None else None
    grpc_server = build_grpc_server(
        calls,
        max_message_bytes=settings.max_message_bytes,
        reuse_port=reuse_port,
        extra_handlers=extras.grpc_handlers,
        handshake_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
        client_certs=tls is not None and tls.client_certs != "off",
    )
    grpc_addr = str(settings.grpc_addr)
    try:  # grpcio raises RuntimeError for a port it cannot bind (older ones returned 0)
        if certs is not None:
            grpc_port = grpc_server.server.add_secure_port(grpc_addr, certs.grpc_credentials())
        else:
            grpc_port = grpc_server.server.add_insecure_port(grpc_addr)
    except RuntimeError:
        grpc_port = 0
    if grpc_port == 0:
        raise OSError(f"cannot listen on {settings.grpc_addr} (gRPC)")
    # The HTTP socket is bound here, not by the ASGI server, so that port 0
    # (tests) resolves to a known port before anyone connects.
    sock = bind_http(settings.http_addr, reuse_port=reuse_port)
    http_port = sock.getsockname()[1]
    limit = settings.max_message_bytes
    routes = tuple((prefix, make(limit)) for prefix, make in extras.connect_routes)
    readiness = Readiness(
        keys=lambda: calls.has_core,
        draining=lambda: calls.draining,
        probe=lambda: calls.probe,
        timeout_s=settings.db_timeout_s,
    )
    app = build_connect_app(
        calls, max_message_bytes=limit, routes=routes, readiness=readiness, cors_origins=settings.cors_origins
    )
    await grpc_server.server.start()
    # grpc's threads have started and keep the normal policy; this thread (the
    # event loop) and the HTTP server's, started from here on, share one core
    # and hand each other every request (server/hostauth/runtime/tuning.py).
    if settings.batch_scheduling and shares_one_core() and schedule_as_batch():
        log.info("the event loop and the HTTP server's threads run under SCHED_BATCH")
    stop = asyncio.Event()
    front: TlsFront | None = None
    if certs is not None:
        # granian behind the TLS front, on a loopback port of this worker's own.
        front_sock, sock = sock, bind_http(_BEHIND_FRONT, reuse_port=False)
        behind = sock.getsockname()[1]
        front = TlsFront(
            certs,
            behind,
            handshake_timeout_s=settings.header_timeout_s,
            max_connections=settings.max_connections,
        )
        limits = dataclasses.replace(http_limits(settings), h2c=True)  # HTTP/2 as ALPN agreed
        http_task = asyncio.create_task(serve_granian(app, sock, stop, limits=limits, peers=front.peer_for))
    else:
        http_server = extras.http_server or functools.partial(serve_granian, limits=http_limits(settings))
        http_task = asyncio.create_task(http_server(app, sock, stop))
    watch: asyncio.Task[None] | None = None
    try:
        if front is not None:
            await _until_accepting(_BEHIND_FRONT, behind, http_task)
            await front.start(front_sock)
        else:
            await _until_accepting(settings.http_addr, http_port, http_task)
        watch = await watching(readiness, grpc_server.publish)
        yield Running(
            Address(settings.http_addr.host, http_port),
            Address(settings.grpc_addr.host, grpc_port),
            grpc_server,
            readiness,
            tls=certs is not None,
        )
    finally:
        if watch is not None:
            await stop_watching(watch)
        await grpc_server.mark_not_serving()
        # New calls are refused (unavailable) from here; the ones in flight
        # have the grace, less the moment their answers take to go out, and
        # are then ended (unavailable) before either server cuts them off.
        draining = asyncio.create_task(calls.drain(SHUTDOWN_GRACE_S - _ANSWER_S))
        stop.set()
        if front is not None:
            await front.close()
        await grpc_server.server.stop(grace=SHUTDOWN_GRACE_S)
        ended = await draining
        if ended:
            log.warning(
                "%d call(s) still in flight after the %g s grace: answered unavailable",
                ended,
                SHUTDOWN_GRACE_S,
            )
        await http_task
