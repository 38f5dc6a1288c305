"""The service as its own process, as `make run` starts it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path
    metrics_port: int = 0

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text()


def start_server(
    log_dir: Path, env: Mapping[str, str], *, args: tuple[str, ...] = (), ports: tuple[int, int] | None = None
) -> ServerProcess:
    http_port, grpc_port = ports or (free_port(), free_port())
    metrics_port = free_port()
    log = log_dir / f"server-{http_port}.log"
    full_env = {
        **os.environ,
        "HOSTAUTH_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "HOSTAUTH_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "HOSTAUTH_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
        **env,  # its addresses, when it names them, on the same ports
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hostauth", "serve", *args],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(proc, http_port, grpc_port, log, metrics_port)


async def wait_serving(
    server: ServerProcess, within_s: float = 60, *, tls: grpc.ChannelCredentials | None = None
) -> None:
    """Until gRPC health says SERVING (so migrations have run)."""
    deadline = asyncio.get_running_loop().time() + within_s
    target = f"127.0.0.1:{server.grpc_port}"
    channel = grpc.aio.secure_channel(target, tls) if tls is not None else grpc.aio.insecure_channel(target)
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if server.proc.poll() is not None:
                raise AssertionError(f"server exited {server.proc.returncode}:\n{server.log.read_text()}")
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"server not serving after {within_s}s:\n{server.log.read_text()}")
            await asyncio.sleep(0.1)


async def failed_start(env: Mapping[str, str], status: int) -> str:
    """`hostauth serve` with env added, which must stop at once with `status`
    and one line on stderr: that line."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hostauth", "serve"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stdout
    return lines[0]
