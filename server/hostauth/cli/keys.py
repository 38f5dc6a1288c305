"""`hostauth keys ...`: generate, status, rotate, rewrap, retire."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hostauth.cli.commands import Subcommands, command
from hostauth.config import Settings
from hostauth.crypto import Sealer
from hostauth.keys.loading import load_keys
from hostauth.keys.registry import KeyAdminError, live_window, register_and_check
from hostauth.keys.rotation import retire, rewrap, rotate, wait_for_replicas
from hostauth.runtime.database import admin_pool
from hostauth.store.encryption_keys import KeyStore


def keys_generate(args: argparse.Namespace, settings: Settings) -> int:
    """New local key material: added to a keyring file, or printed as one."""
    material = base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
    path: Path | None = args.keyring_file
    if path is None:
        print(json.dumps({"primary": args.id, "keys": {args.id: material}}, indent=2))
        return 0
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"primary": args.id, "keys": {}}
    if args.id in doc["keys"]:
        print(f"hostauth: {path} already has a key {args.id}", file=sys.stderr)
        return 1
    doc["keys"][args.id] = material
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    print(f"added key {args.id} to {path} (primary stays {doc['primary']})", file=sys.stderr)
    return 0


async def keys_status(args: argparse.Namespace, dsn: str) -> None:
    settings: Settings = args.settings
    pool = await admin_pool(settings, dsn)
    try:
        store = KeyStore(pool)
        in_use = await store.keys_in_use()
        configured = load_keys(settings).key_ids
        replicas = await store.live_replicas(live_window(settings.heartbeat_s))
        for row in await store.keys():
            here = "configured here" if row.id in configured else "not configured here"
            print(f"{row.id}  {row.state}  ciphertexts={in_use.get(row.id, 0)}  {here}")
        for key_id in sorted(set(in_use) - {r.id for r in await store.keys()}):
            print(f"{key_id}  UNKNOWN  ciphertexts={in_use[key_id]}")
        for replica in replicas:
            held = ",".join(replica.key_ids)
            print(f"replica {replica.id}  keys={held}  sealing under {replica.primary_key_id}")
    finally:
        await pool.close()


async def keys_verify(args: argparse.Namespace, dsn: str) -> None:
    """Read-only: every key id the database uses has material here, and each
    key configured here passes its registry check. Run it against a restored
    database before trusting the backup: without its keys a dump is unreadable."""
    settings: Settings = args.settings
    keys = load_keys(settings)
    pool = await admin_pool(settings, dsn)
    try:
        store = KeyStore(pool)
        in_use = await store.keys_in_use()
        registry = {row.id: row for row in await store.keys()}
    finally:
        await pool.close()
    missing, wrong = [], []
    for key_id in sorted(set(in_use) | set(registry)):
        if key_id not in keys.key_ids:
            state = "MISSING here" if in_use.get(key_id) else "not here (no ciphertext uses it)"
            if in_use.get(key_id):
                missing.append(key_id)
        elif key_id in registry and not await keys.verify_check(key_id, registry[key_id].check_value):
            state = "WRONG material (fails the registry's check)"
            wrong.append(key_id)
        else:
            state = "ok"
        known = registry[key_id].state if key_id in registry else "unregistered"
        print(f"{key_id}  {known}  ciphertexts={in_use.get(key_id, 0)}  {state}")
    problems = []
    if missing:
        problems.append(f"ciphertexts use key(s) with no material here: {', '.join(missing)}")
    if wrong:
        problems.append(f"key material here does not match the registry for: {', '.join(wrong)}")
    if problems:
        raise KeyAdminError("; ".join(problems))
    print(f"every key the database uses has material here ({sum(in_use.values())} ciphertexts)")


async def keys_rotate(args: argparse.Namespace, dsn: str) -> None:
    settings: Settings = args.settings
    pool = await admin_pool(settings, dsn)
    try:
        previous = await rotate(load_keys(settings), KeyStore(pool), args.id, settings.heartbeat_s)
    finally:
        await pool.close()
    print(f"primary key is now {args.id} (was {previous}); run keys rewrap, then keys retire {previous}")


async def keys_rewrap(args: argparse.Namespace, dsn: str) -> None:
    settings: Settings = args.settings
    keys = load_keys(settings)
    pool = await admin_pool(settings, dsn, max_size=2)
    try:
        store = KeyStore(pool)
        primary = await register_and_check(keys, store)
        await wait_for_replicas(store, primary, settings.heartbeat_s, args.wait_s)
        done = await rewrap(
            Sealer(keys, primary), store, batch_size=args.batch_size, pause_s=args.pause_ms / 1000
        )
    finally:
        await pool.close()
    print(f"re-wrapped {done} row(s) under {primary}", file=sys.stderr)


async def keys_retire(args: argparse.Namespace, dsn: str) -> None:
    pool = await admin_pool(args.settings, dsn)
    try:
        await retire(KeyStore(pool), args.id)
    finally:
        await pool.close()
    print(f"retired key {args.id}")


def add_keys_commands(commands: Subcommands) -> None:
    keys = commands.add_parser("keys", help="key-encryption keys: generate, status, rotate, rewrap, retire")
    actions = keys.add_subparsers(dest="action", required=True)
    generate = command(actions, "generate", "new local key material")
    generate.add_argument("--id", required=True, help="the new key's id")
    generate.add_argument("--keyring-file", type=Path, help="add the key to this keyring file (0600)")
    generate.set_defaults(run=keys_generate, offline=True)
    command(actions, "status", "each key's state and the ciphertexts under it").set_defaults(run=keys_status)
    command(
        actions, "verify", "every key id the database uses has material here (read-only; after a restore)"
    ).set_defaults(run=keys_verify)
    rotate_cmd = command(actions, "rotate", "make a configured key primary")
    rotate_cmd.add_argument("id")
    rotate_cmd.set_defaults(run=keys_rotate)
    rewrap_cmd = command(actions, "rewrap", "re-wrap data keys still under non-primary keys, online")
    rewrap_cmd.add_argument("--batch-size", type=int, default=500)
    rewrap_cmd.add_argument("--pause-ms", type=int, default=0, help="pause between batches")
    rewrap_cmd.add_argument("--wait-s", type=float, default=60, help="wait this long for replicas to follow")
    rewrap_cmd.set_defaults(run=keys_rewrap)
    retire_cmd = command(actions, "retire", "retire a key no row uses any more")
    retire_cmd.add_argument("id")
    retire_cmd.set_defaults(run=keys_retire)
