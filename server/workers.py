"""Several serving processes on the same ports, under one supervisor.

The supervisor prepares the database once (migrations, key checks, the dev
API key), then starts `workers` copies of `serve --worker`. Each worker has
its own event loop and database pool and binds the ports with SO_REUSEPORT,
so the kernel spreads connections over all cores. Workers die with the
supervisor (parent-death signal); if one dies, the supervisor stops the rest
and exits non-zero, for the process manager above it to restart.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from server.config import Settings
from server.embedded_pg import die_with_parent
from server.keys import DEV_KEYRING_NAME

log = logging.getLogger(__name__)


def supervise(settings: Settings, dsn: str) -> int:
    env = {**os.environ, "DATABASE_URL": dsn}
    if settings.dev and settings.keyring_json is None and settings.keyring_file is None:
        env["HOSTAUTH_KEYRING_FILE"] = str((settings.data_dir / DEV_KEYRING_NAME).absolute())
    children = [
        subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-m", "server", "serve", "--worker"],
            env=env,
            preexec_fn=die_with_parent(signal.SIGTERM),  # before threads start
        )
        for _ in range(settings.workers)
    ]
    log.info("started %d worker(s): %s", len(children), ", ".join(str(c.pid) for c in children))
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        dead = [c for c in children if c.poll() is not None]
        if dead:
            log.error("worker %d exited with %s; stopping the others", dead[0].pid, dead[0].returncode)
            code = 1
            break
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return code
