"""`python -m bench.idle_connections`: calls' p99 with and without 2,000
idle connections on each port, and with 200 that trickle their headers a
byte a second, in one sitting (rounds alternating), printed as ratios.

Both kinds are held by threads of this process, which open again the ones
the server closes (its header timeout), so the count holds throughout.
Loopback only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

from bench.fixture import Fixture, Service, database_server, seed, service, setup
from bench.load_tools import ensure_tools
from bench.runs import run_once
from hostauth.crypto.keyring import generate_keyring_json

ROWS = (("GetValue", "connect-proto"), ("GetValue", "grpc"), ("Create", "connect-proto"), ("Create", "grpc"))


@contextlib.contextmanager
def _held(
    ports: tuple[int, ...], count: int, tick: Callable[[socket.socket, int], bool], every_s: float
) -> Iterator[None]:
    """`count` connections a port, held by a thread a port until the block
    ends: each is given tick(sock, n) every `every_s` (n: its ticks so far;
    False: the server closed it), and one closed is opened again."""
    stop = threading.Event()

    def hold(port: int) -> None:
        socks: list[tuple[socket.socket, int]] = []
        while not stop.is_set():
            while len(socks) < count and not stop.is_set():
                with contextlib.suppress(OSError):
                    socks.append((socket.create_connection(("127.0.0.1", port), timeout=1), 0))
            kept = []
            for sock, n in socks:
                if tick(sock, n):
                    kept.append((sock, n + 1))
                else:
                    sock.close()
            socks = kept
            stop.wait(every_s)
        for sock, _ in socks:
            sock.close()

    threads = [threading.Thread(target=hold, args=(port,), daemon=True) for port in ports]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)


def _still_open(sock: socket.socket, _n: int) -> bool:
    """Sends nothing; False once the server closed it (its header timeout)."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


_HEAD = b"POST /x HTTP/1.1\r\nHost: x\r\nx-pad: " + b"y" * 4096


def _one_more_byte(sock: socket.socket, n: int) -> bool:
    """A request's head, a byte a tick."""
    try:
        sock.send(_HEAD[n % len(_HEAD) : n % len(_HEAD) + 1])
    except OSError:
        return False
    return True


def _idle(ports: tuple[int, ...], count: int) -> contextlib.AbstractContextManager[None]:
    return _held(ports, count, _still_open, 0.5)


def _trickling(ports: tuple[int, ...], count: int) -> contextlib.AbstractContextManager[None]:
    return _held(ports, count, _one_more_byte, 1.0)


def _p99s(svc: Service, fixture: Fixture, clients: int, seconds: float) -> dict[tuple[str, str], float]:
    found = {}
    for method, transport in ROWS:
        result = run_once(svc, fixture, method, transport, clients, seconds)
        if result.errors:
            raise SystemExit(f"{method} {transport}: {result.errors} errors")
        found[method, transport] = result.p99_ms
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--idle", type=int, default=2000, help="idle connections per port")
    parser.add_argument("--trickling", type=int, default=200, help="trickling connections per port")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * (args.idle + args.trickling) + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    ensure_tools()
    with database_server("hostauth-bench-idle-") as (admin, folder):
        fixture = asyncio.run(setup(admin))
        with service(fixture, generate_keyring_json("bench-1"), args.workers, folder) as svc:
            seed(svc, fixture)
            ports = (svc.http, svc.grpc)
            p99: dict[str, list[dict[tuple[str, str], float]]] = {"none": [], "idle": [], "trickling": []}
            for r in range(args.rounds):
                order = ["none", "idle", "trickling"] if r % 2 == 0 else ["trickling", "idle", "none"]
                for case in order:
                    if case == "none":
                        p99[case].append(_p99s(svc, fixture, args.clients, args.seconds))
                    elif case == "idle":
                        with _idle(ports, args.idle):
                            time.sleep(2)
                            p99[case].append(_p99s(svc, fixture, args.clients, args.seconds))
                    else:
                        with _trickling(ports, args.trickling):
                            time.sleep(2)
                            p99[case].append(_p99s(svc, fixture, args.clients, args.seconds))
                print(f"round {r + 1} of {args.rounds} done", flush=True)
        print(
            f"\np99 ms at c={args.clients}, {args.workers} worker(s); {args.idle} idle and"
            f" {args.trickling} trickling connections a port; median of {args.rounds} rounds:"
        )
        print(
            f"{'method':8} {'transport':14} {'none':>7} {'idle':>7} {'ratio':>6} {'trickle':>7} {'ratio':>6}"
        )
        for row in ROWS:
            base, idle, trickle = (statistics.median(run[row] for run in p99[c]) for c in p99)
            print(
                f"{row[0]:8} {row[1]:14} {base:7.2f} {idle:7.2f} {idle / base:6.2f}"
                f" {trickle:7.2f} {trickle / base:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
