"""Run the service's CLI as a user would, against the test database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping

from tests.support.processes import ROOT


async def run_cli(
    dsn: str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hostauth", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {}), "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
