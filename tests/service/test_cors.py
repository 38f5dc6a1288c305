"""CORS for browser Connect clients: off by default; with
HOSTAUTH_CORS_ORIGINS, exact origins only, the Connect headers allowed, and
GetHostAuthenticationTokenValue never cross-origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from google.protobuf import json_format

from hostauth.core.service import HostAuthService
from hostauth.runtime.serve import Running
from hostauth.store import ApiKeyStore
from tests.support.requests import create_request
from tests.support.serving import serving

APP = "https://app.example.com"
SERVICE = "/gitpod.v1.RunnerConfigurationService"
CREATE = f"{SERVICE}/CreateHostAuthenticationToken"
GET_VALUE = f"{SERVICE}/GetHostAuthenticationTokenValue"


@pytest.fixture
async def cors_http(
    core: HostAuthService, api_keys: ApiKeyStore, database_dsn: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(core, api_keys, database_dsn, cors_origins=(APP,)) as running,
        httpx.AsyncClient(base_url=running.http_url) as http,
    ):
        yield http


def _preflight_headers(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version,authorization",
    }


async def test_a_preflight_from_an_allowed_origin_allows_the_connect_headers(
    cors_http: httpx.AsyncClient,
) -> None:
    answer = await cors_http.options(CREATE, headers=_preflight_headers(APP))
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == APP
    assert set(answer.headers["access-control-allow-methods"].split(", ")) == {"POST", "GET"}
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "connect-protocol-version", "connect-timeout-ms", "authorization"} <= allowed
    assert answer.headers["vary"] == "Origin"


@pytest.mark.parametrize(("origin", "path"), [("https://evil.example.com", CREATE), (APP, GET_VALUE)])
async def test_other_origins_and_the_secret_read_get_no_cors(
    cors_http: httpx.AsyncClient, origin: str, path: str
) -> None:
    answer = await cors_http.options(path, headers=_preflight_headers(origin))
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers


async def test_a_call_from_an_allowed_origin_is_answered_with_cors_headers(
    cors_http: httpx.AsyncClient, admin_key: str
) -> None:
    headers = {"content-type": "application/json", "authorization": f"Bearer {admin_key}", "origin": APP}
    body = json_format.MessageToJson(create_request())
    answer = await cors_http.post(CREATE, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == APP
    assert "X-Request-Id" in answer.headers["access-control-expose-headers"]
    token_id = answer.json()["token"]["id"]
    other = await cors_http.post(
        CREATE, content=body, headers={**headers, "origin": "https://evil.example.com"}
    )
    assert "access-control-allow-origin" not in other.headers
    # A page cannot make a secret be read, even one whose answer it could not see.
    read = await cors_http.post(GET_VALUE, content=f'{{"id": "{token_id}"}}', headers=headers)
    assert read.status_code == 403
    assert read.json()["code"] == "permission_denied"
    assert "access-control-allow-origin" not in read.headers
    assert "token" not in read.json()


async def test_cors_is_off_by_default(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.http_url) as http:
        answer = await http.options(CREATE, headers=_preflight_headers(APP))
    assert "access-control-allow-origin" not in answer.headers
