"""`hostauth api-keys ...`: create (printed once, optionally expiring), revoke, list."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from uuid import UUID

from gitpod.v1 import identity_pb2
from hostauth.auth.api_keys import hash_api_key, new_api_key
from hostauth.cli.commands import Subcommands, command
from hostauth.runtime.database import admin_pool
from hostauth.store import ApiKeyStore
from hostauth.store.api_keys import ApiKeyRow


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


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s` as a timedelta."""
    found = re.fullmatch(r"(\d+)([dhms])", text.strip())
    if not found or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"a duration such as 90d, 12h, 30m or 45s, got {text!r}")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


async def api_keys_create(args: argparse.Namespace, dsn: str) -> None:
    pool = await admin_pool(args.settings, dsn)
    try:
        key = new_api_key()
        key_id = await ApiKeyStore(pool).create(
            hash_api_key(key),
            args.principal,
            args.subject,
            tuple(args.grant),
            args.description,
            args.expires_in,
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
    now = datetime.now(UTC)
    for r in rows:
        state = _state(r, now)
        if args.json:
            print(json.dumps(_as_json(r, state)))
            continue
        grants = ",".join(r.grants) or "-"
        expires = r.expires_at.isoformat() if r.expires_at else "never"
        used = r.last_used_at.isoformat() if r.last_used_at else "never"
        print(
            f"{r.id}  {principal_name(r.principal)}  {r.subject_id}  grants={grants}  {state}"
            f"  expires={expires}  last_used={used}",
            r.description,
        )


def _state(row: ApiKeyRow, now: datetime) -> str:
    if row.revoked_at:
        return f"revoked {row.revoked_at.isoformat()}"
    if row.expires_at and row.expires_at <= now:
        return "expired"
    return "active"


def _as_json(row: ApiKeyRow, state: str) -> dict[str, object]:
    """One key as a JSON object: everything stored but its hash."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(row.id),
        "principal": principal_name(row.principal),
        "subject_id": str(row.subject_id),
        "grants": list(row.grants),
        "description": row.description,
        "state": state.split()[0],
        "created_at": when(row.created_at),
        "revoked_at": when(row.revoked_at),
        "expires_at": when(row.expires_at),
        "last_used_at": when(row.last_used_at),
    }


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
    create.add_argument(
        "--expires-in", type=duration, help="the key stops working after this long: 90d, 12h, 30m, 45s"
    )
    create.set_defaults(run=api_keys_create)
    revoke = command(keys, "revoke", "revoke a key by id")
    revoke.add_argument("id", type=UUID)
    revoke.set_defaults(run=api_keys_revoke)
    listing = command(keys, "list", "list keys (never the keys themselves), with expiry and last use")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(run=api_keys_list)
