"""The service as separate processes: workers, ports, start-up refusals and stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from uuid import uuid4

import httpx
import pytest

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.runtime.supervisor import MAX_RESTARTS, RESTART_WINDOW_S
from hostauth.store import ApiKeyStore, connect_pool
from hostauth.transport.calls import STOPPED_MID_CALL
from hostauth.transport.http_server import SHUTDOWN_GRACE_S
from tests.support.cli import run_cli
from tests.support.db import create_database, with_database
from tests.support.own_postgres import own_postgres
from tests.support.processes import ServerProcess, free_port, start_server, wait_serving
from tests.support.requests import create_request
from tests.support.serving import TEST_KEYRING_JSON, make_api_key, service_account_key
from tests.support.wire import ConnectWire, GrpcWire, RpcError, Wire


def _worker_pids(server: ServerProcess) -> list[int]:
    """The worker processes the supervisor says it started."""
    started = re.search(r"started \d+ worker\(s\): ([\d, ]+)", server.log.read_text())
    assert started is not None
    return [int(p) for p in started.group(1).split(", ")]


# A process on a single-CPU machine is pinned by nature, and batch-scheduled.
UNPINNED_POLICY = os.SCHED_OTHER if len(os.sched_getaffinity(0)) > 1 else os.SCHED_BATCH


T = TypeVar("T")


def _per_thread(pid: int, query: Callable[[int], T]) -> dict[int, T]:
    """query(thread id) for each thread of a process; grpc starts and ends
    threads of its own, so one listed may be gone when asked."""
    found = {}
    for thread in map(int, os.listdir(f"/proc/{pid}/task")):
        with contextlib.suppress(ProcessLookupError):
            found[thread] = query(thread)
    return found


def _policies(pid: int) -> dict[int, int]:
    """Each thread's scheduling policy, by thread id."""
    return _per_thread(pid, os.sched_getscheduler)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _serving(admin_dsn: str, log_dir: Path, workers: int, **env: str) -> tuple[str, ServerProcess]:
    """A fresh database and `serve --workers N` on it, env added."""
    dsn = await create_database(admin_dsn)
    env = {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON, **env}
    return dsn, start_server(log_dir, env, args=("--workers", str(workers)))


async def _creates_on_new_connections(wire: Wire, key: str) -> None:
    """Creates, each on a new connection: the kernel spreads them over the workers."""
    for _ in range(6):
        fresh = wire.with_credential(key)
        req = create_request()
        answer = await fresh.call(
            "CreateHostAuthenticationToken", req, pb.CreateHostAuthenticationTokenResponse
        )
        assert answer.token.runner_id == req.runner_id
    await wire.close()  # type: ignore[attr-defined]


async def test_workers_share_the_ports_and_die_with_the_supervisor(admin_dsn: str, log_dir: Path) -> None:
    dsn, server = await _serving(admin_dsn, log_dir, 3, HOSTAUTH_WORKERS="1")
    try:
        await wait_serving(server)
        pool = await connect_pool(dsn, min_size=1, max_size=1)
        try:
            key = await make_api_key(ApiKeyStore(pool), identity_pb2.PRINCIPAL_SERVICE_ACCOUNT, uuid4())
            for _ in range(200):  # every worker is up and has said so (slow beside the suite's load)
                async with pool.acquire() as conn:
                    live = await conn.fetchval("SELECT count(*) FROM replicas")
                if live == 3:
                    break
                await asyncio.sleep(0.1)
            assert live == 3
        finally:
            await pool.close()
        wires = [
            GrpcWire(f"127.0.0.1:{server.grpc_port}", key),
            ConnectWire(f"http://127.0.0.1:{server.http_port}", "proto", credential=key),
        ]
        for wire in wires:
            await _creates_on_new_connections(wire, key)
        pids = _worker_pids(server)
        assert len(pids) == 3
        assert all(_alive(pid) for pid in pids)
        # Each worker knows how many share the database, whatever
        # HOSTAUTH_WORKERS or the CPU count say, and takes one batch of a kind.
        # (A worker's replica row, seen above, comes before its line here.)
        for _ in range(200):
            if server.log.read_text().count("database batches of a kind in flight: 1\n") == 3:
                break
            await asyncio.sleep(0.1)
        assert server.log.read_text().count("database batches of a kind in flight: 1\n") == 3
        # Pinned in turn to the CPUs the service may use, every thread too.
        allowed = sorted(os.sched_getaffinity(0))
        for i, pid in enumerate(pids):
            affinities = _per_thread(pid, os.sched_getaffinity)
            assert affinities
            assert all(cpus == {allowed[i % len(allowed)]} for cpus in affinities.values())
        # Pinned, the event loop and the HTTP server's threads run under
        # SCHED_BATCH; grpc's threads, started before, keep the normal policy.
        assert server.log.read_text().count("threads run under SCHED_BATCH") == 3
        for pid in pids:
            policies = _policies(pid)
            assert policies.pop(pid) == os.SCHED_BATCH  # the event loop's thread
            assert os.SCHED_BATCH in policies.values()
            assert os.SCHED_OTHER in policies.values()
        server.proc.kill()  # SIGKILL: the supervisor gets no chance to clean up
        server.proc.wait()
        for _ in range(100):
            if not any(_alive(pid) for pid in pids):
                break
            await asyncio.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "workers outlived their supervisor"
    finally:
        if server.proc.poll() is None:
            server.stop()


