"""Drivers for the load generators `make bench` uses, and their parsers.

h2load (Debian nghttp2-client) speaks HTTP/2 (gRPC) and HTTP/1.1 (Connect)
with a fixed body and logs every request's latency; wrk runs a Lua script,
so each Connect Create can carry a new (runner, subject, host).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

WARM_UP_S = 0.3  # the load tools' warm-up before a timed run, not counted


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    data_bytes: int = 0  # h2load: response DATA bytes received (gRPC: the messages)
    p99_from_due_ms: float = 0.0  # open loop, bench.create_load: from when a request was due
    warm_up_successes: int = 0  # bench.create_load: calls that succeeded during its warm-up
    sent_together: float = 0.0  # h2load: share of requests sent within 200 µs of the one before

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_tools() -> None:
    """Install h2load and wrk from Debian's packages when missing."""
    missing = [
        pkg for tool, pkg in (("h2load", "nghttp2-client"), ("wrk", "wrk")) if shutil.which(tool) is None
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"make bench needs {' '.join(missing)}: apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, stdout=subprocess.DEVNULL)


def _percentile(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000.0


def h2load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    clients: int,
    seconds: float,
    http1: bool,
    rps: float = 0,
    warm_up: bool = True,
    in_phase: bool = False,
) -> Result:
    """One run of h2load; with rps, an open loop at that total rate.

    h2load starts every client's --rps timer on the same tick, so its open
    loop sends a burst of one request per client at once, once per client's
    period (measured: at c=16, bursts of 16 within 0.3 ms). Unless in_phase,
    the clients connect one a millisecond (-r 1; whole milliseconds are the
    finest it takes), which spreads their ticks over the period, as
    bench.create_load spreads its own requests. -r excludes -D, so such a run
    is counted in requests, and its warm-up is a run of its own.
    """
    spread = bool(rps) and not in_phase
    if spread and warm_up:
        h2load(
            url,
            body,
            headers,
            clients=clients,
            seconds=WARM_UP_S,
            http1=http1,
            rps=rps,
            warm_up=False,
            in_phase=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp, "body"), Path(tmp, "log")
        data.write_bytes(body)
        args = ["h2load", "-c", str(clients), "-m", "1"]
        if spread:
            args += ["-n", str(max(clients, round(rps * seconds))), "-r", "1", "--rate-period", "1ms"]
        else:
            args += ["-D", f"{int(seconds * 1000)}ms"]
            if warm_up:  # its traffic totals still count the warm-up's bytes
                args += ["--warm-up-time", f"{int(WARM_UP_S * 1000)}ms"]
        args += ["-d", str(data), "--log-file", str(log)]
        if http1:
            args.append("--h1")
        if rps:
            args += ["--rps", f"{max(rps / clients, 0.1):.2f}"]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
        latencies, starts, bad = [], [], 0
        for line in log.read_text().splitlines():
            start, status, micros = line.split("\t")[:3]
            if status == "0":
                continue  # still in flight when the timed window closed
            if status != "200":
                bad += 1
            latencies.append(int(micros))
            starts.append(int(start))
    finished = re.search(r"finished in ([\d.]+)(m?s)", out)
    seconds_taken = (
        float(finished.group(1)) / (1000 if finished and finished.group(2) == "ms" else 1)
        if finished
        else seconds
    )
    if warm_up and not spread:  # h2load's "finished in" counts the warm-up; its log does not
        seconds_taken -= WARM_UP_S
    # "failed" also counts requests cut off when the window closed; errored
    # and timed-out ones are real failures.
    errored = re.search(r"(\d+) errored, (\d+) timeout", out)
    errors = bad + (int(errored.group(1)) + int(errored.group(2)) if errored else 0)
    data_bytes = re.search(r"\((\d+)\) data", out)
    return Result(
        len(latencies),
        errors,
        seconds_taken,
        _percentile(latencies, 0.5),
        _percentile(latencies, 0.99),
        int(data_bytes.group(1)) if data_bytes else 0,
        sent_together=_sent_together(starts),
    )


def _sent_together(starts: list[int]) -> float:
    """The share of requests sent within 200 µs of the one before them."""
    close = sum(1 for a, b in itertools.pairwise(sorted(starts)) if b - a < 200)
    return close / len(starts) if starts else 0.0


def wrk(url: str, script: str, *, clients: int, seconds: float) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        threads = 1 if clients < 4 else 2
        out = subprocess.run(
            # wrk takes whole seconds
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(clients),
                "-d",
                f"{max(1, round(seconds))}s",
                "--latency",
                "-s",
                lua.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, flags=re.MULTILINE)
        if not match:
            return 0.0
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    assert total, out
    taken = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Result(int(total.group(1)), errors, taken, millis("50%"), millis("99%"))


def create_load(
    target: str,
    transport: str,
    credential: str,
    runner: str,
    *,
    clients: int,
    seconds: float,
    rps: float = 0,
    warm_up: bool = True,
) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = [
            target,
            transport,
            credential,
            runner,
            str(clients),
            str(seconds),
            str(rps),
            str(int(warm_up)),
        ]
        done = subprocess.run(
            [sys.executable, "-m", "bench.create_load", *args, str(out)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench.create_load failed: {done.stderr[-2000:]}")
        doc = json.loads(out.read_text())
    lat = doc["latencies_us"]
    return Result(
        doc["count"],
        doc["errors"],
        doc["seconds"],
        _percentile(lat, 0.5),
        _percentile(lat, 0.99),
        p99_from_due_ms=_percentile(doc["from_due_us"], 0.99),
        warm_up_successes=doc["warm_up_ok"],
    )


def median_result(results: list[Result]) -> Result:
    """The round with the median rate."""
    ranked = sorted(results, key=lambda r: r.rps)
    return ranked[len(ranked) // 2]


__all__ = [
    "WARM_UP_S",
    "Result",
    "create_load",
    "ensure_tools",
    "h2load",
    "median_result",
    "statistics",
    "wrk",
]
