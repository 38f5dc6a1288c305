"""The table `make bench` prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.ceilings import Ceiling
from bench.cpu import CpuSplit
from bench.load_tools import Result


@dataclass
class Row:
    method: str
    transport: str
    clients: int
    result: Result  # the median round
    cpu: CpuSplit  # over all its rounds
    rounds: list[Result]  # in the order run, round r beside round r of the ceilings


def paired_ratio(rates: list[float], ceilings: list[float]) -> float:
    """The median of round r's rate over round r's ceiling: the two ran
    about a minute apart at most, so drift on a shared machine hits both alike."""
    return statistics.median(r / max(c, 1e-9) for r, c in zip(rates, ceilings, strict=True))


def table(rows: list[Row], ceilings: dict[int, list[Ceiling]]) -> str:
    echo = {(r.transport, r.clients): [x.rps for x in r.rounds] for r in rows if r.method == "Echo"}
    lines = [
        "CPU µs per request: svc = the service, pg = PostgreSQL, load = the load tool, "
        "idle = share of the machine left idle",
        "ratio: the median over rounds of the row's round over the same round of its ceiling",
        f"{'method':<9}{'transport':<15}{'c':>3}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'svc':>6}{'pg':>5}{'load':>5}{'idle':>6}  ratio",
    ]
    for r in rows:
        rates = [x.rps for x in r.rounds]
        rounds = ceilings[r.clients]
        ratio = ""
        if r.method == "Create":
            ratio = (
                f"{paired_ratio(rates, [c.token_insert for c in rounds]):.2f} x token-table insert, "
                f"{paired_ratio(rates, [c.bare_insert for c in rounds]):.2f} x bare insert"
            )
        elif r.method in ("GetValue", "Get", "List") and (r.transport, r.clients) in echo:
            ratio = f"{paired_ratio(rates, echo[(r.transport, r.clients)]):.2f} x echo"
            if r.method == "Get":
                ratio += f", {paired_ratio(rates, [c.select for c in rounds]):.2f} x db select"
        pg = "-" if r.cpu.postgres_us is None else f"{r.cpu.postgres_us:.0f}"
        # A space before each number, so one too wide for its column pushes
        # the row along instead of running into its neighbour.
        lines.append(
            f"{r.method:<9}{r.transport:<15}{r.clients:>3} {r.result.rps:>7.0f} {r.result.p50_ms:>7.2f}"
            f" {r.result.p99_ms:>7.2f} {r.result.errors:>6} {r.cpu.service_us:>5.0f} {pg:>4}"
            f" {r.cpu.load_us:>4.0f} {r.cpu.idle_share:>5.0%}  {ratio}"
        )
    lines.append("")
    for clients, rounds in sorted(ceilings.items()):
        token, bare, select = (
            statistics.median(getattr(c, f) for c in rounds)
            for f in ("token_insert", "bare_insert", "select")
        )
        lines.append(
            f"database ceiling c={clients} (median of {len(rounds)} round(s)): INSERT … RETURNING "
            f"into the tokens table {token:.0f}/s, into a bare table {bare:.0f}/s; PK SELECT {select:.0f}/s"
        )
    return "\n".join(lines)


def cpu_line(label: str, row: Row) -> str:
    c = row.cpu
    pg = "PostgreSQL -" if c.postgres_us is None else f"PostgreSQL {c.postgres_us:.0f}"
    return (
        f"  {label}: {row.result.rps:.0f}/s; CPU µs per request: service {c.service_us:.0f}, {pg}, "
        f"load tool {c.load_us:.0f}, other {c.other_us:.0f}; machine idle {c.idle_share:.0%}"
    )
