"""Which addresses a token endpoint may have (hostauth/refresh/outbound.py):
checked before any request is sent."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from hostauth.core.model import IntegrationRecord
from hostauth.refresh.outbound import Outbound, OutboundRefused, Reply, parse_networks
from hostauth.refresh.providers import Outcome, meaning, token_endpoint

REFUSED = [
    "169.254.169.254",  # cloud metadata (link-local)
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",  # loopback dressed as IPv6
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "fc00::1",
    "fe80::1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
]


@pytest.mark.parametrize("address", REFUSED)
async def test_internal_addresses_are_refused(address: str) -> None:
    outbound = Outbound()
    with pytest.raises(OutboundRefused, match="an address the service does not call"):
        await outbound.vetted_address(address, 443)
    await outbound.close()


async def test_public_addresses_pass_and_allowed_networks_open_internal_ones() -> None:
    outbound = Outbound(allowed=parse_networks("127.0.0.0/8, 10.0.0.0/8"))
    assert await outbound.vetted_address("140.82.112.3", 443) == "140.82.112.3"
    assert await outbound.vetted_address("127.0.0.1", 443) == "127.0.0.1"
    assert await outbound.vetted_address("10.1.2.3", 443) == "10.1.2.3"
    with pytest.raises(OutboundRefused):
        await outbound.vetted_address("192.168.1.1", 443)
    await outbound.close()


async def test_a_name_that_resolves_to_an_internal_address_is_refused() -> None:
    outbound = Outbound()
    with pytest.raises(OutboundRefused, match="localhost resolves to"):
        await outbound.vetted_address("localhost", 443)
    await outbound.close()


async def test_only_https_is_sent() -> None:
    outbound = Outbound(allowed=parse_networks("127.0.0.0/8"))
    with pytest.raises(OutboundRefused, match="must be an https URL"):
        await outbound.post_form("http://127.0.0.1:1/oauth/token", {"grant_type": "refresh_token"})
    await outbound.close()


def _integration(scm_id: str, host: str, issuer_url: str | None) -> IntegrationRecord:
    return IntegrationRecord(uuid4(), uuid4(), scm_id, host, "client", issuer_url, False, None)


@pytest.mark.parametrize(
    ("scm_id", "host", "issuer", "endpoint"),
    [
        ("github", "github.com", None, "https://github.com/login/oauth/access_token"),
        ("github", "ghe.example.com", None, "https://ghe.example.com/login/oauth/access_token"),
        ("gitlab", "gitlab.com", None, "https://gitlab.com/oauth/token"),
        ("gitlab", "git.example.com", "https://sso.example.com/", "https://sso.example.com/oauth/token"),
        ("bitbucket", "bitbucket.org", None, "https://bitbucket.org/site/oauth2/access_token"),
    ],
)
def test_token_endpoints(scm_id: str, host: str, issuer: str | None, endpoint: str) -> None:
    assert token_endpoint(_integration(scm_id, host, issuer)) == endpoint


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, {"error": "bad_refresh_token", "error_description": "x"}, Outcome.REJECTED),  # GitHub
        (400, {"error": "invalid_grant"}, Outcome.REJECTED),  # GitLab
        (401, {"error": "invalid_client"}, Outcome.FAILED),  # a misconfigured app: not retried
        (429, {}, Outcome.RATE_LIMITED),
        (502, {}, Outcome.UNREACHABLE),  # the provider's trouble: retryable
        (503, {"error": "temporarily_unavailable"}, Outcome.UNREACHABLE),
        (400, {"error": "server_error"}, Outcome.UNREACHABLE),
        (200, {"token_type": "bearer"}, Outcome.FAILED),  # no access token
        (200, {"access_token": "a", "refresh_token": "r", "expires_in": 60}, Outcome.REFRESHED),
    ],
)
def test_what_an_answer_means(status: int, body: dict[str, object], outcome: Outcome) -> None:
    attempt = meaning(Reply(status, {}, body), "old", datetime.now(UTC))
    assert attempt.outcome is outcome
    assert "old" not in attempt.detail
