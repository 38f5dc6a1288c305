"""`make bench`: the service under load, next to the ceilings it can reach.

Starts its own PostgreSQL (durable: fsync on) or uses DATABASE_URL, starts the
service with the benchmark's echo method, and loads it from other processes
over loopback: per method and transport, at concurrency 1, 16 and 64,
requests/s, p50, p99 (median of the rounds) and CPU µs per request spent by
the service, PostgreSQL and the load tool. Ceilings measured in the same run,
in the same rounds: the database's (asyncpg INSERT … RETURNING and
primary-key SELECT, no service) and the framework's (the echo method on the
same servers). The rounds go round-robin at each concurrency (round r of every
row, then of the database ceilings), and a ratio is the median over rounds of
a row's round r over its ceiling's round r, so a noisy machine's drift hits
both sides of a ratio alike. Then the open loop at 80 % of each row's c=16
peak for p99, in rounds the same way (median round by p99), and the
scaling from one worker to all, their rounds alternating. The modules
beside this one: fixture (database, service, seed tokens), runs (one
timed run and its checks), ceilings, report, cpu, load_tools and
create_load.

    .venv/bin/python -m bench.service [--smoke] [--seconds 3] [--rounds 3] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import asyncpg

from bench.ceilings import Ceiling, db_ceiling
from bench.cpu import CpuMeter, Reading, postmaster_pid, process_seconds, split
from bench.fixture import Fixture, Service, seed, service, setup
from bench.load_tools import Result, ensure_tools, median_result
from bench.report import Row, cpu_line, paired_ratio, table
from bench.runs import METHODS, TRANSPORTS, run_once
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from tests.support.certs import make_ca, server_cert
from tests.support.otlp import Receiver


async def settle(dsn: str) -> None:
    """Before a timed round, do the database's upkeep that earlier rounds made
    due, so that it does not land inside a later one: VACUUM (ANALYZE) the
    rows they inserted (as pgbench does before its runs), then CHECKPOINT
    what that and they left dirty. Without it, autovacuum woke every minute
    and worked 1-8 s, longer as the tables grew to hundreds of thousands of
    rows: inside whichever rows ran then (measured). The upkeep is real work
    that production does too, on PostgreSQL's own machine."""
    conn = await asyncpg.connect(dsn)
    try:
        for statement in ("VACUUM (ANALYZE)", "CHECKPOINT"):
            # DATABASE_URL without the right: the rows share the server's upkeep
            with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


def timed(
    svc: Service, meter: CpuMeter, fixture: Fixture, method: str, transport: str, clients: int, seconds: float
) -> tuple[Result, Reading]:
    """One timed round after the database's upkeep (settle), and the CPU it cost."""
    asyncio.run(settle(fixture.dsn))
    before = meter.read()
    result = run_once(svc, fixture, method, transport, clients, seconds, warm_up=False)
    return result, meter.read() - before


def row_of(method: str, transport: str, clients: int, results: list[Result], spent: list[Reading]) -> Row:
    """A row from its rounds: the median round, and the CPU of all of them."""
    return Row(
        method,
        transport,
        clients,
        median_result(results),
        split(sum(spent[1:], spent[0]), sum(r.requests for r in results)),
        results,
    )


def measure_block(
    svc: Service, meter: CpuMeter, fixture: Fixture, clients: int, seconds: float, rounds: int
) -> tuple[list[Row], list[Ceiling]]:
    """Every method and transport at one concurrency, round-robin: round r of
    every row, then round r of the database ceilings. A row and the ceiling
    it is divided by (echo, or the database) run a minute apart at most, so
    the drift of a shared, noisy machine hits both alike."""
    keys = [(m, t) for t in TRANSPORTS for m in METHODS]
    for method, transport in keys:  # warm-up, outside the CPU readings
        run_once(svc, fixture, method, transport, clients, 0.3, warm_up=False)
    results: dict[tuple[str, str], list[Result]] = {k: [] for k in keys}
    spent: dict[tuple[str, str], list[Reading]] = {k: [] for k in keys}
    ceilings = []
    for _ in range(rounds):
        for method, transport in keys:
            result, cpu = timed(svc, meter, fixture, method, transport, clients, seconds)
            results[(method, transport)].append(result)
            spent[(method, transport)].append(cpu)
        ceilings.append(asyncio.run(db_ceiling(fixture.dsn, clients, seconds, fixture.token_id)))
    rows = [row_of(m, t, clients, results[(m, t)], spent[(m, t)]) for m, t in keys]
    return rows, ceilings


