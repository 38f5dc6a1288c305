"""The service core over PostgreSQL: the vaults on their stores, sealing
with one Sealer. What a worker serves, and what the tests drive directly."""

from __future__ import annotations

import asyncpg

from hostauth.audit_stream import AuditStream
from hostauth.core.cursor import CursorCodec
from hostauth.core.service import HostAuthService
from hostauth.crypto import Sealer, sealed_box
from hostauth.integration_vault import EncryptedIntegrations
from hostauth.store import TokenStore, cursor_key
from hostauth.store.coalesce import SERVICE_BATCHES_IN_FLIGHT
from hostauth.store.integrations import IntegrationStore
from hostauth.vault import EncryptedTokens


async def postgres_core(
    pool: asyncpg.Pool,
    sealer: Sealer,
    *,
    stream: AuditStream | None = None,
    batches_in_flight: int = SERVICE_BATCHES_IN_FLIGHT,
    plaintext_reads: bool = True,
) -> HostAuthService:
    return HostAuthService(
        EncryptedTokens(TokenStore(pool, batches_in_flight=batches_in_flight), sealer, stream),
        CursorCodec(await cursor_key(pool)),
        EncryptedIntegrations(IntegrationStore(pool), sealer, stream),
        sealed_box,
        plaintext_reads=plaintext_reads,
    )