def _listening(port: int, *, reuse_port: bool) -> socket.socket:
    """Another server on the port, of this same user."""
    sock = socket.socket()
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


async def _exits(server: ServerProcess, within_s: float = 30) -> tuple[int, str]:
    for _ in range(int(within_s * 10)):
        if server.proc.poll() is not None:
            return server.proc.returncode, server.log.read_text()
        await asyncio.sleep(0.1)
    log = server.stop()
    raise AssertionError(f"still running after {within_s}s:\n{log}")


@pytest.mark.parametrize("taken", ["http", "grpc"])
@pytest.mark.parametrize("workers", [2, 1])
async def test_a_taken_port_stops_the_start(admin_dsn: str, log_dir: Path, taken: str, workers: int) -> None:
    """Workers bind with SO_REUSEPORT: beside another server of the same user
    they took a share of its connections without a word. A lone process hung
    after the refusal (the pool waited for the revocation watch's connection)."""
    ports = (free_port(), free_port())
    port = ports[0] if taken == "http" else ports[1]
    with _listening(port, reuse_port=workers > 1):
        dsn = await create_database(admin_dsn)
        env = {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON}
        code, log = await _exits(start_server(log_dir, env, args=("--workers", str(workers)), ports=ports))
    assert code == 1
    assert log.splitlines()[-1].startswith(f"hostauth: cannot listen on 127.0.0.1:{port}")
    assert "started" not in log  # no worker was started


