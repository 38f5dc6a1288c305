"""Benchmark: online rewrap rows/s next to a plain batched UPDATE of the same rows.

    .venv/bin/python -m bench.rewrap [--rows 5000] [--batch-size 500]

Uses DATABASE_URL, or starts a private embedded PostgreSQL (durable: fsync on).
Both runs touch the same rows in batches of the same size, each batch in its
own transaction; the ratio says what unwrapping and re-wrapping data keys
(plus reading the rows) costs over the bare writes.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from hostauth.core.model import FIELD_REFRESH_TOKEN, FIELD_TOKEN, AuditEvent, TokenRecord
from hostauth.crypto import KeyProviders, LocalKeyring, Sealer, SecretContext, key_id_of
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.keys.registry import register_and_check
from hostauth.keys.rotation import rewrap, rotate
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from hostauth.store import (
    Ciphertext,
    Sealed,
    SealedSecrets,
    TokenStore,
    connect_pool,
)
from hostauth.store.encryption_keys import KeyStore
from tests.support.db import create_database


def keys() -> KeyProviders:
    found: dict[str, object] = {}
    for key_id in ("k-old", "k-new"):
        found.update(json.loads(generate_keyring_json(key_id))["keys"])
    doc = {"primary": "k-old", "keys": found}
    return KeyProviders.local(LocalKeyring.from_json(json.dumps(doc), source="bench"))


async def seed(store: TokenStore, sealer: Sealer, rows: int) -> None:
    async with store.session() as db:
        for _ in range(rows):
            token_id = uuid4()
            sealed = []
            for field in (FIELD_TOKEN, FIELD_REFRESH_TOKEN):
                blob = await sealer.seal(os.urandom(20).hex().encode(), SecretContext(str(token_id), field))
                sealed.append(Sealed(Ciphertext(blob), key_id_of(blob)))
            record = TokenRecord(token_id, uuid4(), uuid4(), 2, "github.com", 1, None, None, ("repo",))
            audit = AuditEvent(f"bench-{token_id}", "Create", token_id, 2, uuid4(), "bench", "ok")
            await db.insert(record, SealedSecrets(sealed[0], sealed[1]), audit)


async def plain_update(dsn: str, batch_size: int) -> tuple[int, float]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        done, after = 0, None
        while True:
            rows = await conn.fetch(
                "SELECT id, generation, token_ciphertext, refresh_token_ciphertext "
                "FROM host_authentication_tokens "
                "WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
                after,
                batch_size,
            )
            if not rows:
                break
            after = rows[-1]["id"]
            async with conn.transaction():
                await conn.executemany(
                    "UPDATE host_authentication_tokens "
                    "SET token_ciphertext = $3, refresh_token_ciphertext = $4, generation = generation + 1 "
                    "WHERE id = $1 AND generation = $2",
                    [tuple(r.values()) for r in rows],
                )
            done += len(rows)
        return done, time.perf_counter() - started
    finally:
        await conn.close()


async def run(dsn: str, rows: int, batch_size: int) -> None:
    db_dsn = await create_database(dsn)
    pool = await connect_pool(db_dsn)
    try:
        ring = keys()
        key_store = KeyStore(pool)
        sealer = Sealer(ring, await register_and_check(ring, key_store))
        await seed(TokenStore(pool), sealer, rows)
        done_plain, secs_plain = await plain_update(db_dsn, batch_size)
        await rotate(ring, key_store, "k-new", 2.0)
        sealer.set_primary("k-new")
        started = time.perf_counter()
        done = await rewrap(sealer, key_store, batch_size=batch_size, out=io.StringIO())
        secs = time.perf_counter() - started
    finally:
        await pool.close()
    plain_rate, rewrap_rate = done_plain / secs_plain, done / secs
    print(f"rows={rows} batch={batch_size}")
    print(f"{'what':<34}{'rows':>8}{'seconds':>10}{'rows/s':>10}")
    print(f"{'plain batched UPDATE (baseline)':<34}{done_plain:>8}{secs_plain:>10.2f}{plain_rate:>10.0f}")
    print(f"{'keys rewrap (2 data keys per row)':<34}{done:>8}{secs:>10.2f}{rewrap_rate:>10.0f}")
    print(f"rewrap / baseline = {rewrap_rate / plain_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL")
    if dsn:
        asyncio.run(run(dsn, args.rows, args.batch_size))
        return
    folder = Path(tempfile.mkdtemp(prefix="hostauth-bench-"))
    folder.chmod(0o755)
    try:
        with EmbeddedPostgres(folder / "pgdata") as pg:
            asyncio.run(run(pg.dsn, args.rows, args.batch_size))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
