"""Several serving processes on the same ports, under one supervisor.

The supervisor prepares the database once (migrations, key checks, the dev
API key), then starts `workers` copies of `serve --worker`. Each worker has
its own event loop and database pool and binds the ports with SO_REUSEPORT,
so the kernel spreads connections over all cores; worker i is pinned to the
i-th CPU (HOSTAUTH_PIN_WORKERS=off leaves them free). Workers die with the
supervisor (parent-death signal). One that dies is started again, in its
place and on its CPU; if they die faster than that helps (`MAX_RESTARTS`
within `RESTART_WINDOW_S`: a database gone, say), the supervisor stops the
rest and exits non-zero, for the process manager above it to act.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping

from hostauth.config import Address, Settings
from hostauth.keys.loading import DEV_KEYRING_NAME
from hostauth.runtime.cpus import cpu_budget
from hostauth.runtime.embedded_pg import die_with_parent
from hostauth.runtime.worker import EXIT_ENDED_CALLS
from hostauth.telemetry.exposition import SharedMetrics

log = logging.getLogger(__name__)

# A worker's stop takes its grace, then a moment to close its pool.
STOP_WAIT_S = 10.0

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def worker_cpus(workers: int) -> list[int | None]:
    """The CPU each worker is pinned to: the ones this process may use, in
    turn: pinned, workers do not migrate and evict each other's caches
    (docs/benchmarks.md, decisions). Nothing to pin to on a single CPU."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return [None] * workers
    return [allowed[i % len(allowed)] for i in range(workers)]


def _worker_setup(cpu: int | None) -> Callable[[], None]:
    die = die_with_parent(signal.SIGTERM)

    def preexec() -> None:
        die()
        if cpu is not None:  # before the worker starts a thread: all of them inherit it
            os.sched_setaffinity(0, {cpu})

    return preexec


def ensure_ports_free(*addrs: Address) -> None:
    """OSError naming the first address another process listens on. Workers
    bind with SO_REUSEPORT, and so would join the ports of another server of
    the same user, unnoticed, and take a share of its traffic: so the
    supervisor binds each port plainly first, which that refuses."""
    for addr in addrs:
        if addr.port == 0:
            continue
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr.host, addr.port))
            except OSError as exc:
                raise OSError(f"cannot listen on {addr}: {exc.strerror}") from None


def _start_worker(module: str, env: Mapping[str, str], cpu: int | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 # our own interpreter, and a module of ours
        [sys.executable, "-m", module, "serve", "--worker"],
        env=env,
        preexec_fn=_worker_setup(cpu),  # before threads start
    )


class _Restarts:
    """Restarts within the last window: too many, and restarting is no cure."""

    def __init__(self) -> None:
        self._at: deque[float] = deque()

    def allowed(self) -> bool:
        now = time.monotonic()
        while self._at and now - self._at[0] > RESTART_WINDOW_S:
            self._at.popleft()
        if len(self._at) >= MAX_RESTARTS:
            return False
        self._at.append(now)
        return True


def supervise(
    settings: Settings, dsn: str, *, module: str = "hostauth", shared: SharedMetrics | None = None
) -> int:
    """Run `settings.workers` workers (`python -m <module> serve --worker`) until
    SIGTERM or SIGINT, or until they die too often; the exit status: 1 when
    they died too often, EXIT_ENDED_CALLS when the stop had to end calls or
    kill a worker. `shared`: the metrics the workers write for /metrics."""
    # The workers learn how many they are (serve --workers may differ from the
    # environment): each takes its share of the database's batches.
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "HOSTAUTH_WORKERS": str(settings.workers),
        # Off when the CPU quota is shared (cli/main.py), for the workers too.
        "HOSTAUTH_BATCH_SCHEDULING": "on" if settings.batch_scheduling else "off",
    }
    if settings.dev and settings.keyring_json is None and settings.keyring_file is None:
        env["HOSTAUTH_KEYRING_FILE"] = str((settings.data_dir / DEV_KEYRING_NAME).absolute())
    children: list[subprocess.Popen[bytes]] = []
    if shared is not None:  # the workers write their metrics for this process to sum (/metrics)
        shared.workers = lambda: [(str(i), c.pid) for i, c in enumerate(children)]
        env |= shared.env()
    return _supervise(settings, env, module, children, shared)


def _worker_env(env: Mapping[str, str], index: int) -> dict[str, str]:
    return {**env, "HOSTAUTH_WORKER_INDEX": str(index)}


def _supervise(
    settings: Settings,
    env: Mapping[str, str],
    module: str,
    children: list[subprocess.Popen[bytes]],
    shared: SharedMetrics | None,
) -> int:
    cpus = worker_cpus(settings.workers) if settings.pin_workers else [None] * settings.workers
    children.extend(_start_worker(module, _worker_env(env, i), cpu) for i, cpu in enumerate(cpus))
    log.info(
        "started %d worker(s): %s (%s; %s)",
        len(children),
        ", ".join(str(c.pid) for c in children),
        cpu_budget().describe(),
        "each pinned to a CPU" if any(cpu is not None for cpu in cpus) else "not pinned",
    )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    restarts = _Restarts()
    while not stopping:
        for i, child in enumerate(children):
            if stopping or child.poll() is None:
                continue
            if shared is not None:
                shared.worker_gone(child.pid)
            if not restarts.allowed():
                log.error(
                    "worker %d exited with %s after %d restarts within %g s: stopping the others",
                    child.pid,
                    child.returncode,
                    MAX_RESTARTS,
                    RESTART_WINDOW_S,
                )
                code, stopping = 1, True
                break
            children[i] = _start_worker(module, _worker_env(env, i), cpus[i])
            log.error(
                "worker %d exited with %s; started worker %d", child.pid, child.returncode, children[i].pid
            )
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    wait_s = settings.drain_delay_s + STOP_WAIT_S
    deadline = time.monotonic() + wait_s
    for child in children:
        try:
            status = child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop within %g s of being asked: killed", child.pid, wait_s)
            child.kill()
            child.wait()
            code = code or EXIT_ENDED_CALLS
            continue
        if status == EXIT_ENDED_CALLS:
            code = code or EXIT_ENDED_CALLS
    return code
