"""SQL for API keys: hashes in, callers out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hostauth.store.pooled import drop, pooled


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: UUID
    principal: int
    subject_id: UUID
    grants: tuple[str, ...]
    description: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


REVOCATIONS = "hostauth_api_key_revoked"
# In the text of a watch's heartbeat, so that an operator (or a test) can find
# the watch's backend in pg_stat_activity.
HEARTBEAT_MARK = "hostauth api key revocation watch"
_STOP_WAIT_S = 2.0  # for the watch's connection to answer UNLISTEN, else it is closed
_COLUMNS = "id, principal, subject_id, grants, description, created_at, revoked_at, expires_at, last_used_at"

# A key's use is written at most once a minute: a lookup (the cache's miss)
# finds the key and, when its last use is older, records this one.
_FIND_ACTIVE = f"""
WITH k AS (
    SELECT {_COLUMNS} FROM api_keys
    WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
), used AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT id FROM k) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT * FROM k"""  # noqa: S608 # fixed column names


def _row(row: asyncpg.Record) -> ApiKeyRow:
    return ApiKeyRow(
        id=row["id"],
        principal=row["principal"],
        subject_id=row["subject_id"],
        grants=tuple(row["grants"]),
        description=row["description"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
    )


class ApiKeyStore:
    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def find_active(self, key_hash: bytes) -> ApiKeyRow | None:
        async with pooled(self._pool) as conn:
            row = await conn.fetchrow(_FIND_ACTIVE, key_hash)
        return None if row is None else _row(row)

    async def create(
        self,
        key_hash: bytes,
        principal: int,
        subject_id: UUID,
        grants: tuple[str, ...] = (),
        description: str = "",
        expires_in: timedelta | None = None,
    ) -> UUID:
        """Store a key's hash; an already stored hash keeps its row (and id).
        expires_in: the key authenticates until then (from now, by the
        database's clock); None: until revoked."""
        async with pooled(self._pool) as conn:
            found: UUID = await conn.fetchval(
                """INSERT INTO api_keys (id, key_hash, principal, subject_id, grants, description, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)
                   ON CONFLICT (key_hash) DO UPDATE SET key_hash = EXCLUDED.key_hash
                   RETURNING id""",
                uuid4(),
                key_hash,
                principal,
                subject_id,
                list(grants),
                description,
                expires_in,
            )
        return found

    async def revoke(self, key_id: UUID) -> bool:
        """Revoke a key and tell every server (NOTIFY, sent on commit) to
        forget what it cached."""
        async with pooled(self._pool) as conn, conn.transaction():
            status: str = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
            )
            await conn.execute("SELECT pg_notify($1, $2)", REVOCATIONS, str(key_id))
        return status == "UPDATE 1"

    async def watch_revocations(
        self, on_revoke: Callable[[], None], on_lost: Callable[[], None]
    ) -> RevocationWatch:
        """Call on_revoke for every revocation, on_lost if the watch's
        connection is closed. Holds one pooled connection; proved alive once
        before it is returned."""
        conn = await self._pool.acquire()
        watch = RevocationWatch(self._pool, conn, on_revoke, on_lost)
        try:
            await watch.listen()
            await watch.beat()
        except BaseException:  # a dead connection from the pool, or cancelled
            drop(conn)
            raise
        return watch

    async def list(self) -> list[ApiKeyRow]:
        async with pooled(self._pool) as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")  # noqa: S608
        return [_row(r) for r in rows]


class RevocationWatch:
    """A pooled connection LISTENing for revocations.

    A connection whose backend stops answering (stopped, or cut off without a
    reset) raises no error and delivers nothing: `beat` sends a notification
    through the watch's own connection and waits to hear it back. Notices are
    delivered in commit order, so once a beat is heard every revocation
    committed before it was sent has been heard too.
    """

    __slots__ = ("_beats", "_channel", "_conn", "_heard", "_notified", "_pool", "_terminated")

    def __init__(
        self,
        pool: asyncpg.Pool,
        conn: PoolConnectionProxy[asyncpg.Record],
        on_revoke: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._conn = conn
        # One channel per watch: no other server hears this one's beats.
        self._channel = f"hostauth_watch_{uuid4().hex}"
        self._beats = itertools.count()
        self._heard: dict[str, asyncio.Future[None]] = {}

        def notified(*_: object) -> None:
            on_revoke()

        def terminated(*_: object) -> None:
            on_lost()

        self._notified = notified
        self._terminated = terminated

    async def listen(self) -> None:
        await self._conn.add_listener(REVOCATIONS, self._notified)
        await self._conn.add_listener(self._channel, self._heartbeat)
        self._conn.add_termination_listener(self._terminated)

    def _heartbeat(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        heard = self._heard.pop(str(payload), None)
        if heard is not None and not heard.done():
            heard.set_result(None)

    async def beat(self) -> None:
        """Return once a notification sent now has come back (no time limit:
        the caller bounds it)."""
        payload = str(next(self._beats))
        heard = asyncio.get_running_loop().create_future()
        self._heard[payload] = heard
        try:
            await self._conn.execute(f"SELECT pg_notify($1, $2) -- {HEARTBEAT_MARK}", self._channel, payload)
            await heard
        finally:
            self._heard.pop(payload, None)

    async def stop(self) -> None:
        with contextlib.suppress(asyncpg.InterfaceError):  # already lost and detached
            self._conn.remove_termination_listener(self._terminated)
        try:
            async with asyncio.timeout(_STOP_WAIT_S):  # a backend that stopped answering never does
                await self._conn.remove_listener(REVOCATIONS, self._notified)
                await self._conn.remove_listener(self._channel, self._heartbeat)
                await self._pool.release(self._conn)
        except Exception:  # noqa: BLE001 # lost, or being lost: asyncpg's errors then vary
            # The pool must get its slot back whatever state the connection
            # is in, or its close() waits for ever.
            drop(self._conn)
