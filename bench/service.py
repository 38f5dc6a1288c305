"""`make bench`: the service under load, next to the ceilings it can reach.

Starts its own PostgreSQL (durable: fsync on) or uses DATABASE_URL, starts the
service with the benchmark's echo method, and loads it from other processes
over loopback: per method and transport, at concurrency 1, 16 and 64,
requests/s, p50, p99 (median of the rounds) and CPU µs per request spent by
the service, PostgreSQL and the load tool. Ceilings measured in the same run:
the database's (asyncpg INSERT … RETURNING and primary-key SELECT, no
service) and the framework's (the echo method on the same servers). Then an
open-loop run at 80 % of each row's c=16 peak for p99, and the scaling from
one worker to all. The modules beside this one: fixture (database, service,
seed tokens), runs (one timed run and its checks), ceilings, report, cpu,
load_tools and create_load.

    .venv/bin/python -m bench.service [--smoke] [--seconds 3] [--rounds 3] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import asyncpg

from bench.ceilings import db_ceiling
from bench.cpu import CpuMeter, postmaster_pid
from bench.fixture import Fixture, Service, seed, service, setup
from bench.load_tools import ensure_tools, median_result
from bench.report import Row, cpu_line, table
from bench.runs import METHODS, TRANSPORTS, run_once
from server.crypto.keyring import generate_keyring_json
from server.embedded_pg import EmbeddedPostgres


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
