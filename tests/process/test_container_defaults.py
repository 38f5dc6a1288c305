"""Defaults that hold in a container: workers follow the CPUs the service
may use, and a start whose pools would not fit the database's connections
stops with one line saying what to change."""

from __future__ import annotations

import re
from pathlib import Path

from hostauth.runtime.cpus import cpu_budget
from tests.support.db import create_database
from tests.support.processes import failed_start, start_server, wait_serving
from tests.support.serving import TEST_KEYRING_JSON


async def test_workers_default_to_the_cpu_budget_and_the_start_says_it(admin_dsn: str, log_dir: Path) -> None:
    dsn = await create_database(admin_dsn)
    server = start_server(
        log_dir, {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON, "HOSTAUTH_WORKERS": ""}
    )
    try:
        await wait_serving(server)
    finally:
        text = server.stop()
    budget = cpu_budget()
    if budget.workers > 1:
        started = re.search(r"started (\d+) worker\(s\): [\d, ]+ \((.*)\)", text)
        assert started, text
        assert int(started.group(1)) == budget.workers
        assert budget.describe() in started.group(2)
    else:
        assert f"serving in one process ({budget.describe()})" in text


async def test_pools_beyond_the_connection_budget_stop_the_start(admin_dsn: str) -> None:
    dsn = await create_database(admin_dsn)
    base = {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON, "HOSTAUTH_WORKERS": "2"}
    line = await failed_start({**base, "HOSTAUTH_DB_POOL_SIZE": "10", "HOSTAUTH_DB_MAX_CONNECTIONS": "15"}, 1)
    assert line == (
        "hostauth: 2 worker(s) x HOSTAUTH_DB_POOL_SIZE 10 = 20 database connections, more than"
        " HOSTAUTH_DB_MAX_CONNECTIONS (15): lower the pool size or the workers, or raise the budget"
    )
    line = await failed_start({**base, "HOSTAUTH_DB_POOL_SIZE": "5000"}, 1)
    assert "more than the database allows" in line
    assert "max_connections" in line
    assert "HOSTAUTH_DB_MAX_CONNECTIONS" in line
