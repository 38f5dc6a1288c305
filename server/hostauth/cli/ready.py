"""`hostauth ready`: the service's readiness as a container health check
asks for it, from inside its container: GET /readyz on the HTTP port
(HOSTAUTH_HTTP_ADDR; over TLS when the service has it), exit 0 when ready,
1 with the failed checks otherwise. No credential, no database of its own."""

from __future__ import annotations

import argparse
import http.client
import ssl

from hostauth.cli.commands import Subcommands, command
from hostauth.config import Settings

# Where to knock when the service listens on every address.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def ready(args: argparse.Namespace, settings: Settings) -> int:
    addr = settings.http_addr
    host = _LOOPBACK.get(addr.host, addr.host)
    connection: http.client.HTTPConnection
    if settings.tls is not None:
        # The service's own certificate names its public name, not loopback:
        # this asks the process next to it, so the name is not checked.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, addr.port, timeout=args.timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, addr.port, timeout=args.timeout)
    try:
        connection.request("GET", "/readyz")
        answer = connection.getresponse()
        body = answer.read().decode("utf-8", "replace")
    except OSError as exc:
        print(f"hostauth: not ready: {addr} does not answer ({exc})")
        return 1
    finally:
        connection.close()
    if answer.status != 200:
        print(f"hostauth: not ready: {body}")
        return 1
    return 0


def add_ready_command(commands: Subcommands) -> None:
    sub = command(commands, "ready", "exit 0 when the service next to this is ready (/readyz)")
    sub.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    sub.set_defaults(run=ready, offline=True)
