"""Counts over the whole token table and key registry, for the gauges
(telemetry/gauges.py): each a single aggregate query, run at most once a
minute by one worker."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from hostauth.store.pooled import pooled


@dataclass(frozen=True, slots=True)
class FleetCounts:
    keys_by_state: dict[str, int]
    primary_age_s: float | None
    rewrap_pending: int
    # Tokens past expiry without a refresh token, per host.
    expired_by_host: dict[str, int]


async def fleet_counts(pool: asyncpg.Pool) -> FleetCounts:
    async with pooled(pool) as conn:
        keys = await conn.fetch(
            """SELECT state, count(*) AS n,
                      max(extract(epoch FROM now() - updated_at)) FILTER (WHERE state = 'primary') AS age
               FROM encryption_keys GROUP BY state"""
        )
        pending: int = await conn.fetchval(
            """SELECT (SELECT count(*) FROM host_authentication_tokens t
                       WHERE EXISTS (SELECT 1 FROM encryption_keys k WHERE k.state = 'primary'
                                     AND (t.token_kek_id <> k.id OR t.refresh_token_kek_id <> k.id)))
                    + (SELECT count(*) FROM scm_integrations i
                       WHERE EXISTS (SELECT 1 FROM encryption_keys k WHERE k.state = 'primary'
                                     AND i.client_secret_kek_id <> k.id))"""
        )
        expired = await conn.fetch(
            """SELECT host, count(*) AS n FROM host_authentication_tokens
               WHERE expires_at < now() AND refresh_token_ciphertext IS NULL GROUP BY host"""
        )
    age = next((float(r["age"]) for r in keys if r["age"] is not None), None)
    return FleetCounts({r["state"]: r["n"] for r in keys}, age, pending, {r["host"]: r["n"] for r in expired})
