"""Key rotation, behind `keys rotate | rewrap | retire`: a configured key
made primary once every live replica holds it, data keys re-wrapped under
it online, and an old key retired once no row uses it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO
from uuid import UUID

from hostauth.core.model import FIELD_CLIENT_SECRET, FIELD_REFRESH_TOKEN, FIELD_TOKEN
from hostauth.crypto import Sealer, SecretContext, key_id_of
from hostauth.crypto.keyring import KeyProviders
from hostauth.keys.registry import KeyAdminError, live_window
from hostauth.store import Ciphertext
from hostauth.store.encryption_keys import KeyStore, RewrapRow


async def rotate(keys: KeyProviders, store: KeyStore, key_id: str, interval_s: float) -> str | None:
    """Make key_id primary; returns the previous primary."""
    if key_id not in keys.key_ids:
        raise KeyAdminError(f"key {key_id} is not configured here (the rotating command needs it too)")
    async with store.locked() as tx:
        rows = {row.id: row for row in await tx.keys()}
        if key_id not in rows:
            await tx.insert_key(key_id, "active", await keys.make_check(key_id))
        elif rows[key_id].state == "retired":
            raise KeyAdminError(f"key {key_id} is retired")
        elif not await keys.verify_check(key_id, rows[key_id].check_value):
            raise KeyAdminError(f"configured material of key {key_id} does not match the database's check")
        lacking = [
            str(r.id) for r in await tx.live_replicas(live_window(interval_s)) if key_id not in r.key_ids
        ]
        if lacking:
            raise KeyAdminError(
                f"live replica(s) {', '.join(lacking)} do not hold key {key_id}: configure it there first"
            )
        return await tx.make_primary(key_id)


async def retire(store: KeyStore, key_id: str) -> None:
    async with store.locked() as tx:
        state = next((r.state for r in await tx.keys() if r.id == key_id), None)
        if state is None:
            raise KeyAdminError(f"no key {key_id}")
        if state == "primary":
            raise KeyAdminError(f"key {key_id} is primary: rotate to another key first")
        in_use = await tx.rows_using(key_id)
        if in_use:
            raise KeyAdminError(f"key {key_id} is still used by {in_use} row(s): run keys rewrap first")
        await tx.set_state(key_id, "retired")


async def wait_for_replicas(store: KeyStore, primary: str, interval_s: float, timeout_s: float) -> None:
    """Until every live replica seals under `primary` (so no new row lands
    under the old key after the rewrap passed it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        behind = [
            r for r in await store.live_replicas(live_window(interval_s)) if r.primary_key_id != primary
        ]
        if not behind:
            # Requests that sealed under the old key just before the switch
            # commit within moments: let them land before the first pass.
            await asyncio.sleep(interval_s)
            return
        if time.monotonic() > deadline:
            ids = ", ".join(str(r.id) for r in behind)
            raise KeyAdminError(f"replica(s) {ids} still seal under another key than {primary}")
        await asyncio.sleep(interval_s / 2)


async def _rewrap_row(
    sealer: Sealer, row: RewrapRow
) -> tuple[RewrapRow, Ciphertext, str, Ciphertext | None, str | None]:
    tid = str(row.id)
    token = Ciphertext(await sealer.rewrap(row.token, SecretContext(tid, FIELD_TOKEN)))
    refresh: Ciphertext | None = None
    if row.refresh_token is not None:
        refresh = Ciphertext(await sealer.rewrap(row.refresh_token, SecretContext(tid, FIELD_REFRESH_TOKEN)))
    return row, token, key_id_of(token), refresh, key_id_of(refresh) if refresh is not None else None


async def _rewrap_integrations(
    sealer: Sealer, store: KeyStore, primary: str, batch_size: int
) -> tuple[int, bool]:
    """One pass over the SCM integrations' client secrets: how many were
    written, and whether any was found."""
    done, found = 0, False
    after: UUID | None = None
    while batch := await store.integration_rewrap_batch(primary, after, batch_size):
        after, found = batch[-1][0], True
        rewrapped = []
        for integration_id, generation, ciphertext in batch:
            context = SecretContext(str(integration_id), FIELD_CLIENT_SECRET)
            new = Ciphertext(await sealer.rewrap(ciphertext, context))
            rewrapped.append((integration_id, generation, new, key_id_of(new)))
        done += await store.store_rewrapped_integrations(rewrapped)
    return done, found


async def rewrap(
    sealer: Sealer,
    store: KeyStore,
    *,
    batch_size: int = 500,
    pause_s: float = 0.0,
    out: TextIO = sys.stderr,
    before_write: Callable[[list[RewrapRow]], object] | None = None,
) -> int:
    """Re-wrap every data key still under a non-primary key, batch by batch,
    each batch in its own transaction; passes repeat until none is left
    (rows a client rewrote meanwhile are picked up by the next pass).
    Safe to stop at any point and run again. Returns rows re-wrapped."""
    primary = sealer.primary_id
    total = await store.count_not_under(primary)
    done = 0
    started = time.monotonic()
    print(f"rewrap: {total} row(s) to re-wrap under {primary}", file=out, flush=True)
    while True:
        after: UUID | None = None
        found_any = False
        while True:
            batch = await store.rewrap_batch(primary, after, batch_size)
            if not batch:
                break
            found_any = True
            after = batch[-1].id
            rewrapped = [await _rewrap_row(sealer, row) for row in batch]
            if before_write is not None:
                result = before_write(batch)
                if asyncio.iscoroutine(result):
                    await result
            done += await store.store_rewrapped(rewrapped)
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"rewrap: {done}/{total} rows ({rate:.0f} rows/s)", file=out, flush=True)
            if pause_s:
                await asyncio.sleep(pause_s)
        written, found = await _rewrap_integrations(sealer, store, primary, batch_size)
        done += written
        if not (found_any or found):
            return done
