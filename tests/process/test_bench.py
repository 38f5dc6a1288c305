"""`make bench` end to end in its short smoke mode: no timing asserted, only
that every row is measured and printed (speed goals live in the benchmark)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import hpack
import pytest

from bench import load_tools
from bench.ceilings import Ceiling
from bench.cpu import CpuSplit, Reading, postgres_seconds, process_seconds, reaped_seconds, split
from bench.fixture import seed, service, setup
from bench.grpc_wire import header_block
from bench.load_tools import Result
from bench.report import Row, paired_ratio, table
from bench.runs import METHODS, TRANSPORTS, run_once
from bench.service import open_loop_line, settle
from hostauth.crypto.keyring import generate_keyring_json
from tests.support.processes import ROOT


async def _run_bench(admin_dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench.<args>` on the test database server."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": admin_dsn},
        capture_output=True,
        text=True,
        timeout=900,
    )


async def test_bench_smoke_prints_every_row(admin_dsn: str) -> None:
    result = await _run_bench(admin_dsn, "bench.service", "--smoke")
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
        assert any(ln.startswith(f"database ceiling c={clients} (median of 1 round(s)):") for ln in lines)
    assert any("open loop at 80 %" in ln for ln in lines)
    for heading, pair in (("metrics (c=16", "off"), ("traces at a 100 % sample", "untraced")):
        at = next(i for i, ln in enumerate(lines) if ln.startswith(heading))
        rows = [ln.split() for ln in lines[at + 1 : at + 5]]
        assert all(row[2] == pair and row[-1] == "0" for row in rows), lines[at : at + 5]
    received = next(ln for ln in lines if "export requests received" in ln)
    assert int(received.split()[-1]) > 0  # the traced service exported its spans
    open_loop = [ln.split() for ln in lines if ln.startswith("  ") and "req/s  p99" in ln]
    assert {(f[0], f[1]) for f in open_loop} == {(m, t) for m in METHODS for t in TRANSPORTS}
    assert all(f[f.index("errors") + 1] == "0" for f in open_loop)
    assert all(f[f.index("ms") + 1].startswith("[") for f in open_loop)  # each round's p99
    assert any(ln.startswith("scaling, GetValue") and "rounds alternating" in ln for ln in lines)


def test_grpc_wire_header_block_decodes_to_the_request_headers() -> None:
    block = header_block("127.0.0.1:5000", "/a.B/C", {"authorization": "Bearer hak_x", "x-long": "v" * 300})
    assert hpack.Decoder().decode(block) == [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "127.0.0.1:5000"),
        (":path", "/a.B/C"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", "Bearer hak_x"),
        ("x-long", "v" * 300),  # a length past the 7-bit prefix
    ]


async def test_bench_grpc_create_load_counts_successes_and_refusals(admin_dsn: str, tmp_path: Path) -> None:
    """bench.grpc_wire does not decode the response headers: a call counts
    as a success by its message, and every success must have written a row."""

    def run() -> tuple[Result, Result, Result]:
        fixture = asyncio.run(setup(admin_dsn))
        tmp_path.chmod(0o755)
        with service(fixture, generate_keyring_json("bench-test"), 1, tmp_path) as svc:
            closed = run_once(svc, fixture, "Create", "grpc", 4, 0.5)
            open_loop = run_once(svc, fixture, "Create", "grpc", 4, 0.5, rps=200)
            refused = run_once(
                svc, dataclasses.replace(fixture, key="hak_" + "x" * 43), "Create", "grpc", 2, 0.5
            )
        return closed, open_loop, refused

    closed, open_loop, refused = await asyncio.to_thread(run)
    for good in (closed, open_loop):
        assert good.requests > 0
        assert good.errors == 0
    assert 80 <= open_loop.requests <= 101  # 200/s for 0.5 s
    assert refused.requests > 0
    assert refused.errors == refused.requests


def test_ratios_pair_each_round_with_the_same_round_of_its_ceiling() -> None:
    # The machine slowed in round 2 and half-recovered in round 3, ceiling and
    # row alike; the row is half its ceiling in two rounds of three. Paired,
    # the median says 0.5; the medians of each side apart mix rounds (4.5 / 8).
    rows, ceilings = [5.0, 2.5, 4.5], [10.0, 5.0, 8.0]
    assert paired_ratio(rows, ceilings) == 0.5
    assert statistics.median(rows) / statistics.median(ceilings) == 0.5625


def test_an_open_loop_row_reports_its_median_round_by_p99_and_shows_every_round() -> None:
    rounds = [
        Result(requests=9000, errors=0, seconds=3.0, p50_ms=2.0, p99_ms=14.0),
        Result(requests=8400, errors=2, seconds=3.0, p50_ms=2.1, p99_ms=6.5, p99_from_due_ms=9.0),
        Result(requests=8700, errors=1, seconds=3.0, p50_ms=2.2, p99_ms=8.25, p99_from_due_ms=11.0),
    ]
    fields = open_loop_line("Create", "grpc", rounds).split()
    assert fields[:4] == ["Create", "grpc", "2900", "req/s"]  # the median round's rate
    assert fields[4:7] == ["p99", "8.25", "ms"]
    assert " ".join(fields[7:10]) == "[14.00, 6.50, 8.25]"  # in the order run
    assert fields[fields.index("errors") + 1] == "3"  # every round's
    assert fields[-2:] == ["11.00", "ms)"]  # from when due, of the same round


def test_a_table_row_keeps_its_fields_apart_when_a_number_outgrows_its_column() -> None:
    """A row that failed outright (seen: 920,000 errors, 31,000 µs a request)
    must still read field by field, as the smoke test and a reader split it."""
    huge = Result(requests=0, errors=920_000, seconds=0.5, p50_ms=0.0, p99_ms=0.0)
    cpu = CpuSplit(service_us=31_000, postgres_us=15_000, load_us=31_906, other_us=0.0, idle_share=0.51)
    row = Row("GetValue", "connect-proto", 1, huge, cpu, [huge])
    ceiling = Ceiling(bare_insert=1.0, token_insert=1.0, select=1.0)
    line = table([row], {1: [ceiling]}).splitlines()[3]
    assert line.split()[:11] == [
        "GetValue",
        "connect-proto",
        "1",
        "0",
        "0.00",
        "0.00",
        "920000",
        "31000",
        "15000",
        "31906",
        "51%",
    ]


def test_cpu_readings_add_up_over_a_rows_rounds() -> None:
    first = Reading(service=1.0, postgres=0.5, load=0.25, busy=2.0, idle=0.0) - Reading(
        0.0, 0.0, 0.0, 0.0, 0.0
    )
    second = Reading(3.0, 1.5, 0.5, 5.0, 1.0) - Reading(2.0, 1.0, 0.25, 3.0, 0.0)
    total = split(first + second, requests=1000)
    assert total.service_us == 2000.0
    assert total.postgres_us == 1000.0
    assert total.load_us == 500.0
    assert total.other_us == 500.0  # busy 4 s less what the three spent
    assert total.idle_share == 0.2
    external = Reading(1.0, None, 0.0, 1.0, 0.0) - Reading(0.0, None, 0.0, 0.0, 0.0)
    assert split(external, 1).postgres_us is None


def test_postgres_cpu_keeps_a_backend_reaped_while_it_is_read() -> None:
    """This process stands in for the postmaster: a child that spent CPU and
    exited is reaped in the middle of the reading, as a backend can be."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    child = subprocess.Popen([sys.executable, "-c", burn])
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)  # exited, not yet reaped
    reaped_before = reaped_seconds(os.getpid())

    def scan_that_reaps(parent: int) -> list[int]:
        if child.returncode is None:
            child.wait()  # reaped between the two halves of the reading
        return []

    total = postgres_seconds(os.getpid(), scan=scan_that_reaps)
    own = process_seconds([os.getpid()])
    assert total - own - reaped_before >= 0.4  # the child's 0.5 s, counted once


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


