"""`python -m server`: serve, and manage API keys and the audit trail.

    python -m server serve [--dev]
    python -m server api-keys create --principal service_account --subject UUID [--grant secrets:read]
    python -m server api-keys revoke ID
    python -m server api-keys list
    python -m server audit list [--token-id UUID] [--subject UUID] [--since 2026-01-01T00:00:00Z]

Commands use DATABASE_URL; with --dev and no DATABASE_URL, the embedded
database of `make run` (the running one, or started for the command).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from gitpod.v1 import identity_pb2
from server.app import serve
from server.auth.api_key_cache import CachedApiKeys
from server.auth.api_keys import hash_api_key, new_api_key
from server.auth.authenticator import Authenticator
from server.auth.jwt_verifier import JwtVerifier
from server.cli_keys import add_keys_commands
from server.config import ConfigError, Settings
from server.crypto import Sealer
from server.cursor import CursorCodec
from server.dev_api_key import ensure_dev_api_key
from server.heap import freeze_startup_heap
from server.key_registry import Heartbeat, KeyAdminError, register_and_check
from server.keys import load_keyring, load_keys
from server.runtime import admin_pool, database
from server.service import HostAuthService
from server.store import ApiKeyStore, TokenStore, close_pool, connect_pool, cursor_key, list_audit
from server.store.coalesce import batches_in_flight_per_worker
from server.store.encryption_keys import KeyStore
from server.workers import ensure_ports_free, supervise

log = logging.getLogger("server")


async def prepare(settings: Settings, dsn: str) -> None:
    """What the supervisor does once before starting workers: migrations, key
    checks (a refusal stops everything here), the development API key."""
    keys = load_keys(settings)
    pool = await admin_pool(settings, dsn)
    try:
        await register_and_check(keys, KeyStore(pool))
        if settings.dev:
            await ensure_dev_api_key(settings, ApiKeyStore(pool))
    finally:
        await pool.close()


async def run_server(settings: Settings, dsn: str, *, worker: bool = False) -> None:
    keys = load_keys(settings)
    jwt = JwtVerifier(settings.jwt) if settings.jwt else None
    pool = await connect_pool(
        dsn,
        min_size=min(2, settings.db_pool_size),
        max_size=settings.db_pool_size,
        timeout_s=settings.db_timeout_s,
    )
    heartbeat: asyncio.Task[None] | None = None
    cached_keys: CachedApiKeys | None = None
    try:
        key_store = KeyStore(pool)
        sealer = Sealer(keys, await register_and_check(keys, key_store))
        beat = Heartbeat(key_store, sealer, settings.heartbeat_s)
        await beat.start()
        heartbeat = asyncio.create_task(beat.run())
        api_keys = ApiKeyStore(pool)
        if settings.dev and not worker:
            await ensure_dev_api_key(settings, api_keys)
        cached_keys = CachedApiKeys(api_keys)
        await cached_keys.start()
        batches = batches_in_flight_per_worker(settings.workers)
        store = TokenStore(pool, batches_in_flight=batches)
        core = HostAuthService(store, sealer, CursorCodec(await cursor_key(pool)))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serve(core, Authenticator(cached_keys, jwt), settings, reuse_port=worker) as running:
            freeze_startup_heap()
            log.info(
                "serving Connect on %s and gRPC on %s; database batches of a kind in flight: %d",
                running.http_url,
                running.grpc,
                batches,
            )
            await stop.wait()
            log.info("shutting down")
    finally:
        # The revocation watch holds a pooled connection: closing the pool
        # would wait for it forever (say, when a port could not be bound).
        if cached_keys is not None:
            await cached_keys.close()
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await close_pool(pool)


def _principal(name: str) -> int:
    full = name.upper() if name.upper().startswith("PRINCIPAL_") else "PRINCIPAL_" + name.upper()
    value = identity_pb2.Principal.DESCRIPTOR.values_by_name.get(full)
    if value is None or value.number == 0:
        raise argparse.ArgumentTypeError(f"unknown principal {name!r}")
    number: int = value.number
    return number


def _principal_name(number: int) -> str:
    return identity_pb2.Principal.Name(number)


async def api_keys_create(args: argparse.Namespace, dsn: str) -> None:
    pool = await admin_pool(args.settings, dsn)
    try:
        key = new_api_key()
        key_id = await ApiKeyStore(pool).create(
            hash_api_key(key), args.principal, args.subject, tuple(args.grant), args.description
        )
    finally:
        await pool.close()
    print(f"id: {key_id}", file=sys.stderr)
    print("The key is shown once; only its hash is stored:", file=sys.stderr)
    print(key)


async def api_keys_revoke(args: argparse.Namespace, dsn: str) -> None:
    pool = await admin_pool(args.settings, dsn)
    try:
        revoked = await ApiKeyStore(pool).revoke(args.id)
    finally:
        await pool.close()
    if not revoked:
        raise SystemExit(f"no active API key {args.id}")
    print(f"revoked {args.id}")


async def api_keys_list(args: argparse.Namespace, dsn: str) -> None:
    pool = await admin_pool(args.settings, dsn)
    try:
        rows = await ApiKeyStore(pool).list()
    finally:
        await pool.close()
    for r in rows:
        state = f"revoked {r.revoked_at.isoformat()}" if r.revoked_at else "active"
        grants = ",".join(r.grants) or "-"
        print(
            f"{r.id}  {_principal_name(r.principal)}  {r.subject_id}  grants={grants}  {state}", r.description
        )


async def audit_list(args: argparse.Namespace, dsn: str) -> None:
    pool = await admin_pool(args.settings, dsn)
    try:
        rows = await list_audit(pool, token_id=args.token_id, subject_id=args.subject, since=args.since)
    finally:
        await pool.close()
    for r in rows:
        e = r.event
        print(
            f"{r.at.isoformat()}  {e.method}  token={e.token_id or '-'}  {e.outcome}  "
            f"{_principal_name(e.principal)}:{e.subject_id}  {e.credential_id}  request={e.request_id}"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description="hostauth")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_)
        sub.add_argument("--dev", action="store_true", help="use the embedded development database")
        return sub

    serve_cmd = command(commands, "serve", "serve gRPC and Connect")
    serve_cmd.add_argument(
        "--workers", type=int, help="serving processes (default HOSTAUTH_WORKERS, else CPUs)"
    )
    serve_cmd.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of the supervisor's
    serve_cmd.set_defaults(run=None)

    keys = commands.add_parser("api-keys", help="create, revoke and list API keys").add_subparsers(
        dest="action", required=True
    )
    create = command(keys, "create", "create a key and print it once")
    create.add_argument(
        "--principal", type=_principal, required=True, help="user, runner, service_account, ..."
    )
    create.add_argument("--subject", type=UUID, required=True, help="the subject id the key acts as")
    create.add_argument("--grant", action="append", default=[], help="e.g. secrets:read (repeatable)")
    create.add_argument("--description", default="")
    create.set_defaults(run=api_keys_create)
    revoke = command(keys, "revoke", "revoke a key by id")
    revoke.add_argument("id", type=UUID)
    revoke.set_defaults(run=api_keys_revoke)
    command(keys, "list", "list keys (never the keys themselves)").set_defaults(run=api_keys_list)

    add_keys_commands(commands, command)

    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    audit_list_cmd = command(audit, "list", "list audit events, oldest first")
    audit_list_cmd.add_argument("--token-id", type=UUID)
    audit_list_cmd.add_argument("--subject", type=UUID)
    audit_list_cmd.add_argument("--since", type=datetime.fromisoformat, help="ISO 8601 time")
    audit_list_cmd.set_defaults(run=audit_list)
    return parser


def _use_event_loop(kind: str) -> None:
    # uvloop measured 1.6x asyncio's GetValue rate here (docs/benchmarks.md);
    # HOSTAUTH_EVENT_LOOP=asyncio falls back to the standard loop.
    if kind == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _use_event_loop(os.environ.get("HOSTAUTH_EVENT_LOOP", "uvloop"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    offline = getattr(args, "offline", False)  # needs no database and no keyring
    try:
        settings = Settings.from_env(os.environ, dev=args.dev, database=not offline)
        if args.command in ("serve", "keys") and not offline:
            load_keyring(settings)  # fail on a bad keyring before starting a database
    except ConfigError as exc:
        print(f"hostauth: {exc}", file=sys.stderr)
        return 2
    if offline:
        return int(args.run(args, settings) or 0)
    run: Callable[[argparse.Namespace, str], Coroutine[Any, Any, None]] | None = args.run
    args.settings = settings
    try:
        with database(settings) as dsn:
            if run is not None:
                asyncio.run(run(args, dsn))
            elif args.worker:
                asyncio.run(run_server(settings, dsn, worker=True))
            elif (workers := args.workers or settings.workers) > 1:
                ensure_ports_free(settings.http_addr, settings.grpc_addr)
                asyncio.run(prepare(settings, dsn))
                return supervise(dataclasses.replace(settings, workers=workers), dsn)
            else:  # one process: all the batches in flight are its own
                asyncio.run(run_server(dataclasses.replace(settings, workers=1), dsn))
    except TimeoutError:  # an OSError, with no message of its own
        print(
            f"hostauth: the database did not answer within {settings.db_timeout_s:g} s"
            " (HOSTAUTH_DB_TIMEOUT_S)",
            file=sys.stderr,
        )
        return 1
    except (KeyAdminError, OSError) as exc:  # OSError: a port taken, a database not reachable
        print(f"hostauth: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:  # a wrong password, no such database, ...
        print(f"hostauth: the database refused: {exc}", file=sys.stderr)
        return 1
    return 0
