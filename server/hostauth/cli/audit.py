"""`hostauth audit list`: who did what to which token, oldest first."""

from __future__ import annotations

import argparse
from datetime import datetime
from uuid import UUID

from hostauth.cli.api_keys import principal_name
from hostauth.cli.commands import Subcommands, command
from hostauth.runtime.database import admin_pool
from hostauth.store import list_audit


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
            f"{principal_name(e.principal)}:{e.subject_id}  {e.credential_id}  request={e.request_id}"
        )


def add_audit_commands(commands: Subcommands) -> None:
    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    audit_list_cmd = command(audit, "list", "list audit events, oldest first")
    audit_list_cmd.add_argument("--token-id", type=UUID)
    audit_list_cmd.add_argument("--subject", type=UUID)
    audit_list_cmd.add_argument("--since", type=datetime.fromisoformat, help="ISO 8601 time")
    audit_list_cmd.set_defaults(run=audit_list)
