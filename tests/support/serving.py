"""The service in the test's own event loop, and credentials for it."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

from gitpod.v1 import identity_pb2
from hostauth.auth.api_key_cache import CachedApiKeys
from hostauth.auth.api_keys import hash_api_key, new_api_key
from hostauth.auth.authenticator import Authenticator, IdentityLookup
from hostauth.auth.jwt_verifier import JwtVerifier
from hostauth.config import Address, Settings
from hostauth.core.service import HostAuthService
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.runtime.serve import NO_EXTRAS, Extras, Running, serve
from hostauth.store import ApiKeyStore, connect_pool
from hostauth.store.pooled import ping
from hostauth.telemetry.calls import CallTelemetry
from hostauth.transport.calls import Calls
from tests.support.sensitive import remember

TEST_KEYRING_JSON = generate_keyring_json("test-key-1")


async def make_api_key(api_keys: ApiKeyStore, principal: int, subject_id: UUID, *grants: str) -> str:
    key = remember(new_api_key())
    await api_keys.create(hash_api_key(key), principal, subject_id, grants)
    return key


@contextlib.asynccontextmanager
async def serving(
    core: HostAuthService,
    api_keys: ApiKeyStore,
    database_dsn: str,
    *,
    jwt: JwtVerifier | None = None,
    extras: Extras = NO_EXTRAS,
    db_timeout_s: float = 10.0,
    identities: IdentityLookup | None = None,
    **settings_: Any,
) -> AsyncIterator[Running]:
    """Both transports in this process on free ports, as the server runs them;
    settings_ are Settings' fields to change."""
    settings = Settings(
        http_addr=Address("127.0.0.1", 0),
        grpc_addr=Address("127.0.0.1", 0),
        database_url=database_dsn,
        db_timeout_s=db_timeout_s,
        **settings_,
    )
    cached_keys = CachedApiKeys(api_keys)  # as the server runs it: revocations must still bite
    await cached_keys.start()
    try:
        probe = functools.partial(ping, api_keys.pool)
        # Every call metered and in the access log, which the no-secret check reads.
        telemetry = CallTelemetry(metrics=True, access_log=True)
        calls = Calls(
            settings.db_timeout_s, core, Authenticator(cached_keys, jwt, identities), probe, telemetry
        )
        async with serve(calls, settings, extras=extras) as running:
            yield running
    finally:
        await cached_keys.close()


async def service_account_key(dsn: str, *grants: str) -> str:
    """A new service account's API key in the database at dsn, with these grants."""
    pool = await connect_pool(dsn, min_size=1, max_size=1)
    try:
        return await make_api_key(ApiKeyStore(pool), identity_pb2.PRINCIPAL_SERVICE_ACCOUNT, uuid4(), *grants)
    finally:
        await pool.close()
