"""`hostauth audit list`: who did what to which token, newest first."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from hostauth.audit_stream import event_record
from hostauth.cli.api_keys import principal_name
from hostauth.cli.commands import Subcommands, command
from hostauth.config import Settings
from hostauth.runtime.database import admin_pool
from hostauth.store import list_audit
from hostauth.store.audit_partitions import prune


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"an ISO 8601 time such as 2026-12-01T00:00:00Z, got {text!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    if not text.isdecimal() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"a whole number above 0, got {text!r}")
    return int(text)


async def audit_list(args: argparse.Namespace, dsn: str) -> None:
    pool = await admin_pool(args.settings, dsn)
    try:
        rows = await list_audit(
            pool,
            token_id=args.token_id,
            subject_id=args.subject,
            integration_id=args.integration,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
    finally:
        await pool.close()
    for r in rows:
        e = r.event
        if args.json:
            print(json.dumps(event_record(e, r.at)))
            continue
        print(
            f"{r.at.isoformat()}  {e.method}  token={e.token_id or '-'}"
            f"{f'  integration={e.integration_id}' if e.integration_id else ''}  {e.outcome}  "
            f"{principal_name(e.principal)}:{e.subject_id}  {e.credential_id}  request={e.request_id}"
        )


async def audit_prune(args: argparse.Namespace, dsn: str) -> None:
    settings: Settings = args.settings
    conn = await asyncpg.connect(dsn, timeout=settings.db_timeout_s)
    try:
        pruned = await prune(conn, args.before, settings.audit_retention_days)
    finally:
        await conn.close()
    if not pruned.dropped:
        print(f"no partition lies wholly before {args.before.isoformat()}")
        return
    print(f"dropped {len(pruned.dropped)} partition(s), {pruned.rows} row(s): {', '.join(pruned.dropped)}")


def add_audit_commands(commands: Subcommands) -> None:
    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    audit_list_cmd = command(audit, "list", "list audit events, newest first")
    audit_list_cmd.add_argument("--token-id", type=UUID)
    audit_list_cmd.add_argument("--subject", type=UUID)
    audit_list_cmd.add_argument("--integration", type=UUID, help="events of this SCM integration")
    audit_list_cmd.add_argument("--since", type=_when, help="ISO 8601 time: events at or after it")
    audit_list_cmd.add_argument("--until", type=_when, help="ISO 8601 time: events before it")
    audit_list_cmd.add_argument(
        "--limit", type=_positive, default=100, help="at most this many (default 100)"
    )
    audit_list_cmd.add_argument("--json", action="store_true", help="one JSON object a line")
    audit_list_cmd.set_defaults(run=audit_list)
    prune_cmd = command(
        audit, "prune", "drop the audit trail's partitions wholly before a time, outside the retention floor"
    )
    prune_cmd.add_argument("--before", type=_when, required=True, help="ISO 8601 time")
    prune_cmd.set_defaults(run=audit_prune)
