"""A gRPC Create load for `make bench`: every request a new (runner, subject,
host), which h2load's fixed body cannot do. Prints one JSON line:
{"count", "errors", "seconds", "latencies_us": [...]}.

    python -m bench.grpc_create_load TARGET CREDENTIAL CONCURRENCY SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import grpc

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_configuration_pb2_grpc as pb_grpc


async def main(target: str, credential: str, concurrency: int, seconds: float) -> None:
    metadata = (("authorization", f"Bearer {credential}"),)
    channel = grpc.aio.insecure_channel(target)
    stub = pb_grpc.RunnerConfigurationServiceStub(channel)
    subject = identity_pb2.Subject(id=str(uuid.uuid4()), principal=identity_pb2.PRINCIPAL_USER)
    latencies: list[int] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal errors
        runner = str(uuid.uuid4())
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            req = pb.CreateHostAuthenticationTokenRequest(
                runner_id=runner,
                subject=subject,
                host=f"git-{n}.example.com",
                token="gho_bench",
                refresh_token="ghr_bench",
            )
            started = time.perf_counter_ns()
            try:
                await stub.CreateHostAuthenticationToken(req, metadata=metadata)
                latencies.append((time.perf_counter_ns() - started) // 1000)
            except grpc.aio.AioRpcError:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await channel.close()
    print(
        json.dumps({"count": len(latencies), "errors": errors, "seconds": elapsed, "latencies_us": latencies})
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
