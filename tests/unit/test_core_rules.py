"""The core's rules against the TokenVault in memory: no PostgreSQL, no
wire, no cipher. The same rules are tested through every wire against a
real PostgreSQL in tests/service/."""

from __future__ import annotations

import os
from uuid import UUID, uuid4

import pytest
from nacl.public import PrivateKey, SealedBox

from gitpod.v1 import identity_pb2 as ids
from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.auth.caller import Call, Caller
from hostauth.core.cursor import CursorCodec
from hostauth.core.model import SecretRead, Secrets, TokenChanges, TokenRecord, UnreadableSecret
from hostauth.core.policy import READ_SECRETS
from hostauth.core.service import HostAuthService
from hostauth.crypto import sealed_box
from hostauth.crypto.sealed_box import der_of
from hostauth.errors import DataLoss, InvalidArgument, NotFound, PermissionDenied
from tests.support.memory_vault import MemoryIntegrations, MemoryVault
from tests.support.requests import create_request


def call_as(principal: int, subject: UUID | None = None, *grants: str) -> Call:
    return Call(Caller(principal, subject or uuid4(), "test:unit", frozenset(grants)), "unit-request")


CREATE, GET_VALUE = "CreateHostAuthenticationToken", "GetHostAuthenticationTokenValue"
ADMIN = call_as(ids.PRINCIPAL_SERVICE_ACCOUNT, None, READ_SECRETS)
SEALED = "RunnerInteractionService/GetHostAuthenticationTokenValue"


@pytest.fixture
def vault() -> MemoryVault:
    return MemoryVault()


@pytest.fixture
def core(vault: MemoryVault) -> HostAuthService:
    return HostAuthService(vault, CursorCodec(os.urandom(32)), MemoryIntegrations(), sealed_box)


async def test_create_stores_plaintext_through_the_vault_and_audits_it(
    core: HostAuthService, vault: MemoryVault
) -> None:
    req = create_request()
    made = (await core.create_host_authentication_token(req, ADMIN)).token
    token_id = UUID(made.id)
    assert vault.rows[token_id].secrets == Secrets(req.token, req.refresh_token)
    assert (made.host, made.runner_id, made.subject.id) == (req.host, req.runner_id, req.subject.id)
    assert [(e.method, e.token_id, e.outcome) for e in vault.events] == [(CREATE, token_id, "ok")]


async def test_a_second_create_of_a_triple_keeps_the_id_and_audits_under_it(
    core: HostAuthService, vault: MemoryVault
) -> None:
    first = create_request()
    made = (await core.create_host_authentication_token(first, ADMIN)).token
    second = create_request(runner_id=first.runner_id, subject=first.subject, host=first.host)
    again = (await core.create_host_authentication_token(second, ADMIN)).token
    assert again.id == made.id
    assert vault.rows[UUID(made.id)].secrets.token == second.token
    assert [e.token_id for e in vault.events] == [UUID(made.id)] * 2


