"""`hostauth` (or `python -m hostauth`): serve, and manage API keys, keys and
the audit trail.

    hostauth serve [--workers N]
    hostauth api-keys create --principal service_account --subject UUID [--grant secrets:read]
    hostauth api-keys revoke ID
    hostauth api-keys list
    hostauth keys generate|status|rotate|rewrap|retire ...
    hostauth audit list [--token-id UUID] [--subject UUID] [--integration UUID] [--since 2026-01-01T00:00:00Z]
    hostauth ready
    hostauth --version

Commands use DATABASE_URL; with --dev (before or after the command) and no
DATABASE_URL, the embedded database of `make run` (the running one, or
started for the command).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from hostauth.audit_stream import AuditStream
from hostauth.cli.api_keys import add_api_keys_commands
from hostauth.cli.audit import add_audit_commands
from hostauth.cli.commands import command, global_options
from hostauth.cli.keys import add_keys_commands
from hostauth.cli.ready import add_ready_command
from hostauth.cli.version import version_line
from hostauth.config import ConfigError, Settings
from hostauth.keys.loading import load_keyring
from hostauth.keys.registry import KeyAdminError
from hostauth.runtime.cpus import CpuBudget, cpu_budget
from hostauth.runtime.database import ConnectionBudgetError, check_connection_budget, database
from hostauth.runtime.open_files import raise_open_file_limit
from hostauth.runtime.serve import NO_EXTRAS, Extras
from hostauth.runtime.supervisor import ensure_ports_free, supervise
from hostauth.runtime.tuning import use_event_loop
from hostauth.runtime.worker import prepare, run_server
from hostauth.telemetry.exposition import serving_metrics
from hostauth.telemetry.logs import configure_logging
from hostauth.tls.certificates import ServerCertificates
from hostauth.tls.identities import client_identities


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostauth", description="hostauth")
    parser.add_argument("--version", action="version", version=version_line())
    global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = command(commands, "serve", "serve gRPC and Connect")
    serve_cmd.add_argument(
        "--workers", type=int, help="serving processes (default HOSTAUTH_WORKERS, else CPUs)"
    )
    serve_cmd.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of the supervisor's
    serve_cmd.set_defaults(run=None)
    add_api_keys_commands(commands)
    add_keys_commands(commands)
    add_audit_commands(commands)
    add_ready_command(commands)
    return parser


def _fit_to_cpus(settings: Settings, budget: CpuBudget) -> Settings:
    """Pinning and SCHED_BATCH only when the service owns every CPU it sees
    (the start says which, runtime/supervisor.py and runtime/worker.py)."""
    if budget.owns_every_cpu:
        return settings
    return dataclasses.replace(settings, pin_workers=False, batch_scheduling=False)


def main(argv: list[str] | None = None, *, extras: Extras = NO_EXTRAS, module: str = "hostauth") -> int:
    """The command line. `extras` and `module` are for a program that embeds
    the service (the benchmark): what it adds, and the module its workers run."""
    args = _parser().parse_args(argv)
    configure_logging()
    offline = getattr(args, "offline", False)  # needs no database and no keyring
    try:
        settings = Settings.from_env(os.environ, dev=args.dev, database=not offline)
        configure_logging(settings.log_format, settings.log_level)
        if args.command == "serve" and (exposed := settings.plaintext_exposure()):
            raise ConfigError(exposed)
        if args.command == "serve" and settings.audit_sink is not None:
            AuditStream(settings.audit_sink).close()  # a sink that cannot be opened stops the start here
        if args.command == "serve" and settings.tls is not None:
            ServerCertificates(settings.tls)  # unusable files stop the start here, with their reason
            client_identities(settings)
        if args.command in ("serve", "keys") and not offline:
            load_keyring(settings)  # fail on a bad keyring before starting a database
        if args.command == "serve" and not offline:
            if settings.plaintext_off_loopback():
                logging.getLogger("hostauth").warning(
                    "serving plaintext beyond loopback (HOSTAUTH_ALLOW_PLAINTEXT): secrets cross the"
                    " network unencrypted unless something on the way encrypts them"
                )
            raise_open_file_limit(settings)  # inherited by the workers
    except ConfigError as exc:
        print(f"hostauth: {exc}", file=sys.stderr)
        return 2
    if offline:
        return int(args.run(args, settings) or 0)
    use_event_loop(settings.event_loop)
    run: Callable[[argparse.Namespace, str], Coroutine[Any, Any, None]] | None = args.run
    args.settings = settings
    budget = cpu_budget()
    workers = getattr(args, "workers", None) or settings.workers or budget.workers
    if args.command == "serve" and not args.worker:
        settings = _fit_to_cpus(settings, budget)
    try:
        # /metrics first: a taken port stops the start before any database.
        serving = workers if run is None and not args.worker else 0
        with serving_metrics(settings, serving) as shared, database(settings) as dsn:
            if run is not None:
                asyncio.run(run(args, dsn))
            elif args.worker:
                return asyncio.run(run_server(settings, dsn, worker=True, extras=extras))
            elif workers > 1:
                ensure_ports_free(settings.http_addr, settings.grpc_addr)
                asyncio.run(check_connection_budget(settings, dsn, workers))
                asyncio.run(prepare(settings, dsn))
                return supervise(
                    dataclasses.replace(settings, workers=workers), dsn, module=module, shared=shared
                )
            else:  # one process: all the batches in flight are its own
                asyncio.run(check_connection_budget(settings, dsn, 1))
                return asyncio.run(run_server(dataclasses.replace(settings, workers=1), dsn, extras=extras))
    except TimeoutError:  # an OSError, with no message of its own
        print(
            f"hostauth: the database did not answer within {settings.db_timeout_s:g} s"
            " (HOSTAUTH_DB_TIMEOUT_S)",
            file=sys.stderr,
        )
        return 1
    except (
        KeyAdminError,
        ConnectionBudgetError,
        OSError,
    ) as exc:  # OSError: a port taken, a database not reachable
        print(f"hostauth: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:  # a wrong password, no such database, ...
        print(f"hostauth: the database refused: {exc}", file=sys.stderr)
        return 1
    return 0
