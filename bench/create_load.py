"""The Create load for `make bench`: every request a new host under one runner,
which the fixed body of h2load cannot do. Over gRPC (grpc.aio) or Connect
(HTTP/1.1 keep-alive connections, proto or JSON). Closed loop (CONCURRENCY
callers, each sending when its last answer came) or, with RPS, open loop:
requests are due at a fixed rate and a latency counts from when a request was
due, so a stalled server cannot hide its queue. The first 0.3 s warm up and
are not counted. Prints one JSON line:
{"count", "errors", "seconds", "latencies_us": [...]}.

    python -m bench.create_load TARGET TRANSPORT CREDENTIAL RUNNER CONCURRENCY SECONDS [RPS]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import json_format

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb

WARM_UP_S = 0.3
PATH = "/gitpod.v1.RunnerConfigurationService/CreateHostAuthenticationToken"

Send = Callable[[bytes], Awaitable[bool]]


class Load:
    def __init__(self, transport: str, runner: str) -> None:
        self.encoding = "json" if transport == "connect-json" else "proto"
        self.runner = runner
        self.subject = identity_pb2.Subject(id=str(uuid.uuid4()), principal=identity_pb2.PRINCIPAL_USER)
        self.n = 0
        self.latencies: list[int] = []
        self.errors = 0

    def body(self) -> bytes:
        self.n += 1
        req = pb.CreateHostAuthenticationTokenRequest(
            runner_id=self.runner,
            subject=self.subject,
            host=f"git-{self.n}.example.com",
            token="gho_bench",
            refresh_token="ghr_bench",
        )
        if self.encoding == "json":
            return json_format.MessageToJson(req, indent=None).encode()
        return req.SerializeToString()

    def record(self, ok: bool, due_ns: int, counted_from_ns: int) -> None:
        if due_ns < counted_from_ns:
            return  # warm-up
        if ok:
            self.latencies.append((time.perf_counter_ns() - due_ns) // 1000)
        else:
            self.errors += 1


async def grpc_sender(target: str, credential: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    channel = grpc.aio.insecure_channel(target)
    call = channel.unary_unary(PATH)  # bytes in, bytes out: no client-side decoding
    metadata = (("authorization", f"Bearer {credential}"),)

    async def send(body: bytes) -> bool:
        try:
            await call(body, metadata=metadata)
        except grpc.aio.AioRpcError:
            return False
        return True

    return send, channel.close


async def connect_sender(
    target: str, credential: str, encoding: str
) -> tuple[Send, Callable[[], Awaitable[None]]]:
    host, port = target.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/{encoding}\r\n"
        f"Connect-Protocol-Version: 1\r\nAuthorization: Bearer {credential}\r\n"
    ).encode()

    async def send(body: bytes) -> bool:
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
        return status == b"200"

    async def close() -> None:
        writer.close()

    return send, close


async def main(
    target: str, transport: str, credential: str, runner: str, concurrency: int, seconds: float, rps: float
) -> None:
    load = Load(transport, runner)
    senders = [
        await (
            grpc_sender(target, credential)
            if transport == "grpc"
            else connect_sender(target, credential, load.encoding)
        )
        for _ in range(1 if transport == "grpc" else concurrency)  # gRPC multiplexes one connection
    ]
    start = time.perf_counter_ns()
    counted_from = start + int(WARM_UP_S * 1e9)
    end = counted_from + int(seconds * 1e9)

    async def closed_loop(send: Send) -> None:
        while (now := time.perf_counter_ns()) < end:
            load.record(await send(load.body()), now, counted_from)

    async def open_loop(send: Send, due: asyncio.Queue[int]) -> None:
        while (at := await due.get()) < end:
            load.record(await send(load.body()), at, counted_from)

    if rps:
        due: asyncio.Queue[int] = asyncio.Queue()
        callers = [
            asyncio.ensure_future(open_loop(senders[i % len(senders)][0], due)) for i in range(concurrency)
        ]
        interval = int(1e9 / rps)
        at = start
        while at < end:
            await asyncio.sleep(max(0.0, (at - time.perf_counter_ns()) / 1e9))
            due.put_nowait(at)
            at += interval
        for _ in callers:
            due.put_nowait(end)
        await asyncio.gather(*callers)
    else:
        await asyncio.gather(*(closed_loop(senders[i % len(senders)][0]) for i in range(concurrency)))
    elapsed = (time.perf_counter_ns() - counted_from) / 1e9
    for _, close in senders:
        await close()
    print(
        json.dumps(
            {
                "count": len(load.latencies),
                "errors": load.errors,
                "seconds": elapsed,
                "latencies_us": load.latencies,
            }
        )
    )


if __name__ == "__main__":
    import uvloop

    args = sys.argv[1:]
    uvloop.run(
        main(
            args[0],
            args[1],
            args[2],
            args[3],
            int(args[4]),
            float(args[5]),
            float(args[6]) if len(args) > 6 else 0,
        )
    )
