"""`hostauth api-keys ...`: create (printed once), revoke, list."""

from __future__ import annotations

import argparse
import sys
from uuid import UUID

from gitpod.v1 import identity_pb2
from hostauth.auth.api_keys import hash_api_key, new_api_key
from hostauth.cli.commands import Subcommands, command
from hostauth.runtime.database import admin_pool
from hostauth.store import ApiKeyStore


def principal_number(name: str) -> int:
    """`runner`, `PRINCIPAL_RUNNER`, ... as the Principal's number."""
    full = name.upper() if name.upper().startswith("PRINCIPAL_") else "PRINCIPAL_" + name.upper()
    value = identity_pb2.Principal.DESCRIPTOR.values_by_name.get(full)
    if value is None or value.number == 0:
        raise argparse.ArgumentTypeError(f"unknown principal {name!r}")
    number: int = value.number
    return number


def principal_name(number: int) -> str:
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
            f"{r.id}  {principal_name(r.principal)}  {r.subject_id}  grants={grants}  {state}", r.description
        )


def add_api_keys_commands(commands: Subcommands) -> None:
    keys = commands.add_parser("api-keys", help="create, revoke and list API keys").add_subparsers(
        dest="action", required=True
    )
    create = command(keys, "create", "create a key and print it once")
    create.add_argument(
        "--principal", type=principal_number, required=True, help="user, runner, service_account, ..."
    )
    create.add_argument("--subject", type=UUID, required=True, help="the subject id the key acts as")
    create.add_argument("--grant", action="append", default=[], help="e.g. secrets:read (repeatable)")
    create.add_argument("--description", default="")
    create.set_defaults(run=api_keys_create)
    revoke = command(keys, "revoke", "revoke a key by id")
    revoke.add_argument("id", type=UUID)
    revoke.set_defaults(run=api_keys_revoke)
    command(keys, "list", "list keys (never the keys themselves)").set_defaults(run=api_keys_list)
