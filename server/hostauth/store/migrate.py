"""Versioned schema migrations, applied at start-up under an advisory lock.

Migrations are the numbered .sql files beside this module. Every process runs
`migrate` when it starts; the transaction-scoped advisory lock makes
concurrent starters wait for each other, so on an empty database exactly one
applies each migration and all of them come up.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hostauth.store.connection import Connection


log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# An arbitrary constant that names "hostauth schema migration" among the
# advisory locks of a database shared with other applications.
_LOCK_KEY = 0x686F737461757468  # "hostauth"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        match = _NAME.fullmatch(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


async def migrate(conn: Connection, *, upto: int | None = None) -> list[int]:
    """Apply pending migrations (those numbered up to `upto`, when given: a
    database as an earlier release left it); the versions applied by this call."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer     PRIMARY KEY,
                   name       text        NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in load_migrations():
            if migration.version in done or (upto is not None and migration.version > upto):
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            log.info("applied migration %s", migration.name)
            applied_now.append(migration.version)
    return applied_now
