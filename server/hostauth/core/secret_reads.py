"""A token's secrets read with the audit row committed in the same
statement, for both secret reads (plaintext and sealed): no audit row, no
secret."""

from __future__ import annotations

import logging
from uuid import UUID

from hostauth.auth.caller import Call
from hostauth.core.model import SecretRead, Secrets, TokenRecord, UnreadableSecret
from hostauth.core.port import Refresher, TokenVault
from hostauth.errors import (
    DATABASE_UNAVAILABLE,
    DataLoss,
    FailedPrecondition,
    Internal,
    NotFound,
    Unavailable,
)
from hostauth.log_repeats import Repeats
from hostauth.store.outage import is_outage
from hostauth.telemetry import metrics

log = logging.getLogger("hostauth.core.service")
_failures = Repeats(log)


def not_found(token_id: UUID) -> NotFound:
    # The same words whether the token never existed, was deleted, or (with
    # authorization) is not the caller's to see.
    return NotFound(f"host authentication token {token_id} not found")


NEEDS_SIGN_IN = (
    "host authentication token {token_id} needs sign-in: the provider refused its refresh token"
    " (spent or revoked); store a new token with Create or Update"
)


async def read_secrets(
    store: TokenVault, read: SecretRead, call: Call, refresher: Refresher | None = None
) -> tuple[TokenRecord, Secrets]:
    """The token and its secrets, the read recorded; not_found when there is
    no such token in the read's scope (and nothing recorded). An OAuth token
    near its expiry is refreshed first (refresher); one whose refresh token
    the provider refused is failed_precondition until replaced."""
    try:
        found = await store.read_secrets(read)
    except UnreadableSecret as exc:
        # The trail has the read; the refusal's own audit row adds data_loss.
        log.error("request %s: %s", call.request_id, exc)  # names id and field, never a secret
        raise DataLoss(
            f"the stored secrets of host authentication token {read.token_id} cannot be decrypted"
        ) from None
    except Exception as exc:  # whatever failed, no secret leaves
        metrics.audit_write_failures.inc()  # the read and its audit row are one statement
        if is_outage(exc):
            raise Unavailable(DATABASE_UNAVAILABLE) from exc
        _failures.log("%s read failed: %s", read.audit.method, type(exc).__name__, exc_info=exc)
        raise Internal("the read could not be recorded, so no secret is returned") from None
    if found is None:
        raise not_found(read.token_id)
    record, secrets = found
    if record.needs_sign_in:
        raise FailedPrecondition(NEEDS_SIGN_IN.format(token_id=record.id))
    if refresher is not None and refresher.wants(record, bool(secrets.refresh_token)):
        return await refresher.fresh(record, secrets, call)
    return found
