"""Fixtures of the process tests: `serve --dev` on a database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hostauth.auth.api_keys import new_api_key
from tests.support.db import create_database
from tests.support.processes import ServerProcess, start_server, wait_serving
from tests.support.sensitive import leaks, remember


@pytest.fixture
def dev_api_key() -> str:
    return remember(new_api_key())


@pytest.fixture
async def dev_dsn(admin_dsn: str) -> str:
    return await create_database(admin_dsn)


@pytest.fixture
async def dev_server(dev_dsn: str, log_dir: Path, dev_api_key: str) -> AsyncIterator[ServerProcess]:
    server = start_server(
        log_dir,
        {
            "DATABASE_URL": dev_dsn,
            "HOSTAUTH_DATA_DIR": str(log_dir / "data"),
            "HOSTAUTH_DEV_API_KEY": dev_api_key,
        },
        args=("--dev",),
    )
    await wait_serving(server)
    yield server
    log = server.stop()
    assert "serving Connect" in log
    assert leaks(log) == []
