"""The table `make bench` prints."""

from __future__ import annotations

from dataclasses import dataclass

from bench.ceilings import Ceiling
from bench.cpu import CpuSplit
from bench.load_tools import Result


@dataclass
class Row:
    method: str
    transport: str
    clients: int
    result: Result
    cpu: CpuSplit


def table(rows: list[Row], ceilings: dict[int, Ceiling]) -> str:
    echo = {(r.transport, r.clients): r.result.rps for r in rows if r.method == "Echo"}
    lines = [
        "CPU µs per request: svc = the service, pg = PostgreSQL, load = the load tool, "
        "idle = share of the machine left idle",
        f"{'method':<9}{'transport':<15}{'c':>3}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'svc':>6}{'pg':>5}{'load':>5}{'idle':>6}  ratio",
    ]
    for r in rows:
        ceiling = ceilings[r.clients]
        ratio = ""
        if r.method == "Create":
            ratio = (
                f"{r.result.rps / ceiling.token_insert:.2f} x token-table insert, "
                f"{r.result.rps / ceiling.bare_insert:.2f} x bare insert"
            )
        elif r.method in ("GetValue", "Get", "List") and echo.get((r.transport, r.clients)):
            ratio = f"{r.result.rps / echo[(r.transport, r.clients)]:.2f} x echo"
            if r.method == "Get":
                ratio += f", {r.result.rps / ceiling.select:.2f} x db select"
        pg = "-" if r.cpu.postgres_us is None else f"{r.cpu.postgres_us:.0f}"
        lines.append(
            f"{r.method:<9}{r.transport:<15}{r.clients:>3}{r.result.rps:>8.0f}{r.result.p50_ms:>8.2f}"
            f"{r.result.p99_ms:>8.2f}{r.result.errors:>7}{r.cpu.service_us:>6.0f}{pg:>5}"
            f"{r.cpu.load_us:>5.0f}{r.cpu.idle_share:>6.0%}  {ratio}"
        )
    lines.append("")
    for clients, c in sorted(ceilings.items()):
        lines.append(
            f"database ceiling c={clients}: INSERT … RETURNING into the tokens table {c.token_insert:.0f}/s, "
            f"into a bare table {c.bare_insert:.0f}/s; PK SELECT {c.select:.0f}/s"
        )
    return "\n".join(lines)


def cpu_line(label: str, row: Row) -> str:
    c = row.cpu
    pg = "PostgreSQL -" if c.postgres_us is None else f"PostgreSQL {c.postgres_us:.0f}"
    return (
        f"  {label}: {row.result.rps:.0f}/s; CPU µs per request: service {c.service_us:.0f}, {pg}, "
        f"load tool {c.load_us:.0f}, other {c.other_us:.0f}; machine idle {c.idle_share:.0%}"
    )
