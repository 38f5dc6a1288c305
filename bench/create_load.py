"""The Create load for `make bench`: every request a new host under one runner,
which the fixed body of h2load cannot do. Over gRPC (HTTP/2 frames written
directly, bench.grpc_wire) or Connect (HTTP/1.1 keep-alive connections, proto
or JSON), one connection per client. Closed loop (CONCURRENCY callers, each
sending when its last answer came) or, with RPS, open loop: requests are due
at a fixed rate, at most CONCURRENCY in flight, and a latency counts from when
a request was due too, so a stalled server cannot hide its queue. The first
0.3 s warm up and are not counted (unless WARM_UP is 0). Prints one JSON line:
{"count", "warm_up_ok", "errors", "seconds", "latencies_us": [...], "from_due_us": [...]}.

    python -m bench.create_load TARGET TRANSPORT CREDENTIAL RUNNER CONCURRENCY SECONDS [RPS [WARM_UP 0|1]]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import uvloop
from google.protobuf import json_format

from bench.grpc_wire import GrpcConnection, Refused
from bench.load_tools import WARM_UP_S
from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb

PATH = "/gitpod.v1.RunnerConfigurationService/CreateHostAuthenticationToken"
_HOST = "HOST-PLACEHOLDER"


class Bodies:
    """Request bodies that differ only in the host, made by splicing it into a
    template: building a message per request would cost the load tool more
    CPU than the server spends on some calls."""

    def __init__(self, runner: str, encoding: str) -> None:
        req = pb.CreateHostAuthenticationTokenRequest(
            runner_id=runner,
            subject=identity_pb2.Subject(id=str(uuid.uuid4()), principal=identity_pb2.PRINCIPAL_USER),
            token="gho_bench",
            refresh_token="ghr_bench",
        )
        self.encoding = encoding
        if encoding == "json":
            req.host = _HOST
            self._head, self._tail = (
                json_format.MessageToJson(req, indent=None).encode().split(_HOST.encode())
            )
        else:
            self._head, self._tail = (
                req.SerializeToString() + b"\x1a",
                b"",
            )  # field 3 (host), length-delimited
        self._n = 0

    def next(self) -> bytes:
        self._n += 1
        host = f"git-{self._n}.example.com".encode()
        if self.encoding == "json":
            return self._head + host + self._tail
        return self._head + bytes((len(host),)) + host  # hosts here are shorter than 128 bytes


class Tally:
    """Latencies from when a request was sent (as h2load measures them) and,
    in an open loop, from when it was due."""

    def __init__(self, started_ns: int, counted_from_ns: int) -> None:
        self.started = started_ns
        self.counted_from = counted_from_ns
        self.latencies: list[int] = []
        self.from_due: list[int] = []
        self.errors = 0
        self.warm_up_ok = 0

    def record(self, ok: bool, due_ns: int, sent_ns: int) -> None:
        if due_ns < self.counted_from:  # warm-up: not measured, but its rows are written
            self.warm_up_ok += ok
            return
        now = time.perf_counter_ns()
        if ok:
            self.latencies.append((now - sent_ns) // 1000)
            self.from_due.append((now - due_ns) // 1000)
        else:
            self.errors += 1


def schedule(start: int, end: int, rps: float) -> list[int]:
    interval = int(1e9 / rps)
    return list(range(start, end, interval))


async def run_grpc(
    target: str, credential: str, bodies: Bodies, tally: Tally, clients: int, end: int, rps: float
) -> None:
    """gRPC on bench.grpc_wire, a connection per client as h2load makes (the
    server's workers share the port by connection): closed loop, or with rps
    an open loop fed from one schedule."""
    tls = target.startswith("tls:")  # the service's TLS port
    host, port = target.removeprefix("tls:").rsplit(":", 1)
    metadata = {"authorization": f"Bearer {credential}"}
    due: asyncio.Queue[int] | None = asyncio.Queue() if rps else None

    async def caller() -> None:
        conn = await GrpcConnection.open(host, int(port), PATH, metadata, tls=tls)
        while True:
            at = await due.get() if due is not None else time.perf_counter_ns()
            if at >= end:
                break
            sent = time.perf_counter_ns()
            try:
                ok = await conn.call(bodies.next())
            except Refused:
                ok = False
                conn.close()
                conn = await GrpcConnection.open(host, int(port), PATH, metadata, tls=tls)
            tally.record(ok, at, sent)
        conn.close()

    callers = [asyncio.ensure_future(caller()) for _ in range(clients)]
    if due is not None:
        await feed(due, tally.started, end, rps, len(callers))
    await asyncio.gather(*callers)


async def feed(due: asyncio.Queue[int], start: int, end: int, rps: float, callers: int) -> None:
    """Put each request's due time on the queue when it comes, then an end
    for every caller."""
    for at in schedule(start, end, rps):
        await asyncio.sleep(max(0.0, (at - time.perf_counter_ns()) / 1e9))
        due.put_nowait(at)
    for _ in range(callers):
        due.put_nowait(end)


async def run_connect(
    target: str, credential: str, bodies: Bodies, tally: Tally, clients: int, end: int, rps: float
) -> None:
    host, port = target.rsplit(":", 1)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/{bodies.encoding}\r\n"
        f"Connect-Protocol-Version: 1\r\nAuthorization: Bearer {credential}\r\n"
    ).encode()

    async def caller(due: asyncio.Queue[int] | None) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while True:
            at = await due.get() if due is not None else time.perf_counter_ns()
            if at >= end:
                break
            body = bodies.next()
            sent = time.perf_counter_ns()
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status = (await reader.readline()).split(b" ", 2)[1]
            length, chunked = 0, False
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while size := int((await reader.readline()).strip(), 16):
                    await reader.readexactly(size + 2)
                await reader.readline()
            else:
                await reader.readexactly(length)
            tally.record(status == b"200", at, sent)
        writer.close()

    if not rps:
        await asyncio.gather(*(caller(None) for _ in range(clients)))
        return
    queue: asyncio.Queue[int] = asyncio.Queue()
    callers = [asyncio.ensure_future(caller(queue)) for _ in range(clients)]
    await feed(queue, tally.started, end, rps, len(callers))
    await asyncio.gather(*callers)


def main() -> None:
    target, transport, credential, runner = sys.argv[1:5]
    clients, seconds = int(sys.argv[5]), float(sys.argv[6])
    rps = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    warm_up_s = WARM_UP_S if len(sys.argv) <= 8 or sys.argv[8] == "1" else 0.0
    bodies = Bodies(runner, "json" if transport == "connect-json" else "proto")
    start = time.perf_counter_ns()
    tally = Tally(start, start + int(warm_up_s * 1e9))
    end = tally.counted_from + int(seconds * 1e9)
    if transport == "grpc":
        uvloop.run(run_grpc(target, credential, bodies, tally, clients, end, rps))
    else:
        uvloop.run(run_connect(target, credential, bodies, tally, clients, end, rps))
    elapsed = (time.perf_counter_ns() - tally.counted_from) / 1e9
    doc = json.dumps(
        {
            "count": len(tally.latencies) + tally.errors,  # completed calls, as h2load and wrk count
            "warm_up_ok": tally.warm_up_ok,
            "errors": tally.errors,
            "seconds": elapsed,
            "latencies_us": tally.latencies,
            "from_due_us": tally.from_due,
        }
    )
    # To a file of its own when given one: a stray byte a library writes to
    # stdout (a lone newline, seen inside a 64 KiB answer) cannot split it there.
    if len(sys.argv) > 9:
        Path(sys.argv[9]).write_text(doc)
    else:
        print(doc)


if __name__ == "__main__":
    main()
