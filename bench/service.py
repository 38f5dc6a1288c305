"""`make bench`: the service under load, next to the ceilings it can reach.

Starts its own PostgreSQL (durable: fsync on) or uses DATABASE_URL, starts the
service with the benchmark's echo method, and loads it from other processes
over loopback: per method and transport, at concurrency 1, 16 and 64,
requests/s, p50, p99 and server CPU µs per request (median of the rounds).
Ceilings measured in the same run: the database's (asyncpg INSERT … RETURNING
and primary-key SELECT, no service) and the framework's (the echo method on
the same servers). Then the scaling from one worker to all, and an open-loop
run at 80 % of each method's peak for p99.

    .venv/bin/python -m bench.service [--smoke] [--seconds 3] [--rounds 3] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.cpu import CpuMeter, CpuSplit, postmaster_pid
from bench.load_tools import Result, create_load, ensure_tools, h2load, median_result, wrk
from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.bench.v1 import echo_pb2
from server.auth.api_keys import hash_api_key, new_api_key
from server.crypto.keyring import generate_keyring_json
from server.embedded_pg import EmbeddedPostgres
from server.store import ApiKeyStore, connect_pool
from tests.db import create_database

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "gitpod.v1.RunnerConfigurationService"
METHODS = ("Create", "GetValue", "Get", "List", "Echo")
TRANSPORTS = ("grpc", "connect-proto", "connect-json")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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

    def pids(self) -> list[int]:
        started = re.search(r"started \d+ worker\(s\): ([\d, ]+)", self.log.read_text())
        workers = [int(p) for p in started.group(1).split(", ")] if started else []
        return [self.proc.pid, *workers]


@contextmanager
def service(fixture: Fixture, keyring: str, workers: int, folder: Path) -> Iterator[Service]:
    http, grpc_port = free_port(), free_port()
    log = folder / f"service-{workers}.log"
    env = {
        **os.environ,
        "DATABASE_URL": fixture.dsn,
        "HOSTAUTH_KEYRING": keyring,
        "HOSTAUTH_HTTP_ADDR": f"127.0.0.1:{http}",
        "HOSTAUTH_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "HOSTAUTH_BENCH_ECHO": "1",
        "HOSTAUTH_WORKERS": str(workers),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    svc = Service(proc, http, grpc_port, log)
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


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def request_for(method: str, fixture: Fixture) -> tuple[str, object]:
    if method == "Echo":
        return "hostauth.bench.v1.EchoService/Echo", echo_pb2.EchoRequest(payload="x" * 32)
    if method == "GetValue":
        return f"{SERVICE}/GetHostAuthenticationTokenValue", pb.GetHostAuthenticationTokenValueRequest(
            id=fixture.token_id
        )
    if method == "Get":
        return f"{SERVICE}/GetHostAuthenticationToken", pb.GetHostAuthenticationTokenRequest(
            id=fixture.token_id
        )
    return f"{SERVICE}/ListHostAuthenticationTokens", pb.ListHostAuthenticationTokensRequest(
        pagination={"page_size": 25},  # type: ignore[arg-type]
        filter=pb.ListHostAuthenticationTokensRequest.Filter(runner_id=fixture.runner_id),
    )


def create_lua(key: str, encoding: str, runner: str) -> str:
    """wrk script: every Create names a new host, so every one inserts."""
    subject = str(uuid.uuid4())
    if encoding == "json":
        body = (
            '\'{"runnerId": "'
            + runner
            + '", "subject": {"id": "'
            + subject
            + '", "principal": "PRINCIPAL_USER"}, '
            '"host": "git-\' .. host_n .. \'.example.com", '
            '"token": "gho_bench", "refreshToken": "ghr_bench"}\''
        )
    else:  # proto: length-delimited fields, all shorter than 128 bytes
        body = (
            "f(1, '" + runner + "') .. f(3, 'git-' .. host_n .. '.example.com') .. f(4, 'gho_bench') .. "
            "f(7, 'ghr_bench') .. f(10, f(1, '" + subject + "') .. string.char(0x10, 2))"
        )
    return f"""
