"""Where the machine's CPU went during a benchmark row: the service (supervisor
and workers), PostgreSQL (postmaster and backends), the load tools (this
process's children) and what stayed idle. Read from /proc and getrusage."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks * TICK_S


def reaped_seconds(pid: int) -> float:
    """utime + stime of the children this process has waited for (for the
    postmaster: PostgreSQL backends that have exited)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[13]) + int(fields[14])) * TICK_S


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def postgres_seconds(postmaster: int, *, scan: Callable[[int], list[int]] = children_of) -> float:
    """The postmaster's CPU, its live backends' and its exited ones'. A backend
    reaped while the live ones are being read would count in neither (one
    that had spent 7 s did, once: a negative PostgreSQL CPU), so the reading
    is taken again until no backend was reaped during it."""
    while True:
        reaped = reaped_seconds(postmaster)
        live = process_seconds([postmaster, *scan(postmaster)])
        if reaped_seconds(postmaster) == reaped:
            return reaped + live


def load_tool_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) * TICK_S, idle * TICK_S


@dataclass
class CpuSplit:
    """CPU µs per request by who spent it, and the machine's idle share."""

    service_us: float
    postgres_us: float | None  # None: an external PostgreSQL, not ours to see
    load_us: float
    other_us: float  # the rest of the machine's busy time (the bench itself, the kernel's threads)
    idle_share: float


@dataclass(frozen=True)
class Reading:
    """CPU seconds so far; the difference of two is what a run spent, and
    the sum of such differences what a row's rounds spent together."""

    service: float
    postgres: float | None
    load: float
    busy: float
    idle: float

    def _combine(self, other: Reading, sign: int) -> Reading:
        pg = (
            None if self.postgres is None or other.postgres is None else self.postgres + sign * other.postgres
        )
        return Reading(
            self.service + sign * other.service,
            pg,
            self.load + sign * other.load,
            self.busy + sign * other.busy,
            self.idle + sign * other.idle,
        )

    def __sub__(self, other: Reading) -> Reading:
        return self._combine(other, -1)

    def __add__(self, other: Reading) -> Reading:
        return self._combine(other, 1)


class CpuMeter:
    def __init__(self, service_pids: Callable[[], list[int]], postmaster: int | None) -> None:
        self._service_pids = service_pids
        self._postmaster = postmaster

    def read(self) -> Reading:
        busy, idle = machine_seconds()
        pg = postgres_seconds(self._postmaster) if self._postmaster else None
        return Reading(process_seconds(self._service_pids()), pg, load_tool_seconds(), busy, idle)

    def split_since(self, before: Reading, requests: int) -> CpuSplit:
        return split(self.read() - before, requests)


def split(spent: Reading, requests: int) -> CpuSplit:
    """What runs spent (a difference of readings), per request."""
    per = 1e6 / max(requests, 1)
    pg = spent.postgres
    return CpuSplit(
        service_us=spent.service * per,
        postgres_us=None if pg is None else pg * per,
        load_us=spent.load * per,
        other_us=max(0.0, spent.busy - spent.service - spent.load - (pg or 0.0)) * per,
        idle_share=spent.idle / max(spent.busy + spent.idle, 1e-9),
    )


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
