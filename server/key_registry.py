"""Key lifecycle: the database's key registry, replica heartbeats, and the
operations behind `keys rotate | rewrap | retire | status`.

States: primary (encrypts new data), active (decrypts only), retired (no row
uses it). A key becomes primary only when every live replica holds it;
replicas notice a new primary through their heartbeat, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TextIO
from uuid import UUID, uuid4

from server.crypto import Sealer, SecretContext, key_id_of
from server.crypto.keyring import Keys
from server.store import Ciphertext
from server.store.encryption_keys import KeyStore, ReplicaRow, RewrapRow

log = logging.getLogger(__name__)


class KeyAdminError(Exception):
    """A key operation or start-up check refused, with ids named."""


async def register_and_check(keys: Keys, store: KeyStore) -> str:
    """Register configured keys the database does not know, check the rest,
    and return the primary key id. Refuses (KeyAdminError) when configured
    material fails its check, when rows use keys not configured here, or when
    the primary is not configured here."""
    async with store.locked() as tx:
        known = {row.id: row for row in await tx.keys()}
        has_primary = any(r.state == "primary" for r in known.values())
        for key_id in sorted(keys.key_ids - known.keys()):
            state = "primary" if not has_primary and key_id == keys.default_primary else "active"
            await tx.insert_key(key_id, state, await keys.make_check(key_id))
            log.info("registered key %s as %s", key_id, state)
        rows = {row.id: row for row in await tx.keys()}
        if not any(r.state == "primary" for r in rows.values()):
            await tx.make_primary(keys.default_primary)
            rows = {row.id: row for row in await tx.keys()}
    problems = []
    wrong = [
        key_id
        for key_id in sorted(keys.key_ids & rows.keys())
        if not await keys.verify_check(key_id, rows[key_id].check_value)
    ]
    if wrong:
        problems.append(
            f"configured key material does not match the database's check for key(s): {', '.join(wrong)}"
        )
    missing = sorted(set(await store.keys_in_use()) - keys.key_ids)
    if missing:
        problems.append(f"rows use key(s) this server does not have: {', '.join(missing)}")
    primary = next(r.id for r in rows.values() if r.state == "primary")
    if primary not in keys.key_ids:
        problems.append(f"the primary key {primary} is not configured here")
    if problems:
        raise KeyAdminError("; ".join(problems))
    return primary


@dataclass
class Heartbeat:
    """Tells the database which keys this replica holds and which it uses, and
    follows the primary the database names."""

    store: KeyStore
    sealer: Sealer
    interval_s: float
    replica_id: UUID = field(default_factory=uuid4)

    async def beat(self) -> None:
        rows = await self.store.keys()
        primary = next((r.id for r in rows if r.state == "primary"), None)
        for row in rows:
            if row.state == "retired" and row.id in self.sealer.keys.key_ids:
                self.sealer.keys.flush(row.id)  # no cached data key outlives its key
        if primary is not None and primary != self.sealer.primary_id:
            if primary in self.sealer.keys.key_ids:
                log.info("primary key is now %s (was %s)", primary, self.sealer.primary_id)
                self.sealer.set_primary(primary)
            else:
                log.error(
                    "the primary key %s is not configured here; still sealing under %s",
                    primary,
                    self.sealer.primary_id,
                )
        await self.store.heartbeat(
            ReplicaRow(self.replica_id, tuple(sorted(self.sealer.keys.key_ids)), self.sealer.primary_id)
        )

    async def start(self) -> None:
        """The first beat; and the rows of replicas long gone are dropped."""
        await self.beat()
        forgotten = await self.store.forget_silent_replicas(FORGET_AFTER)
        if forgotten:
            log.info("forgot %d replica(s) not heard from for %s", forgotten, FORGET_AFTER)

    async def run(self) -> None:
        try:
            failing = False  # said once, not every beat, while the database is out
            while True:
                try:
                    await self.beat()
                except Exception as exc:  # noqa: BLE001 # a missed beat is retried
                    if not failing:
                        log.warning(
                            "heartbeat failed: %s; retrying every %g s", type(exc).__name__, self.interval_s
                        )
                    failing = True
                else:
                    if failing:
                        log.info("heartbeat is back")
                    failing = False
                await asyncio.sleep(self.interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.leave(self.replica_id))


# A replica silent this long is gone (killed: it never said it left).
FORGET_AFTER = timedelta(hours=1)


def live_window(interval_s: float) -> timedelta:
    """A replica is live while its last beat is younger than three intervals."""
    return timedelta(seconds=3 * interval_s)


async def rotate(keys: Keys, store: KeyStore, key_id: str, interval_s: float) -> str | None:
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
    token = Ciphertext(await sealer.rewrap(row.token, SecretContext(tid, "token")))
    refresh: Ciphertext | None = None
    if row.refresh_token is not None:
        refresh = Ciphertext(await sealer.rewrap(row.refresh_token, SecretContext(tid, "refresh_token")))
    return row, token, key_id_of(token), refresh, key_id_of(refresh) if refresh is not None else None


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
        if not found_any:
            return done