local n = 0
local started = 0
-- thread:set makes `tid` a global of each thread's own Lua state; a local of
-- the same name here would shadow it, and both threads would send one host.
function setup(thread) started = started + 1; thread:set("tid", started) end
local function f(field, value) return string.char(field * 8 + 2, #value) .. value end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/{encoding}"
wrk.headers["Connect-Protocol-Version"] = "1"
wrk.headers["Authorization"] = "Bearer {key}"
request = function()
  n = n + 1
  local host_n = tid .. "-" .. n
  return wrk.format(nil, "/{SERVICE}/CreateHostAuthenticationToken", nil, {body})
end
"""


def run_once(
    svc: Service,
    fixture: Fixture,
    method: str,
    transport: str,
    clients: int,
    seconds: float,
    rps: float = 0,
    *,
    warm_up: bool = True,
) -> Result:
    """One timed run; with warm_up, 0.3 s of the same load first, not counted."""
    if method == "Create":
        return create_run(svc, fixture, transport, clients, seconds, rps, warm_up=warm_up)
    path, message = request_for(method, fixture)
    auth = {"authorization": f"Bearer {fixture.key}"}
    if transport == "grpc":
        body = grpc_frame(message.SerializeToString())  # type: ignore[attr-defined]
        headers = {"content-type": "application/grpc", "te": "trailers", **auth}
        url = f"http://127.0.0.1:{svc.grpc}/{path}"
        # Warm up in a run of its own: the DATA bytes of the measured run must
        # be its own for the success count below.
        if warm_up:
            h2load(url, body, headers, clients=clients, seconds=0.3, http1=False, rps=rps, warm_up=False)
        result = h2load(
            url, body, headers, clients=clients, seconds=seconds, http1=False, rps=rps, warm_up=False
        )
        return with_grpc_failures(result, grpc_response_bytes(svc, fixture, path, message))
    encoding = transport.split("-")[1]
    from google.protobuf import json_format

    body = message.SerializeToString() if encoding == "proto" else json_format.MessageToJson(message).encode()  # type: ignore[attr-defined,arg-type]
    headers = {"content-type": f"application/{encoding}", "connect-protocol-version": "1", **auth}
    return h2load(
        f"http://127.0.0.1:{svc.http}/{path}",
        body,
        headers,
        clients=clients,
        seconds=seconds,
        http1=True,
        rps=rps,
        warm_up=warm_up,
    )


def create_run(
    svc: Service, fixture: Fixture, transport: str, clients: int, seconds: float, rps: float, *, warm_up: bool
) -> Result:
    """Creates under a runner of their own, each a new host; the rows found
    under that runner afterwards must cover every success."""
    runner = str(uuid.uuid4())
    if transport == "grpc" or rps:
        target = f"127.0.0.1:{svc.grpc}" if transport == "grpc" else f"127.0.0.1:{svc.http}"
        result = create_load(
            target, transport, fixture.key, runner, clients=clients, seconds=seconds, rps=rps, warm_up=warm_up
        )
    else:
        if warm_up:  # wrk has no warm-up of its own
            wrk(
                f"http://127.0.0.1:{svc.http}",
                create_lua(fixture.key, transport.split("-")[1], str(uuid.uuid4())),
                clients=clients,
                seconds=0.3,
            )
        result = wrk(
            f"http://127.0.0.1:{svc.http}",
            create_lua(fixture.key, transport.split("-")[1], runner),
            clients=clients,
            seconds=seconds,
        )
    inserted = asyncio.run(count_rows(fixture.dsn, runner))
    succeeded = result.requests - result.errors
    if inserted < succeeded:  # a success that wrote nothing
        result = dataclasses.replace(result, errors=result.errors + succeeded - inserted)
    return result


async def count_rows(dsn: str, runner: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM host_authentication_tokens WHERE runner_id = $1", uuid.UUID(runner)
        )
        return count
    finally:
        await conn.close()


_response_bytes: dict[str, int] = {}


def grpc_response_bytes(svc: Service, fixture: Fixture, path: str, message: object) -> int:
    """The DATA bytes one successful response of this call carries (its
    length-prefixed message): h2load counts any HTTP 200 as a success, and a
    gRPC error is an HTTP 200 with no message, so the DATA bytes received
    tell how many calls really succeeded."""
    if path not in _response_bytes:
        import grpc

        async def probe() -> bytes:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc}") as channel:
                call = channel.unary_unary(f"/{path}")  # bytes in, bytes out
                reply: bytes = await call(
                    message.SerializeToString(),  # type: ignore[attr-defined]
                    metadata=(("authorization", f"Bearer {fixture.key}"),),
                )
                return reply

        _response_bytes[path] = 5 + len(asyncio.run(probe()))
    return _response_bytes[path]


def with_grpc_failures(result: Result, response_bytes: int) -> Result:
    # Calls still in flight when the window closed may have their message in
    # and not be counted: at most one per client errs on the lenient side.
    succeeded = result.data_bytes // response_bytes
    if succeeded >= result.requests:
        return result
    return dataclasses.replace(result, errors=result.errors + result.requests - succeeded)


async def checkpoint(dsn: str) -> None:
    """Write out what earlier rows left dirty (the Create rows insert tens of
    thousands of rows), so that a checkpoint does not land inside a later row."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass  # DATABASE_URL without the right: the rows share the server's checkpoints
    finally:
        await conn.close()


@dataclass
class Row:
    method: str
    transport: str
    clients: int
    result: Result
    cpu: CpuSplit


def measure(
    svc: Service,
    meter: CpuMeter,
    fixture: Fixture,
    method: str,
    transport: str,
    clients: int,
    seconds: float,
    rounds: int,
) -> Row:
    asyncio.run(checkpoint(fixture.dsn))
    # Warm up outside the CPU reading: what it reads is the timed rounds only.
    run_once(svc, fixture, method, transport, clients, 0.3, warm_up=False)
    before = meter.read()
    results = [
        run_once(svc, fixture, method, transport, clients, seconds, warm_up=False) for _ in range(rounds)
    ]
    cpu = meter.split_since(before, sum(r.requests for r in results))
    return Row(method, transport, clients, median_result(results), cpu)


@dataclass
class Ceiling:
    """The database alone, at one concurrency: rows or queries per second."""

    bare_insert: float  # a 3-column table with only its primary key
    token_insert: float  # a Create's row into the tokens table, all its indexes
    select: float  # a primary-key SELECT of a token


_TOKEN_INSERT = """
INSERT INTO host_authentication_tokens
    (id, runner_id, subject_id, subject_principal, host, source, scopes,
     token_ciphertext, refresh_token_ciphertext, token_kek_id, refresh_token_kek_id)
VALUES ($1, $2, $3, 1, 'git.example.com', 0, '{}', $4, $4, 'bench-1', 'bench-1')
RETURNING id
"""


async def db_ceiling(dsn: str, clients: int, seconds: float, select_id: str) -> Ceiling:
    """Plain asyncpg single-row statements at this concurrency, no service:
    one connection per client, each waiting for its answer (durable commits)."""
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    await conns[0].execute("CREATE TABLE IF NOT EXISTS bench_ceiling (id uuid PRIMARY KEY, a bytea, b bytea)")
    payload = os.urandom(120)  # about a sealed secret's size

    async def loop(
        conn: asyncpg.Connection, work: Callable[[asyncpg.Connection], object], until: float
    ) -> int:
        n = 0
        while time.perf_counter() < until:
            await work(conn)  # type: ignore[misc]
            n += 1
        return n

    rates = []
    for work in (
        lambda c: c.fetchval(
            "INSERT INTO bench_ceiling VALUES ($1, $2, $2) RETURNING id", uuid.uuid4(), payload
        ),
        lambda c: c.fetchval(_TOKEN_INSERT, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), payload),
        lambda c: c.fetchrow("SELECT * FROM host_authentication_tokens WHERE id = $1", uuid.UUID(select_id)),
    ):
        start = time.perf_counter()
        counts = await asyncio.gather(*(loop(c, work, start + seconds) for c in conns))
        rates.append(sum(counts) / (time.perf_counter() - start))
    for c in conns:
        await c.close()
    return Ceiling(*rates)


