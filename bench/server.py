"""`python -m bench.server serve ...`: the `hostauth` command, serving the
benchmark's echo method beside the service (bench/echo.py).

HOSTAUTH_BENCH_HTTP_SERVER picks the HTTP server under Connect for a
comparison (bench/http_servers.py; default granian, as the product).
"""

from __future__ import annotations

import os
import sys

from bench.echo import echo_extras
from bench.http_servers import SERVERS
from hostauth.cli.main import main


def run() -> int:
    kind = os.environ.get("HOSTAUTH_BENCH_HTTP_SERVER", "granian")
    if kind not in SERVERS:
        print(
            f"HOSTAUTH_BENCH_HTTP_SERVER must be one of {', '.join(SERVERS)}, got {kind!r}", file=sys.stderr
        )
        return 2
    # Workers are started as this module too, so each serves the echo.
    return main(extras=echo_extras(SERVERS[kind]), module="bench.server")


if __name__ == "__main__":
    sys.exit(run())
