"""`make bench` end to end in its short smoke mode: no timing asserted, only
that every row is measured and printed (speed goals live in the benchmark)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from bench.fixture import seed, service, setup
from bench.load_tools import Result
from bench.runs import METHODS, TRANSPORTS, run_once
from server.crypto.keyring import generate_keyring_json
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
                assert int(fields[6]) == 0, row[0]  # no failed request
    for clients in (1, 16, 64):
        assert any(ln.startswith(f"database ceiling c={clients}:") for ln in lines)
    assert any("open loop at 80 %" in ln for ln in lines)
    open_loop = [ln.split() for ln in lines if ln.startswith("  ") and "req/s  p99" in ln]
    assert {(f[0], f[1]) for f in open_loop} == {(m, t) for m in METHODS for t in TRANSPORTS}
    assert all(f[f.index("errors") + 1] == "0" for f in open_loop)
    assert any(ln.startswith("scaling, GetValue") for ln in lines)


async def test_bench_counts_grpc_errors_that_h2load_counts_as_successes(
    admin_dsn: str, tmp_path: Path
) -> None:
    """A gRPC error is an HTTP 200: a refused credential must show as errors."""

    def run() -> tuple[Result, Result]:
        fixture = asyncio.run(setup(admin_dsn))
        tmp_path.chmod(0o755)
        with service(fixture, generate_keyring_json("bench-test"), 1, tmp_path) as svc:
            seed(svc, fixture)
            good = run_once(svc, fixture, "Get", "grpc", 2, 0.5)
            refused = run_once(
                svc, dataclasses.replace(fixture, key="hak_" + "x" * 43), "Get", "grpc", 2, 0.5
            )
        return good, refused

    good, refused = await asyncio.to_thread(run)
    assert good.requests > 0
    assert good.errors == 0
    assert refused.requests > 0
    assert refused.errors == refused.requests