def seed(svc: Service, fixture: Fixture) -> None:
    """One token to read, and 30 under one runner for a List page of 25."""
    import grpc

    from gitpod.v1 import runner_configuration_pb2_grpc as pb_grpc

    async def go() -> str:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc}") as channel:
            stub = pb_grpc.RunnerConfigurationServiceStub(channel)
            md = (("authorization", f"Bearer {fixture.key}"),)
            ids = []
            for i in range(30):
                req = pb.CreateHostAuthenticationTokenRequest(
                    runner_id=fixture.runner_id,
                    host=f"seed-{i}.example.com",
                    token="gho_seed",
                    refresh_token="ghr_seed",
                )
                ids.append((await stub.CreateHostAuthenticationToken(req, metadata=md)).token.id)
            return ids[0]

    fixture.token_id = asyncio.run(go())


def table(rows: list[Row], ceilings: dict[int, Ceiling]) -> str:
    echo = {(r.transport, r.clients): r.result.rps for r in rows if r.method == "Echo"}
    lines = [
        "CPU µs per request: svc = the service, pg = PostgreSQL, load = the load tool, "
        "idle = share of the machine left idle",
        f"{'method':<9}{'transport':<15}{'c':>3}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'svc':>6}{'pg':>5}{'load':>5}{'idle':>6}  ratio",
    ]
    for r in rows:
        ceiling = ceilings[r.clients]
        ratio = ""
        if r.method == "Create":
            ratio = (
                f"{r.result.rps / ceiling.token_insert:.2f} x token-table insert, "
                f"{r.result.rps / ceiling.bare_insert:.2f} x bare insert"
            )
        elif r.method in ("GetValue", "Get", "List") and echo.get((r.transport, r.clients)):
            ratio = f"{r.result.rps / echo[(r.transport, r.clients)]:.2f} x echo"
            if r.method == "Get":
                ratio += f", {r.result.rps / ceiling.select:.2f} x db select"
        pg = "-" if r.cpu.postgres_us is None else f"{r.cpu.postgres_us:.0f}"
        lines.append(
            f"{r.method:<9}{r.transport:<15}{r.clients:>3}{r.result.rps:>8.0f}{r.result.p50_ms:>8.2f}"
            f"{r.result.p99_ms:>8.2f}{r.result.errors:>7}{r.cpu.service_us:>6.0f}{pg:>5}"
            f"{r.cpu.load_us:>5.0f}{r.cpu.idle_share:>6.0%}  {ratio}"
        )
    lines.append("")
    for clients, c in sorted(ceilings.items()):
        lines.append(
            f"database ceiling c={clients}: INSERT … RETURNING into the tokens table {c.token_insert:.0f}/s, "
            f"into a bare table {c.bare_insert:.0f}/s; PK SELECT {c.select:.0f}/s"
        )
    return "\n".join(lines)


