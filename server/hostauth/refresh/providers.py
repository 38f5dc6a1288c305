"""The providers' token endpoints and what their answers mean
(../shared/spec/oauth-refresh.md): GitHub and GitHub Enterprise, GitLab and
self-managed GitLab (through the integration's issuer_url), Bitbucket Cloud."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hostauth.core.model import IntegrationRecord
from hostauth.refresh.outbound import Outbound, OutboundRefused, ProviderUnreachable, Reply

# Answers that say the refresh token is spent or revoked: the user signs in again.
REJECTED_GRANTS = frozenset({"bad_refresh_token", "invalid_grant"})
# RFC 6749's errors for a provider that cannot answer now: tried again later.
TRANSIENT_ERRORS = frozenset({"server_error", "temporarily_unavailable"})


class Outcome(enum.Enum):
    REFRESHED = "refreshed"
    REJECTED = "rejected"  # the refresh token is no good: needs sign-in
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"  # any other answer (a misconfigured client, a 5xx)
    UNREACHABLE = "unreachable"
    REFUSED = "refused"  # never sent: the endpoint is not one the service calls


@dataclass(frozen=True, slots=True)
class Fresh:
    token: str
    refresh_token: str
    expires_at: datetime | None

    def __repr__(self) -> str:
        return f"Fresh(<secrets>, expires_at={self.expires_at})"


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    fresh: Fresh | None = None
    detail: str = ""  # for the operator; never a secret


def provider_of(integration: IntegrationRecord) -> str | None:
    """github, gitlab or bitbucket; None for an SCM whose refresh is not done here."""
    scm = integration.scm_id.lower()
    return scm if scm in ("github", "gitlab", "bitbucket") else None


def token_endpoint(integration: IntegrationRecord) -> str:
    base = (integration.issuer_url or f"https://{integration.host}").rstrip("/")
    match provider_of(integration):
        case "github":
            return f"{base}/login/oauth/access_token"
        case "gitlab":
            return f"{base}/oauth/token"
        case _:
            base = (integration.issuer_url or "https://bitbucket.org").rstrip("/")
            return f"{base}/site/oauth2/access_token"


def meaning(reply: Reply, refresh_token: str, now: datetime) -> Attempt:
    error = reply.body.get("error")
    if reply.status == 429:
        after = reply.headers.get("retry-after", "")
        return Attempt(Outcome.RATE_LIMITED, detail=f"rate-limited (Retry-After: {after or '-'})")
    if isinstance(error, str) and error in REJECTED_GRANTS:
        return Attempt(Outcome.REJECTED, detail=error)
    if reply.status >= 500 or error in TRANSIENT_ERRORS:  # the provider's trouble: retryable
        return Attempt(Outcome.UNREACHABLE, detail=f"the provider answered HTTP {reply.status}")
    if isinstance(error, str):
        return Attempt(Outcome.FAILED, detail=f"the provider answered {error!r} (HTTP {reply.status})")
    access = reply.body.get("access_token")
    if reply.status != 200 or not isinstance(access, str) or not access:
        return Attempt(Outcome.FAILED, detail=f"the provider answered HTTP {reply.status} without a token")
    new_refresh = reply.body.get("refresh_token")
    expires_in = reply.body.get("expires_in")
    expires_at = now + timedelta(seconds=expires_in) if isinstance(expires_in, int | float) else None
    # A provider that keeps the refresh token answers none: the old one stays.
    refresh = new_refresh if isinstance(new_refresh, str) and new_refresh else refresh_token
    return Attempt(Outcome.REFRESHED, Fresh(access, refresh, expires_at))


async def refresh(
    outbound: Outbound, integration: IntegrationRecord, client_secret: str, refresh_token: str
) -> Attempt:
    """One refresh at the provider; never raises for what the provider does."""
    client_id = integration.oauth_client_id or ""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    basic: tuple[str, str] | None = None
    if provider_of(integration) == "bitbucket":
        basic = (client_id, client_secret)  # Bitbucket takes the client in HTTP Basic
    else:
        form |= {"client_id": client_id, "client_secret": client_secret}
    try:
        reply = await outbound.post_form(token_endpoint(integration), form, basic=basic)
    except OutboundRefused as exc:
        return Attempt(Outcome.REFUSED, detail=str(exc))
    except ProviderUnreachable as exc:
        return Attempt(Outcome.UNREACHABLE, detail=str(exc))
    return meaning(reply, refresh_token, datetime.now(UTC))