def scaling(
    all_workers: Service,
    one_worker: Service,
    meters: tuple[CpuMeter, CpuMeter],
    fixture: Fixture,
    seconds: float,
    rounds: int,
) -> tuple[Row, Row]:
    """GetValue over Connect proto at c=64 on all workers and on one, the
    rounds alternating (the idle service costs nothing) so both see the same
    machine."""
    services = (all_workers, one_worker)
    results: tuple[list[Result], list[Result]] = ([], [])
    spent: tuple[list[Reading], list[Reading]] = ([], [])
    for svc in services:
        run_once(svc, fixture, "GetValue", "connect-proto", 64, 0.3, warm_up=False)
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            result, cpu = timed(services[i], meters[i], fixture, "GetValue", "connect-proto", 64, seconds)
            results[i].append(result)
            spent[i].append(cpu)
    first, second = (row_of("GetValue", "connect-proto", 64, results[i], spent[i]) for i in (0, 1))
    return first, second


# The hot rows: a write and a secret read, on both ports.
HOT_ROWS = (
    ("Create", "grpc"),
    ("Create", "connect-proto"),
    ("GetValue", "grpc"),
    ("GetValue", "connect-proto"),
)


def paired_cost(
    base: Service, other: Service, names: tuple[str, str], fixture: Fixture, seconds: float, rounds: int
) -> list[str]:
    """The hot rows at c=16 on two services that differ in one setting (new
    connections only at the start of a round: keep-alive, as clients run),
    their rounds alternating; each row's rate, p99 and the service's CPU per
    request on `other` as a ratio to `base` (the median of the paired
    rounds' ratios). CPU per request varies less than the rate on a shared
    machine: it is the figure a small cost shows in."""
    lines = []
    services = (base, other)
    for method, transport in HOT_ROWS:
        for svc in services:
            run_once(svc, fixture, method, transport, 16, 0.3, warm_up=False)
        runs: tuple[list[Result], list[Result]] = ([], [])
        cpu: tuple[list[float], list[float]] = ([], [])
        for r in range(rounds):
            for i in (0, 1) if r % 2 == 0 else (1, 0):
                asyncio.run(settle(fixture.dsn))
                before = process_seconds(services[i].pids())
                result = run_once(services[i], fixture, method, transport, 16, seconds, warm_up=False)
                spent = process_seconds(services[i].pids()) - before
                runs[i].append(result)
                cpu[i].append(spent * 1e6 / max(result.requests, 1))
        p, s = median_result(runs[0]), median_result(runs[1])
        rate = paired_ratio([x.rps for x in runs[1]], [x.rps for x in runs[0]])
        p99 = paired_ratio([x.p99_ms for x in runs[1]], [x.p99_ms for x in runs[0]])
        us = paired_ratio(cpu[1], cpu[0])
        errors = sum(x.errors for x in runs[0] + runs[1])
        lines.append(
            f"  {method:<9}{transport:<15}{names[0]} {p.rps:>7.0f}/s p99 {p.p99_ms:6.2f} ms"
            f" {statistics.median(cpu[0]):5.0f} us   {names[1]} {s.rps:>7.0f}/s p99 {s.p99_ms:6.2f} ms"
            f" {statistics.median(cpu[1]):5.0f} us   rate x{rate:.2f}, p99 x{p99:.2f}, CPU x{us:.3f}"
            f"   errors {errors}"
        )
    return lines


def tls_cost(fixture: Fixture, keyring: str, workers: int, folder: Path, seconds: float, rounds: int) -> None:
    """TLS on both ports against plaintext, two services started together."""
    tls_files = server_cert(make_ca("bench CA")).write(folder, "bench-server")
    with (
        service(fixture, keyring, workers, folder, name="plaintext") as plain,
        service(fixture, keyring, workers, folder, name="tls", tls=tls_files) as secure,
    ):
        print(f"\nTLS (c=16, {rounds} rounds alternating with plaintext), TLS over plaintext:")
        for line in paired_cost(plain, secure, ("plaintext", "TLS"), fixture, seconds, rounds):
            print(line, flush=True)


def telemetry_cost(
    fixture: Fixture, keyring: str, workers: int, folder: Path, seconds: float, rounds: int
) -> None:
    """Metrics on (the default) against off; traces exported at a 100 %
    sample (to a receiver on loopback that takes and drops them) against
    none. Each pair started together, so that they are the same age and
    differ in the one setting."""
    no_metrics = {"HOSTAUTH_METRICS_ADDR": ""}
    with (
        service(fixture, keyring, workers, folder, name="no-metrics", extra_env=no_metrics) as off,
        service(fixture, keyring, workers, folder, name="metrics") as on,
    ):
        print(f"\nmetrics (c=16, {rounds} rounds alternating), on (the default) over off:")
        for line in paired_cost(off, on, ("off", "on"), fixture, seconds, rounds):
            print(line, flush=True)
    receiver = Receiver(decode=False)
    traced_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    try:
        with (
            service(fixture, keyring, workers, folder, name="untraced") as untraced,
            service(fixture, keyring, workers, folder, name="traced", extra_env=traced_env) as traced,
        ):
            print(f"\ntraces at a 100 % sample (c=16, {rounds} rounds alternating), traced over untraced:")
            for line in paired_cost(untraced, traced, ("untraced", "traced"), fixture, seconds, rounds):
                print(line, flush=True)
        print(f"  export requests received: {receiver.received}")
    finally:
        receiver.close()


