"""The database's key registry and replica heartbeats.

States: primary (encrypts new data), active (decrypts only), retired (no row
uses it). At start a replica registers the keys it holds and is refused if
rows use a key it lacks or its material fails a key's check; by heartbeat
it then tells which keys it holds and seals under, and picks up a new
primary without a restart. The operations that change states are in
rotation.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID, uuid4

from hostauth.crypto import Sealer
from hostauth.crypto.keyring import KeyProviders
from hostauth.store.encryption_keys import KeyStore, ReplicaRow

log = logging.getLogger(__name__)


class KeyAdminError(Exception):
    """A key operation or start-up check refused, with ids named."""


async def register_and_check(keys: KeyProviders, store: KeyStore) -> str:
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