async def test_invalid_create_names_every_field_and_writes_nothing(
    core: HostAuthService, vault: MemoryVault
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await core.create_host_authentication_token(create_request(runner_id="nope", host=""), ADMIN)
    assert "runner_id: value must be a valid UUID" in caught.value.message
    assert "host: value length must be at least 1 characters" in caught.value.message
    assert not vault.rows
    assert [e.outcome for e in vault.events] == ["invalid_argument"]


async def test_a_user_creates_only_as_itself(core: HostAuthService) -> None:
    me = uuid4()
    user = call_as(ids.PRINCIPAL_USER, me)
    other = ids.Subject(id=str(uuid4()), principal=ids.PRINCIPAL_USER)
    with pytest.raises(PermissionDenied):
        await core.create_host_authentication_token(create_request(subject=other), user)
    mine = await core.create_host_authentication_token(create_request(subject=None), user)
    assert (mine.token.subject.id, mine.token.subject.principal) == (str(me), ids.PRINCIPAL_USER)


async def test_a_token_out_of_sight_is_not_found_like_a_missing_one(core: HostAuthService) -> None:
    made = (await core.create_host_authentication_token(create_request(), ADMIN)).token
    stranger = call_as(ids.PRINCIPAL_RUNNER)
    errors = []
    for token_id in (made.id, str(uuid4())):
        with pytest.raises(NotFound) as caught:
            await core.get_host_authentication_token(
                pb.GetHostAuthenticationTokenRequest(id=token_id), stranger
            )
        errors.append(caught.value.message.replace(token_id, "<id>"))
    assert errors[0] == errors[1]


async def test_get_value_for_a_visible_token_the_caller_may_not_read_is_denied_and_audited(
    core: HostAuthService, vault: MemoryVault
) -> None:
    me = uuid4()
    user = call_as(ids.PRINCIPAL_USER, me)
    made = (await core.create_host_authentication_token(create_request(subject=None), user)).token
    with pytest.raises(PermissionDenied):
        await core.get_host_authentication_token_value(
            pb.GetHostAuthenticationTokenValueRequest(id=made.id), user
        )
    assert (vault.events[-1].method, vault.events[-1].outcome) == (
        GET_VALUE,
        "permission_denied",
    )


async def test_a_runner_reads_its_own_secret_sealed_with_a_record_of_it(
    core: HostAuthService, vault: MemoryVault
) -> None:
    runner, key = uuid4(), PrivateKey.generate()
    req = create_request(runner_id=str(runner))
    made = (await core.create_host_authentication_token(req, ADMIN)).token
    as_runner = call_as(ids.PRINCIPAL_RUNNER, runner)
    await core.runners.signup(ri.SignupRequest(public_key=der_of(bytes(key.public_key))), as_runner)
    got = await core.runners.get_token_value(
        ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest(
            runner_id=str(runner), principal_id=req.subject.id, host=req.host
        ),
        as_runner,
    )
    opened = SealedBox(key)
    assert (opened.decrypt(got.value).decode(), opened.decrypt(got.refresh_token).decode()) == (
        req.token,
        req.refresh_token,
    )
    assert (got.token_id, got.expires_at, got.source) == (made.id, req.expires_at, req.source)
    assert (vault.events[-1].method, vault.events[-1].outcome) == (SEALED, "ok")
    assert vault.events[-1].token_id == UUID(made.id)


async def test_a_runner_is_refused_the_plaintext_read_and_pointed_to_the_sealed_one(
    core: HostAuthService, vault: MemoryVault
) -> None:
    runner = uuid4()
    made = (await core.create_host_authentication_token(create_request(runner_id=str(runner)), ADMIN)).token
    with pytest.raises(PermissionDenied, match="RunnerInteractionService/GetHostAuthenticationTokenValue"):
        await core.get_host_authentication_token_value(
            pb.GetHostAuthenticationTokenValueRequest(id=made.id), call_as(ids.PRINCIPAL_RUNNER, runner)
        )
    assert (vault.events[-1].method, vault.events[-1].outcome) == (GET_VALUE, "permission_denied")


async def test_an_unreadable_secret_is_data_loss_and_audited(
    core: HostAuthService, vault: MemoryVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = (await core.create_host_authentication_token(create_request(), ADMIN)).token

    async def unreadable(read: SecretRead) -> tuple[TokenRecord, Secrets] | None:
        raise UnreadableSecret(read.token_id, "token", "authentication failed")

    monkeypatch.setattr(vault, "read_secrets", unreadable)
    with pytest.raises(DataLoss):
        await core.get_host_authentication_token_value(
            pb.GetHostAuthenticationTokenValueRequest(id=made.id), ADMIN
        )
    assert vault.events[-1].outcome == "data_loss"


async def test_update_changes_only_what_is_sent_and_an_empty_refresh_token_clears_it(
    core: HostAuthService, vault: MemoryVault
) -> None:
    req = create_request()
    token_id = (await core.create_host_authentication_token(req, ADMIN)).token.id
    await core.update_host_authentication_token(
        pb.UpdateHostAuthenticationTokenRequest(id=token_id, refresh_token=""), ADMIN
    )
    row = vault.rows[UUID(token_id)]
    assert row.secrets == Secrets(req.token, "")
    assert row.record.scopes == tuple(req.scopes)
    assert row.record.expires_at is not None


async def test_delete_removes_the_token_and_a_second_delete_is_not_found(core: HostAuthService) -> None:
    token_id = (await core.create_host_authentication_token(create_request(), ADMIN)).token.id
    request = pb.DeleteHostAuthenticationTokenRequest(id=token_id)
    await core.delete_host_authentication_token(request, ADMIN)
    with pytest.raises(NotFound):
        await core.delete_host_authentication_token(request, ADMIN)


async def test_list_pages_once_through_every_token_and_a_cursor_keeps_its_filter(
    core: HostAuthService,
) -> None:
    runner = str(uuid4())
    made = {
        (await core.create_host_authentication_token(create_request(runner_id=runner), ADMIN)).token.id
        for _ in range(30)
    }
    request = pb.ListHostAuthenticationTokensRequest()
    request.filter.runner_id = runner
    first = await core.list_host_authentication_tokens(request, ADMIN)
    assert len(first.tokens) == 25
    assert first.pagination.next_token
    request.pagination.token = first.pagination.next_token
    second = await core.list_host_authentication_tokens(request, ADMIN)
    assert {t.id for t in [*first.tokens, *second.tokens]} == made
    assert not second.pagination.next_token
    request.filter.runner_id = str(uuid4())  # the same cursor under another filter
    with pytest.raises(InvalidArgument) as caught:
        await core.list_host_authentication_tokens(request, ADMIN)
    assert "pagination.token" in caught.value.message


def test_the_models_that_carry_secrets_never_show_them() -> None:
    secrets = Secrets("gho_" + "s" * 20, "ghr_" + "r" * 20)
    changes: TokenChanges[str] = TokenChanges(token=secrets.token, refresh_token=secrets.refresh_token)
    for shown in (repr(secrets), str(secrets), repr(changes), str(changes)):
        assert secrets.token not in shown
        assert secrets.refresh_token not in shown
    assert repr(changes) == "TokenChanges(token, refresh_token)"