def open_loop(svc: Service, fixture: Fixture, rows: list[Row], seconds: float, rounds: int) -> list[str]:
    """Each c=16 row again at 80 % of its rate, rounds round-robin as in the
    closed loop; a row reports its median round by p99, with every round's
    p99 beside it: a single 3 s round's p99 turns on whether one stall of
    the shared machine fell inside it."""
    peaks = [r for r in rows if r.clients == 16 and r.result.rps > 0]
    runs: list[list[Result]] = [[] for _ in peaks]
    for _ in range(rounds):
        for row, results in zip(peaks, runs, strict=True):
            asyncio.run(settle(fixture.dsn))
            results.append(
                run_once(svc, fixture, row.method, row.transport, 16, seconds, rps=0.8 * row.result.rps)
            )
    return [
        open_loop_line(row.method, row.transport, results) for row, results in zip(peaks, runs, strict=True)
    ]


def open_loop_line(method: str, transport: str, results: list[Result]) -> str:
    """The round with the median p99, every round's p99 in the order run,
    and the errors of all rounds."""
    median = sorted(results, key=lambda r: r.p99_ms)[len(results) // 2]
    each = ", ".join(f"{r.p99_ms:.2f}" for r in results)
    due = f"  (from when due: {median.p99_from_due_ms:.2f} ms)" if median.p99_from_due_ms else ""
    return (
        f"  {method:<9}{transport:<15}{median.rps:>8.0f} req/s  p99 {median.p99_ms:.2f} ms"
        f" [{each}]  errors {sum(r.errors for r in results)}{due}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a short run that prints every row")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--only",
        choices=("tls", "telemetry"),
        help="only TLS against plaintext, or only metrics and traces against neither",
    )
    args = parser.parse_args()
    seconds, rounds = (0.5, 1) if args.smoke else (args.seconds, args.rounds)
    # A cost of a few per cent needs more pairs than the machine's noise.
    paired_rounds = rounds if args.smoke else max(rounds, 7)
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
        ceilings: dict[int, list[Ceiling]] = {}
        postmaster = postmaster_pid(pg.data_dir) if pg is not None else None
        with service(fixture, keyring, args.workers, folder) as svc:
            meter = CpuMeter(svc.pids, postmaster)
            seed(svc, fixture)
            if args.only == "tls":
                tls_cost(fixture, keyring, args.workers, folder, seconds, paired_rounds)
                return
            if args.only == "telemetry":
                telemetry_cost(fixture, keyring, args.workers, folder, seconds, paired_rounds)
                return
            for clients in concurrencies:
                block, ceilings[clients] = measure_block(svc, meter, fixture, clients, seconds, rounds)
                rows.extend(block)
            order = {(m, t): i for i, (m, t) in enumerate((m, t) for m in METHODS for t in TRANSPORTS)}
            rows.sort(key=lambda r: (order[(r.method, r.transport)], r.clients))
            print(table(rows, ceilings), flush=True)
            print(
                f"\nopen loop at 80 % of the peak (c=16), requests spread over time, "
                f"median of {rounds} round(s) (each round's p99 in brackets):"
            )
            for line in open_loop(svc, fixture, rows, seconds, rounds):
                print(line, flush=True)
            tls_cost(fixture, keyring, args.workers, folder, seconds, paired_rounds)
            telemetry_cost(fixture, keyring, args.workers, folder, seconds, paired_rounds)
            if args.workers > 1:
                with service(fixture, keyring, 1, folder) as one:
                    many, single = scaling(
                        svc, one, (meter, CpuMeter(one.pids, postmaster)), fixture, seconds, max(rounds, 5)
                    )
                pairs = paired_ratio([r.rps for r in many.rounds], [r.rps for r in single.rounds])
                print(
                    f"\nscaling, GetValue over Connect proto at c=64, rounds alternating: "
                    f"1 worker {single.result.rps:.0f}/s, {args.workers} workers {many.result.rps:.0f}/s: "
                    f"{pairs:.2f}x (median of the paired rounds' ratios)"
                )
                print(cpu_line("1 worker", single))
                print(cpu_line(f"{args.workers} workers", many))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
