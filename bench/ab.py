"""`make bench-ab AGAINST=<checkout>`: this code against another checkout's,
side by side, in one sitting.

Both services run at once on one database (same keyring, same seeded
tokens, the same number of workers each), and each round loads them in
turn, method by method, the order of the two alternating from round to
round; a pair is this code's round over the other's, run seconds apart, so
the drift of a noisy machine hits both sides alike. Prints each row's
median paired ratio with the range of the pairs. The other checkout is run
with its own virtualenv (`<checkout>/.venv`, `make install` there) and the
command given by --against-command (run in the checkout).

    .venv/bin/python -m bench.ab --against ../before [--rounds 8] [--seconds 3] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
from pathlib import Path

from bench.fixture import database_server, seed, service, setup
from bench.load_tools import ensure_tools
from bench.runs import run_once
from bench.service import settle
from hostauth.crypto.keyring import generate_keyring_json

ROWS = (
    ("GetValue", "connect-proto"),
    ("GetValue", "grpc"),
    ("Create", "connect-proto"),
    ("Create", "grpc"),
    ("Get", "connect-proto"),
    ("List", "connect-json"),
    ("Echo", "connect-proto"),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    parser.add_argument(
        "--against-command",
        default=".venv/bin/python -m bench.server serve",
        help="how the other checkout serves with the bench's echo (run in it)",
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--rows", nargs="+", metavar="METHOD:TRANSPORT", help="only these rows (e.g. GetValue:connect-proto)"
    )
    args = parser.parse_args()
    rows = [tuple(r.split(":", 1)) for r in args.rows] if args.rows else list(ROWS)
    other = args.against.resolve()
    ensure_tools()
    keyring = generate_keyring_json("bench-1")
    with database_server("hostauth-bench-ab-") as (admin, folder):
        fixture = asyncio.run(setup(admin))
        command = [
            str(other / part) if part.startswith(".venv/") else part
            for part in shlex.split(args.against_command)
        ]
        with (
            service(fixture, keyring, args.workers, folder) as this,
            service(
                fixture, keyring, args.workers, folder, command=command, cwd=other, name="against"
            ) as that,
        ):
            seed(this, fixture)
            sides = {"this": this, "that": that}
            for svc in sides.values():  # warm-up, not counted
                for method, transport in rows:
                    run_once(svc, fixture, method, transport, args.clients, 0.3, warm_up=False)
            rates: dict[tuple[str, str, str], list[float]] = {}
            for r in range(args.rounds):
                order = ("this", "that") if r % 2 == 0 else ("that", "this")
                for method, transport in rows:
                    for side in order:
                        asyncio.run(settle(fixture.dsn))
                        result = run_once(
                            sides[side], fixture, method, transport, args.clients, args.seconds, warm_up=False
                        )
                        if result.errors:
                            raise SystemExit(f"{side} {method} {transport}: {result.errors} errors")
                        rates.setdefault((method, transport, side), []).append(result.rps)
                print(f"round {r + 1} of {args.rounds} done", flush=True)
        print(
            f"\nthis checkout against {other}, c={args.clients}, {args.workers} worker(s) each, "
            f"{args.rounds} rounds of {args.seconds:g} s, order alternating:"
        )
        header = f"{'method':8} {'transport':14} {'this req/s':>10} {'that req/s':>10}"
        print(f"{header}  ratio (median of pairs; range)")
        for method, transport in rows:
            mine, theirs = rates[(method, transport, "this")], rates[(method, transport, "that")]
            pairs = [a / max(b, 1e-9) for a, b in zip(mine, theirs, strict=True)]
            print(
                f"{method:8} {transport:14} {statistics.median(mine):10.0f} {statistics.median(theirs):10.0f}"
                f"  {statistics.median(pairs):.3f} ({min(pairs):.2f}-{max(pairs):.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
