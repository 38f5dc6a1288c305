"""What `make bench` runs against: a database with an API key, the service
(its own processes, with the benchmark's echo method) and the tokens it reads."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.api_keys import hash_api_key, new_api_key
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from hostauth.store import ApiKeyStore, connect_pool
from tests.support.db import create_database
from tests.support.processes import ROOT, free_port


@contextmanager
def database_server(prefix: str) -> Iterator[tuple[str, Path]]:
    """DATABASE_URL's server, else a private embedded one (durable: fsync on,
    as in production), and a folder for the run's files; both gone after."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)  # reachable by the unprivileged user PostgreSQL runs as under root
    try:
        admin = os.environ.get("DATABASE_URL")
        if admin:
            yield admin, folder
        else:
            with EmbeddedPostgres(folder / "pgdata", fsync=True) as pg:
                yield pg.dsn, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Fixture:
    dsn: str
    key: str
    token_id: str
    runner_id: str


async def setup(admin_dsn: str) -> Fixture:
    dsn = await create_database(admin_dsn)
    pool = await connect_pool(dsn)
    try:
        key = new_api_key()
        await ApiKeyStore(pool).create(
            hash_api_key(key), identity_pb2.PRINCIPAL_SERVICE_ACCOUNT, uuid.uuid4(), ("secrets:read",)
        )
    finally:
        await pool.close()
    return Fixture(dsn, key, "", str(uuid.uuid4()))


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    http: int
    grpc: int
    log: Path
    scheme: str = "http"  # https: both ports serve TLS

    def pids(self) -> list[int]:
        started = re.search(r"started \d+ worker\(s\): ([\d, ]+)", self.log.read_text())
        workers = [int(p) for p in started.group(1).split(", ")] if started else []
        return [self.proc.pid, *workers]


@contextmanager
def service(
    fixture: Fixture,
    keyring: str,
    workers: int,
    folder: Path,
    *,
    command: Sequence[str] = (sys.executable, "-m", "bench.server", "serve"),
    cwd: Path = ROOT,
    name: str = "service",
    ports: tuple[int, int] | None = None,
    tls: tuple[Path, Path] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Service]:
    """The service with the bench's echo (bench/server.py); `command` and
    `cwd` start another checkout's instead (bench/ab.py); `ports` (HTTP,
    gRPC) those of one stopped before, else free ones. Metrics are on (the
    default), on a port of their own; extra_env adds to its environment."""
    http, grpc_port = ports or (free_port(), free_port())
    log = folder / f"{name}-{workers}.log"
    env = {
        **os.environ,
        "DATABASE_URL": fixture.dsn,
        "HOSTAUTH_KEYRING": keyring,
        "HOSTAUTH_HTTP_ADDR": f"127.0.0.1:{http}",
        "HOSTAUTH_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "HOSTAUTH_WORKERS": str(workers),
        "HOSTAUTH_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        **(extra_env or {}),
    }
    if tls is not None:  # a certificate and key: TLS on both ports
        env |= {"HOSTAUTH_TLS_CERT_FILE": str(tls[0]), "HOSTAUTH_TLS_KEY_FILE": str(tls[1])}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    svc = Service(proc, http, grpc_port, log, "https" if tls is not None else "http")
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("serving Connect") < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield svc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def seed(svc: Service, fixture: Fixture) -> None:
    """One token to read, and 30 under one runner for a List page of 25."""
    import grpc

    async def go() -> str:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc}") as channel:
            create = channel.unary_unary(
                "/gitpod.v1.RunnerConfigurationService/CreateHostAuthenticationToken",
                request_serializer=pb.CreateHostAuthenticationTokenRequest.SerializeToString,
                response_deserializer=pb.CreateHostAuthenticationTokenResponse.FromString,
            )
            md = (("authorization", f"Bearer {fixture.key}"),)
            ids = []
            for i in range(30):
                req = pb.CreateHostAuthenticationTokenRequest(
                    runner_id=fixture.runner_id,
                    host=f"seed-{i}.example.com",
                    token="gho_seed",
                    refresh_token="ghr_seed",
                )
                reply: pb.CreateHostAuthenticationTokenResponse = await create(req, metadata=md)
                ids.append(reply.token.id)
            return ids[0]

    fixture.token_id = asyncio.run(go())
