"""The service core over PostgreSQL: the vaults on their stores, sealing
with one Sealer. What a worker serves, and what the tests drive directly."""

from __future__ import annotations

import asyncpg

from hostauth.audit_stream import AuditStream
from hostauth.config import Settings
from hostauth.core.cursor import CursorCodec
from hostauth.core.service import HostAuthService
from hostauth.crypto import Sealer, sealed_box
from hostauth.integration_vault import EncryptedIntegrations
from hostauth.refresh.coordinator import Refresher
from hostauth.refresh.outbound import Outbound, parse_networks
from hostauth.store import TokenStore, cursor_key
from hostauth.store.coalesce import SERVICE_BATCHES_IN_FLIGHT
from hostauth.store.integrations import IntegrationStore
from hostauth.store.refresh import RefreshStore
from hostauth.vault import EncryptedTokens


async def postgres_core(
    pool: asyncpg.Pool,
    sealer: Sealer,
    *,
    stream: AuditStream | None = None,
    batches_in_flight: int = SERVICE_BATCHES_IN_FLIGHT,
    plaintext_reads: bool = True,
    outbound: Outbound | None = None,
    refresh_window_s: float = 300.0,
) -> HostAuthService:
    """outbound: the provider client OAuth refresh uses (None: no refresh)."""
    integrations = EncryptedIntegrations(IntegrationStore(pool), sealer, stream)
    refresher = None
    if outbound is not None:
        refresher = Refresher(RefreshStore(pool), integrations, sealer, outbound, window_s=refresh_window_s)
    return HostAuthService(
        EncryptedTokens(TokenStore(pool, batches_in_flight=batches_in_flight), sealer, stream),
        CursorCodec(await cursor_key(pool)),
        integrations,
        sealed_box,
        plaintext_reads=plaintext_reads,
        refresher=refresher,
    )


def outbound_of(settings: Settings) -> Outbound:
    """The provider client the settings describe."""
    return Outbound(
        allowed=parse_networks(settings.oauth_allowed_networks),
        ca_file=settings.oauth_ca_file,
        timeout_s=settings.oauth_timeout_s,
    )
