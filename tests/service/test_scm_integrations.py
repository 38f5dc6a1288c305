"""SCM integrations (RunnerConfigurationService) on every wire, against a
real PostgreSQL: the lifecycle, Gitpod's rules, the client secret that
leaves only sealed to the integration's runner, tokens that go with their
integration, and who may do what."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg
import pytest
from nacl.exceptions import CryptoError

from gitpod.v1 import identity_pb2
from hostauth.store import ApiKeyStore
from tests.support.integrations import (
    create_integration,
    delete_integration,
    get_integration,
    integration_request,
    list_integrations,
    new_runner,
    signup,
    update_integration,
)
from tests.support.lifecycle import create, get
from tests.support.requests import create_request, secret
from tests.support.serving import make_api_key
from tests.support.wire import Wire, outcome

P = identity_pb2


async def audit_of(pool: asyncpg.Pool, integration_id: str) -> list[tuple[str, str, UUID | None]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT method, outcome, token_id FROM audit_events WHERE integration_id = $1 ORDER BY id",
            UUID(integration_id),
        )
    return [(r["method"], r["outcome"], r["token_id"]) for r in rows]


async def test_lifecycle(wire: Wire, api_keys: ApiKeyStore, pool: asyncpg.Pool) -> None:
    runner = await new_runner(wire, api_keys)
    req = integration_request(runner.id, issuer_url="https://ghe.example.com", virtual_directory="/tfs")
    integration_id = await create_integration(wire, req)
    assert UUID(integration_id)

    got = await get_integration(wire, integration_id)
    assert (got.id, got.runner_id, got.scm_id, got.host, got.pat) == (
        integration_id,
        runner.id,
        "github",
        "github.com",
        True,
    )
    assert (got.oauth.client_id, got.oauth.issuer_url, got.virtual_directory) == (
        req.oauth_client_id,
        "https://ghe.example.com",
        "/tfs",
    )
    # The client secret, sealed to the runner: only its key opens it.
    assert runner.key.open(got.oauth.encrypted_client_secret) == req.oauth_plaintext_client_secret
    assert req.oauth_plaintext_client_secret.encode() not in got.SerializeToString()

    listed = await list_integrations(wire, runner.id)
    assert [i.id for i in listed.integrations] == [integration_id]
    item = listed.integrations[0]
    # Each answer seals anew (an ephemeral key per box): the same secret, other bytes.
    assert runner.key.open(item.oauth.encrypted_client_secret) == req.oauth_plaintext_client_secret
    item.oauth.ClearField("encrypted_client_secret")
    got.oauth.ClearField("encrypted_client_secret")
    assert item == got

    # Update changes only the fields sent.
    await update_integration(wire, integration_id, pat=False)
    after = await get_integration(wire, integration_id)
    assert (after.pat, after.oauth.client_id, after.oauth.issuer_url, after.virtual_directory) == (
        False,
        req.oauth_client_id,
        "https://ghe.example.com",
        "/tfs",
    )
    assert runner.key.open(after.oauth.encrypted_client_secret) == req.oauth_plaintext_client_secret
    new_secret = secret("cs_")
    await update_integration(wire, integration_id, oauth_plaintext_client_secret=new_secret)
    rotated = await get_integration(wire, integration_id)
    assert rotated.oauth.client_id == req.oauth_client_id
    assert runner.key.open(rotated.oauth.encrypted_client_secret) == new_secret
    await update_integration(wire, integration_id, issuer_url="", virtual_directory="")
    cleared = await get_integration(wire, integration_id)
    assert (cleared.oauth.issuer_url, cleared.HasField("virtual_directory")) == ("", False)

    await delete_integration(wire, integration_id)
    assert await outcome(get_integration(wire, integration_id)) == (
        "not_found",
        f"SCM integration {integration_id} not found",
    )
    assert [(m, o) for m, o, _ in await audit_of(pool, integration_id)] == [
        ("CreateSCMIntegration", "ok"),
        ("UpdateSCMIntegration", "ok"),
        ("UpdateSCMIntegration", "ok"),
        ("UpdateSCMIntegration", "ok"),
        ("DeleteSCMIntegration", "ok"),
    ]


async def test_client_secret_is_empty_until_the_runner_has_a_key(wire: Wire, api_keys: ApiKeyStore) -> None:
    runner = await new_runner(wire, api_keys, signed_up=False)
    req = integration_request(runner.id)
    integration_id = await create_integration(wire, req)
    got = await get_integration(wire, integration_id)
    assert got.oauth.client_id == req.oauth_client_id
    assert got.oauth.encrypted_client_secret == b""
    await signup(runner.wire, runner.key.public_der)
    sealed = (await get_integration(wire, integration_id)).oauth.encrypted_client_secret
    assert runner.key.open(sealed) == req.oauth_plaintext_client_secret
    other = await new_runner(wire, api_keys)
    with pytest.raises(CryptoError):
        other.key.open(sealed)


async def test_pat_only_integration_has_no_oauth(wire: Wire) -> None:
    runner_id = str(uuid4())
    req = integration_request(
        runner_id,
        host="gitlab.com",
        scm_id="gitlab",
        oauth_client_id=None,
        oauth_plaintext_client_secret=None,
    )
    got = await get_integration(wire, await create_integration(wire, req))
    assert (got.HasField("oauth"), got.pat, got.scm_id) == (False, True, "gitlab")


async def test_removing_the_oauth_app(wire: Wire) -> None:
    integration_id = await create_integration(wire, integration_request(str(uuid4())))
    await update_integration(wire, integration_id, oauth_client_id="")
    assert not (await get_integration(wire, integration_id)).HasField("oauth")
    # A secret alone needs a client id to belong to.
    code, message = await outcome(
        update_integration(wire, integration_id, oauth_plaintext_client_secret=secret("cs_"))
    )
    assert (code, message) == (
        "invalid_argument",
        "oauth_client_id: value is required: the integration has no OAuth app",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"runner_id": ""}, "runner_id: value is required"),
        ({"runner_id": "not-a-uuid"}, "runner_id: value must be a valid UUID"),
        ({"scm_id": ""}, "scm_id: value length must be at least 1 characters"),
        ({"host": ""}, "host: value length must be at least 1 characters"),
        (
            {"oauth_plaintext_client_secret": None},
            "oauth_plaintext_client_secret: value is required when oauth_client_id is set",
        ),
        (
            {"oauth_client_id": None},
            "oauth_client_id: value is required when oauth_plaintext_client_secret is set",
        ),
        ({"issuer_url": "ghe.example.com"}, "issuer_url: value must be an absolute http or https URL"),
        ({"issuer_url": "ftp://ghe.example.com"}, "issuer_url: value must be an absolute http or https URL"),
        ({"host": "a\x00b"}, "host: value must not contain NUL characters"),
    ],
)
async def test_create_rules(wire: Wire, overrides: dict[str, object], message: str) -> None:
    fields = {"runner_id": str(uuid4()), **overrides}
    req = integration_request(**fields)  # type: ignore[arg-type]
    assert await outcome(create_integration(wire, req)) == ("invalid_argument", message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"oauth_client_id": "new-client"},
            "oauth_plaintext_client_secret: value is required when oauth_client_id is set",
        ),
        (
            {"oauth_client_id": "", "oauth_plaintext_client_secret": "x"},
            "oauth_client_id: value is required when oauth_plaintext_client_secret is set",
        ),
        (
            {"oauth_plaintext_client_secret": ""},
            "oauth_plaintext_client_secret: value length must be at least 1 characters",
        ),
        ({"issuer_url": "not a url"}, "issuer_url: value must be an absolute http or https URL"),
    ],
)
async def test_update_rules(wire: Wire, fields: dict[str, object], message: str) -> None:
    integration_id = await create_integration(wire, integration_request(str(uuid4())))
    assert await outcome(update_integration(wire, integration_id, **fields)) == ("invalid_argument", message)
    code, bad_id = await outcome(update_integration(wire, "nope", pat=True))
    assert (code, bad_id) == ("invalid_argument", "id: value must be a valid UUID")


async def test_list_rules(wire: Wire) -> None:
    too_many = [str(uuid4()) for _ in range(26)]
    assert await outcome(list_integrations(wire, *too_many)) == (
        "invalid_argument",
        "filter.runner_ids: value must contain no more than 25 item(s)",
    )
    assert await outcome(list_integrations(wire, str(uuid4()), "x")) == (
        "invalid_argument",
        "filter.runner_ids[1]: value must be a valid UUID",
    )
    assert await outcome(list_integrations(wire, page_size=101)) == (
        "invalid_argument",
        "pagination.page_size: value must be greater than or equal to 0 and less than or equal to 100",
    )
    assert len((await list_integrations(wire, *[str(uuid4()) for _ in range(25)])).integrations) == 0


async def test_one_integration_per_runner_and_host(wire: Wire) -> None:
    runner_id = str(uuid4())
    await create_integration(wire, integration_request(runner_id))
    code, message = await outcome(create_integration(wire, integration_request(runner_id, host="GitHub.com")))
    assert (code, message) == (
        "already_exists",
        f"runner {runner_id} already has an SCM integration for host 'GitHub.com'",
    )
    await create_integration(wire, integration_request(runner_id, host="gitlab.com"))  # another host is fine
    await create_integration(wire, integration_request(str(uuid4())))  # another runner too


async def test_list_pages_by_keyset_over_runners(wire: Wire) -> None:
    a, b = str(uuid4()), str(uuid4())
    made = [
        await create_integration(wire, integration_request(r, host=f"h{i}.example.com"))
        for i, r in enumerate([a, b, a, b, a])
    ]
    seen: list[str] = []
    token = ""
    while True:
        page = await list_integrations(wire, a, b, page_size=2, token=token)
        assert len(page.integrations) <= 2
        seen += [i.id for i in page.integrations]
        token = page.pagination.next_token
        if not token:
            break
    assert seen == made
    only_a = await list_integrations(wire, a)
    assert [i.id for i in only_a.integrations] == [made[0], made[2], made[4]]
    first = await list_integrations(wire, a, page_size=1)
    code, message = await outcome(list_integrations(wire, b, page_size=1, token=first.pagination.next_token))
    assert (code, message) == (
        "invalid_argument",
        "pagination.token: the page token was made for a List with other filters",
    )


async def test_a_token_names_an_integration_of_its_runner_and_host(wire: Wire) -> None:
    runner_id = str(uuid4())
    integration_id = await create_integration(wire, integration_request(runner_id))
    token = await create(wire, create_request(runner_id=runner_id, integration_id=integration_id))
    assert token.integration_id == integration_id
    refused = (
        "invalid_argument",
        "integration_id: value must name an SCM integration of runner_id for host",
    )
    for req in (
        create_request(integration_id=integration_id),  # another runner
        create_request(runner_id=runner_id, host="gitlab.com", integration_id=integration_id),  # another host
        create_request(runner_id=runner_id, integration_id=str(uuid4())),  # none at all
    ):
        assert await outcome(create(wire, req)) == refused


async def test_deleting_an_integration_deletes_its_tokens(wire: Wire, pool: asyncpg.Pool) -> None:
    runner_id = str(uuid4())
    integration_id = await create_integration(wire, integration_request(runner_id))
    through = [
        await create(wire, create_request(runner_id=runner_id, integration_id=integration_id))
        for _ in range(2)
    ]
    unrelated = await create(wire, create_request(runner_id=runner_id))
    await delete_integration(wire, integration_id)
    for token in through:
        code, _ = await outcome(get(wire, token.id))
        assert code == "not_found"
    assert (await get(wire, unrelated.id)).id == unrelated.id
    trail = await audit_of(pool, integration_id)
    # The integration's own row, and one per token it took with it.
    assert ("DeleteSCMIntegration", "ok", None) in trail
    assert {t for m, _, t in trail if m == "DeleteSCMIntegration" and t} == {UUID(t.id) for t in through}
    assert await outcome(delete_integration(wire, integration_id)) == (
        "not_found",
        f"SCM integration {integration_id} not found",
    )


async def test_the_client_secret_is_stored_encrypted(wire: Wire, pool: asyncpg.Pool) -> None:
    req = integration_request(str(uuid4()))
    integration_id = await create_integration(wire, req)
    async with pool.acquire() as conn:
        text = await conn.fetchval(
            "SELECT i::text FROM scm_integrations i WHERE id = $1", UUID(integration_id)
        )
        raw = await conn.fetchval(
            "SELECT client_secret_ciphertext FROM scm_integrations WHERE id = $1", UUID(integration_id)
        )
    assert req.oauth_client_id in text  # the row was found
    assert req.oauth_plaintext_client_secret not in text
    assert req.oauth_plaintext_client_secret.encode() not in raw
    assert req.oauth_plaintext_client_secret.encode().hex() not in text


# -- who may do what (server/hostauth/core/policy.py) -------------------------


async def test_a_runner_manages_only_its_own(wire: Wire, api_keys: ApiKeyStore) -> None:
    runner = await new_runner(wire, api_keys)
    mine = await create_integration(runner.wire, integration_request(runner.id))
    theirs = await create_integration(wire, integration_request(str(uuid4())))
    assert (await get_integration(runner.wire, mine)).runner_id == runner.id
    await update_integration(runner.wire, mine, pat=False)
    assert [i.id for i in (await list_integrations(runner.wire)).integrations] == [mine]
    # Another runner's integrations are hidden, as missing ones are.
    for call in (
        get_integration(runner.wire, theirs),
        update_integration(runner.wire, theirs, pat=False),
        delete_integration(runner.wire, theirs),
    ):
        assert await outcome(call) == ("not_found", f"SCM integration {theirs} not found")
    assert (await list_integrations(runner.wire, str(uuid4()))).integrations == []
    assert await outcome(create_integration(runner.wire, integration_request(str(uuid4())))) == (
        "permission_denied",
        "a runner may only create integrations with its own runner_id",
    )
    await delete_integration(runner.wire, mine)


async def test_a_user_reads_but_does_not_manage(wire: Wire, api_keys: ApiKeyStore) -> None:
    user = wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, uuid4()))
    runner_id = str(uuid4())
    integration_id = await create_integration(wire, integration_request(runner_id))
    assert (await get_integration(user, integration_id)).id == integration_id
    assert [i.id for i in (await list_integrations(user, runner_id)).integrations] == [integration_id]
    for method, call in (
        ("CreateSCMIntegration", create_integration(user, integration_request(str(uuid4())))),
        ("UpdateSCMIntegration", update_integration(user, integration_id, pat=False)),
        ("DeleteSCMIntegration", delete_integration(user, integration_id)),
    ):
        assert await outcome(call) == ("permission_denied", f"{method} is not allowed for this caller")
    assert (await get_integration(wire, integration_id)).pat  # untouched


@pytest.mark.parametrize(
    "principal", [P.PRINCIPAL_ENVIRONMENT, P.PRINCIPAL_RUNNER_MANAGER, P.PRINCIPAL_ACCOUNT]
)
async def test_other_principals_see_none(wire: Wire, api_keys: ApiKeyStore, principal: int) -> None:
    other = wire.with_credential(await make_api_key(api_keys, principal, uuid4()))
    integration_id = await create_integration(wire, integration_request(str(uuid4())))
    hidden = ("not_found", f"SCM integration {integration_id} not found")
    assert await outcome(get_integration(other, integration_id)) == hidden
    assert await outcome(update_integration(other, integration_id, pat=False)) == hidden
    assert await outcome(delete_integration(other, integration_id)) == hidden
    assert await outcome(list_integrations(other)) == (
        "permission_denied",
        "ListSCMIntegrations is not allowed for this caller",
    )
    assert await outcome(create_integration(other, integration_request(str(uuid4())))) == (
        "permission_denied",
        "CreateSCMIntegration is not allowed for this caller",
    )


async def test_get_and_list_over_every_read_wire(read_wire: Wire, wires: dict[str, Wire]) -> None:
    """Get and List have no side effects: Connect GET serves them too."""
    runner_id = str(uuid4())
    integration_id = await create_integration(wires["grpc"], integration_request(runner_id))
    assert (await get_integration(read_wire, integration_id)).runner_id == runner_id
    assert [i.id for i in (await list_integrations(read_wire, runner_id)).integrations] == [integration_id]
