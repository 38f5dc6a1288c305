"""`make bench` end to end in its short smoke mode: no timing asserted, only
that every row is measured and printed (speed goals live in the benchmark)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from bench.service import METHODS, TRANSPORTS
from tests.processes import ROOT


async def test_bench_smoke_prints_every_row(admin_dsn: str) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bench.service", "--smoke"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": admin_dsn},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for method in METHODS:
        for transport in TRANSPORTS:
            for clients in (1, 16, 64):
                row = [ln for ln in lines if ln.split()[:3] == [method, transport, str(clients)]]
                assert len(row) == 1, (method, transport, clients)
                fields = row[0].split()
                assert float(fields[3]) > 0  # requests per second
                assert int(fields[7]) == 0, row[0]  # no failed request
    for clients in (1, 16, 64):
        assert any(ln.startswith(f"database ceiling c={clients}:") for ln in lines)
    assert any("open loop at 80 %" in ln for ln in lines)
    assert any(ln.startswith("scaling, GetValue") for ln in lines)