def cpu_line(label: str, row: Row) -> str:
    c = row.cpu
    pg = "PostgreSQL -" if c.postgres_us is None else f"PostgreSQL {c.postgres_us:.0f}"
    return (
        f"  {label}: {row.result.rps:.0f}/s; CPU µs per request: service {c.service_us:.0f}, {pg}, "
        f"load tool {c.load_us:.0f}, other {c.other_us:.0f}; machine idle {c.idle_share:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a short run that prints every row")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    seconds, rounds = (0.5, 1) if args.smoke else (args.seconds, args.rounds)
    concurrencies = (1, 16, 64)
    ensure_tools()
    keyring = generate_keyring_json("bench-1")
    folder = Path(tempfile.mkdtemp(prefix="hostauth-bench-"))
    folder.chmod(0o755)
    pg = None
    admin = os.environ.get("DATABASE_URL")
    if not admin:
        pg = EmbeddedPostgres(folder / "pgdata", fsync=True)  # durable commits, like production
        admin = pg.start()
    try:
        fixture = asyncio.run(setup(admin))
        print(f"hostauth bench: {args.workers} worker(s), {seconds}s x {rounds} round(s) per row", flush=True)
        rows: list[Row] = []
        postmaster = postmaster_pid(pg.data_dir) if pg is not None else None
        with service(fixture, keyring, args.workers, folder) as svc:
            meter = CpuMeter(svc.pids, postmaster)
            seed(svc, fixture)
            for method in METHODS:
                for transport in TRANSPORTS:
                    for clients in concurrencies:
                        rows.append(measure(svc, meter, fixture, method, transport, clients, seconds, rounds))
            ceilings = {
                c: asyncio.run(db_ceiling(fixture.dsn, c, seconds, fixture.token_id)) for c in concurrencies
            }
            print(table(rows, ceilings), flush=True)
            print("\nopen loop at 80 % of the peak (c=16):")
            for row in rows:
                if row.clients == 16 and row.result.rps > 0:
                    asyncio.run(checkpoint(fixture.dsn))
                    open_loop = run_once(
                        svc, fixture, row.method, row.transport, 16, seconds, rps=0.8 * row.result.rps
                    )
                    due = (
                        f"  (from when due: {open_loop.p99_from_due_ms:.2f} ms)"
                        if open_loop.p99_from_due_ms
                        else ""
                    )
                    print(
                        f"  {row.method:<9}{row.transport:<15}{open_loop.rps:>8.0f} req/s"
                        f"  p99 {open_loop.p99_ms:.2f} ms  errors {open_loop.errors}{due}"
                    )
            all_workers = next(
                r for r in rows if (r.method, r.transport, r.clients) == ("GetValue", "connect-proto", 64)
            )
        if args.workers > 1:
            with service(fixture, keyring, 1, folder) as one:
                single = measure(
                    one,
                    CpuMeter(one.pids, postmaster),
                    fixture,
                    "GetValue",
                    "connect-proto",
                    64,
                    seconds,
                    rounds,
                )
            print(
                f"\nscaling, GetValue over Connect proto at c=64: 1 worker {single.result.rps:.0f}/s, "
                f"{args.workers} workers {all_workers.result.rps:.0f}/s = "
                f"{all_workers.result.rps / max(single.result.rps, 1):.2f}x"
            )
            print(cpu_line("1 worker", single))
            print(cpu_line(f"{args.workers} workers", all_workers))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