async def test_a_database_that_does_not_answer_stops_the_start_in_time() -> None:
    """It accepts the connection and says nothing (a black-holed proxy, say):
    the start waited on it for a minute, then printed an empty message."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        dsn = f"postgresql://hostauth@127.0.0.1:{silent.getsockname()[1]}/hostauth"
        env = {"HOSTAUTH_KEYRING": TEST_KEYRING_JSON, "HOSTAUTH_DB_TIMEOUT_S": "0.5"}
        started = time.monotonic()
        done = await run_cli(dsn, "serve", env=env)
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "hostauth: the database did not answer within 0.5 s (HOSTAUTH_DB_TIMEOUT_S)"
    )


async def test_a_database_that_refuses_stops_the_start_with_its_reason(admin_dsn: str) -> None:
    missing = with_database(admin_dsn, f"no_such_db_{uuid4().hex}")
    done = await run_cli(missing, "api-keys", "list", env={"HOSTAUTH_KEYRING": TEST_KEYRING_JSON})
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith("hostauth: the database refused: database ")
    assert "does not exist" in last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_call_that_never_finishes_does_not_hold_the_stop(
    admin_dsn: str, log_dir: Path, workers: int
) -> None:
    """A client that sent half its request and went quiet held a stopping
    server for ever (granian waits for open calls): now for the grace."""
    _, server = await _serving(admin_dsn, log_dir, workers)
    try:
        await wait_serving(server)
        with socket.create_connection(("127.0.0.1", server.http_port)) as half:
            half.sendall(
                b"POST /gitpod.v1.RunnerConfigurationService/ListHostAuthenticationTokens HTTP/1.1\r\n"
                b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            await asyncio.sleep(0.5)
            started = time.monotonic()
            server.proc.terminate()
            code, log = await _exits(server, within_s=15)
            took = time.monotonic() - started
            half.settimeout(1)
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := half.recv(65536):
                    answer += chunk
    finally:
        server.stop()
    assert code == 0
    assert SHUTDOWN_GRACE_S <= took < SHUTDOWN_GRACE_S + 4
    # Answered as a Connect error a client retries (it was a non-standard
    # 499), and no traceback from granian's stop, which was cut off mid-way.
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), answer
    assert json.loads(body) == {"code": "unavailable", "message": STOPPED_MID_CALL}
    assert f"stopped 1 HTTP call(s) still sending their requests after {SHUTDOWN_GRACE_S:g} s" in log
    assert "Traceback" not in log
    assert "killed" not in log  # by the supervisor: the workers stopped themselves


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(c) for c in f.read().split())  # a thread gone since the listing is skipped
    return found


async def _new_worker(server: ServerProcess, known: set[int]) -> int:
    """A worker the supervisor started that is not among `known`."""
    for _ in range(100):
        fresh = _children(server.proc.pid) - known
        if fresh:
            return fresh.pop()
        await asyncio.sleep(0.1)
    raise AssertionError("no new worker:\n" + server.log.read_text())


async def test_a_worker_that_dies_is_started_again(admin_dsn: str, log_dir: Path) -> None:
    """One worker's crash stopped the whole service."""
    dsn, server = await _serving(admin_dsn, log_dir, 2)
    try:
        await wait_serving(server)
        first = _children(server.proc.pid)
        assert len(first) == 2
        dead = min(first)
        os.kill(dead, signal.SIGKILL)
        again = await _new_worker(server, first)
        for _ in range(100):  # until it serves too
            if server.log.read_text().count("serving Connect on") == 3:
                break
            await asyncio.sleep(0.1)
        assert _children(server.proc.pid) == (first - {dead}) | {again}
        assert f"worker {dead} exited with -9; started worker {again}" in server.log.read_text()
        key = await service_account_key(dsn)
        await _creates_on_new_connections(
            ConnectWire(f"http://127.0.0.1:{server.http_port}", "proto", credential=key), key
        )
        assert server.proc.poll() is None
    finally:
        server.stop()


async def test_a_worker_replaced_while_the_database_is_out_serves_and_recovers(log_dir: Path) -> None:
    """Each replacement of a worker killed during an outage exited at start
    (the database's socket missing), five restarts passed within the minute
    and the supervisor gave up: nothing listened when the database came back."""
    with own_postgres() as pg:
        dsn = await create_database(pg.dsn)
        env = {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON}
        server = start_server(log_dir, env, args=("--workers", "2"))
        try:
            await wait_serving(server)
            key = await service_account_key(dsn)
            pg.stop(keep_address=True)
            first = _children(server.proc.pid)
            dead = min(first)
            os.kill(dead, signal.SIGKILL)
            again = await _new_worker(server, first)
            await asyncio.sleep(3)  # long enough for a replacement to fail its start, and more
            assert server.proc.poll() is None, server.log.read_text()
            assert _children(server.proc.pid) == (first - {dead}) | {again}
            url = f"http://127.0.0.1:{server.http_port}"
            for _ in range(6):  # each on a new connection: both workers answer
                fresh = ConnectWire(url, "proto", credential=key)
                with pytest.raises(RpcError) as refused:
                    await fresh.call(
                        "CreateHostAuthenticationToken",
                        create_request(),
                        pb.CreateHostAuthenticationTokenResponse,
                    )
                assert refused.value.code == "unavailable"
                await fresh.close()  # type: ignore[attr-defined]
            pg.start()
            for _ in range(150):  # the replacement retries within 5 s
                if "the database is back: serving" in server.log.read_text():
                    break
                await asyncio.sleep(0.1)
            assert "the database is back: serving" in server.log.read_text()
            await _creates_on_new_connections(ConnectWire(url, "proto", credential=key), key)
            assert _children(server.proc.pid) == (first - {dead}) | {again}
        finally:
            server.stop()