async def test_bench_open_loop_spreads_its_requests_and_keeps_its_rate(
    admin_dsn: str, tmp_path: Path
) -> None:
    """h2load's --rps starts every client's timer on the same tick, a burst of
    one request per client at once; the bench's open loop spreads the
    clients' ticks instead. Both keep the rate, counted without the warm-up
    (h2load's "finished in" includes it: the in-phase rate read 23 % low)."""

    def run() -> tuple[Result, Result]:
        fixture = asyncio.run(setup(admin_dsn))
        tmp_path.chmod(0o755)
        with service(fixture, generate_keyring_json("bench-test"), 1, tmp_path) as svc:
            seed(svc, fixture)
            spread = run_once(svc, fixture, "Get", "connect-proto", 4, 1.0, rps=200)
            together = run_once(svc, fixture, "Get", "connect-proto", 4, 1.0, rps=200, in_phase=True)
        return spread, together

    spread, together = await asyncio.to_thread(run)
    assert spread.errors == together.errors == 0
    assert together.sent_together > 0.6  # 3 of every 4 requests right behind another
    assert spread.sent_together < 0.4  # (0.12-0.2 measured: handshakes can line two up)
    for result in (spread, together):
        assert 180 <= result.rps <= 210, result  # 200/s for 1 s


def test_create_load_answers_through_a_file_whatever_its_stdout_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full run once failed on create_load's JSON, split by a stray newline
    on its stdout: the result now comes through a file of its own."""
    result = {"count": 3, "warm_up_ok": 1, "errors": 0, "seconds": 0.1, "latencies_us": [12, 34, 56]}
    result["from_due_us"] = [12, 34, 56]

    def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        Path(args[-1]).write_text(json.dumps(result))
        return subprocess.CompletedProcess(args, 0, stdout='{"count": 3, "lat\n', stderr="")

    monkeypatch.setattr(load_tools.subprocess, "run", run)
    got = load_tools.create_load("127.0.0.1:1", "grpc", "hak_x", "r", clients=1, seconds=0.1)
    assert got.requests == 3
    assert got.errors == 0


async def test_rounds_start_with_the_upkeep_earlier_rounds_made_due(admin_dsn: str) -> None:
    """settle leaves autovacuum and autoanalyze nothing to do on the rows
    earlier rounds inserted."""
    fixture = await setup(admin_dsn)
    conn = await asyncpg.connect(fixture.dsn)
    try:
        await conn.execute(
            "INSERT INTO audit_events (request_id, method, principal, subject_id, credential_id, outcome)"
            " SELECT 'r' || i, 'GetValue', 1, gen_random_uuid(), 'c', 'ok' FROM generate_series(1, 5000) i"
        )
        # The audit trail's rows are in its partitions.
        counts = "SELECT sum(n_ins_since_vacuum)::int, sum(n_mod_since_analyze)::int FROM pg_stat_user_tables"
        counts += " WHERE relid IN (SELECT relid FROM pg_partition_tree('audit_events'))"
        for _ in range(50):  # a backend reports its counts within a second or so
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            if tuple(await conn.fetchrow(counts)) == (5000, 5000):
                break
            await asyncio.sleep(0.1)
        assert tuple(await conn.fetchrow(counts)) == (5000, 5000)
        await settle(fixture.dsn)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        assert tuple(await conn.fetchrow(counts)) == (0, 0)
    finally:
        await conn.close()


async def test_bench_rewrap_runs_end_to_end_and_rewraps_every_row(admin_dsn: str) -> None:
    """`make bench-rewrap` in small: both lines count every seeded row."""
    result = await _run_bench(admin_dsn, "bench.rewrap", "--rows", "120", "--batch-size", "50")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for label in ("plain batched UPDATE (baseline)", "keys rewrap (2 data keys per row)"):
        row = [ln for ln in lines if ln.startswith(label)]
        assert len(row) == 1, result.stdout
        assert row[0][len(label) :].split()[0] == "120"
    assert any(ln.startswith("rewrap / baseline = ") for ln in lines)