async def test_workers_that_keep_dying_stop_the_service(admin_dsn: str, log_dir: Path) -> None:
    _, server = await _serving(admin_dsn, log_dir, 2)
    try:
        await wait_serving(server)
        killed = _children(server.proc.pid)
        os.kill(min(killed), signal.SIGKILL)
        for _ in range(MAX_RESTARTS):  # each replacement dies as it starts
            pid = await _new_worker(server, killed)
            killed.add(pid)
            os.kill(pid, signal.SIGKILL)
        code, log = await _exits(server)
    finally:
        server.stop()
    assert code == 1
    assert f"after {MAX_RESTARTS} restarts within {RESTART_WINDOW_S:g} s: stopping the others" in log
    assert log.count("; started worker ") == MAX_RESTARTS


async def test_a_lone_process_keeps_all_the_batches_in_flight(admin_dsn: str, log_dir: Path) -> None:
    _, server = await _serving(admin_dsn, log_dir, 1, HOSTAUTH_WORKERS="4")
    try:
        await wait_serving(server)
        assert os.sched_getscheduler(server.proc.pid) == UNPINNED_POLICY
    finally:
        log = server.stop()
    assert "started" not in log  # no supervisor
    assert "database batches of a kind in flight: 2\n" in log
    # Its threads may use every CPU: none is made a batch thread.
    assert ("SCHED_BATCH" in log) is (UNPINNED_POLICY == os.SCHED_BATCH)


async def test_workers_are_left_unpinned_when_asked(admin_dsn: str, log_dir: Path) -> None:
    _, server = await _serving(admin_dsn, log_dir, 2, HOSTAUTH_PIN_WORKERS="off")
    try:
        await wait_serving(server)
        for pid in _worker_pids(server):
            assert os.sched_getaffinity(pid) == os.sched_getaffinity(0)
            assert os.sched_getscheduler(pid) == UNPINNED_POLICY  # not pinned: no batch threads
    finally:
        server.stop()


async def test_pinned_workers_keep_the_normal_policy_when_asked(admin_dsn: str, log_dir: Path) -> None:
    _, server = await _serving(admin_dsn, log_dir, 2, HOSTAUTH_BATCH_SCHEDULING="off")
    try:
        await wait_serving(server)
        for pid in _worker_pids(server):
            assert len(os.sched_getaffinity(pid)) == 1
            assert set(_policies(pid).values()) == {os.SCHED_OTHER}
    finally:
        log = server.stop()
    assert "SCHED_BATCH" not in log


async def test_new_connections_while_workers_start_are_not_reset(admin_dsn: str, log_dir: Path) -> None:
    """Each worker binds the HTTP port before its ASGI server takes over. Had
    that socket listened, it would have taken a share of new connections in a
    SO_REUSEPORT group and reset them when it closed for granian's own."""
    _, server = await _serving(admin_dsn, log_dir, 3)
    url = (
        f"http://127.0.0.1:{server.http_port}/gitpod.v1.RunnerConfigurationService/GetHostAuthenticationToken"
    )
    answered, reset = 0, 0
    all_up_at: float | None = None
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + 60
        # A new connection per request, from before the first worker serves
        # until a second after the last one said it does.
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while loop.time() < deadline and (all_up_at is None or loop.time() < all_up_at + 1):
                if all_up_at is None and server.log.read_text().count("serving Connect") == 3:
                    all_up_at = loop.time()
                try:
                    response = await client.post(
                        url, content=b"{}", headers={"content-type": "application/json"}
                    )
                    assert response.status_code == 401  # no credential: a whole answer
                    answered += 1
                except httpx.ConnectError:  # nobody listening yet
                    await asyncio.sleep(0.005)
                except (httpx.ReadError, httpx.RemoteProtocolError):  # accepted, then reset
                    reset += 1
        assert all_up_at is not None
        assert answered > 0
        assert reset == 0
    finally:
        server.stop()
