"""The policy matrix: principal x method x (own / other's / missing token),
driven from server/hostauth/core/policy.py, over gRPC and Connect JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.caller import Call, Caller
from hostauth.core.model import TokenRecord
from hostauth.core.policy import POLICY, READ_SECRETS, Action, Visibility, may, rule_for, scope_of
from hostauth.core.service import HostAuthService
from hostauth.store import ApiKeyStore
from tests.support.lifecycle import create, delete, get, get_value, list_all, list_page, update
from tests.support.requests import create_request
from tests.support.serving import make_api_key
from tests.support.wire import Wire, outcome

P = identity_pb2


@dataclass(frozen=True)
class Who:
    label: str
    principal: int
    grants: tuple[str, ...] = ()


CALLERS = [
    Who("user", P.PRINCIPAL_USER),
    Who("runner", P.PRINCIPAL_RUNNER),
    Who("service account with secrets:read", P.PRINCIPAL_SERVICE_ACCOUNT, (READ_SECRETS,)),
    Who("service account", P.PRINCIPAL_SERVICE_ACCOUNT),
    Who("environment", P.PRINCIPAL_ENVIRONMENT),
    Who("runner manager", P.PRINCIPAL_RUNNER_MANAGER),
]
MATRIX_WIRES = ("grpc", "connect-json")
TOKEN_ACTIONS = (Action.GET, Action.UPDATE, Action.DELETE, Action.GET_VALUE)
TARGETS = ("own", "other's", "missing")


def test_the_table_is_what_the_issue_says() -> None:
    """The table itself, cell by cell, so a change to it is a visible decision."""
    user, runner, sa = (
        POLICY[p] for p in (P.PRINCIPAL_USER, P.PRINCIPAL_RUNNER, P.PRINCIPAL_SERVICE_ACCOUNT)
    )
    tokens = {Action.CREATE, Action.GET, Action.LIST, Action.UPDATE, Action.DELETE}
    read_integrations = {Action.GET_INTEGRATION, Action.LIST_INTEGRATIONS}
    integrations = read_integrations | {
        Action.CREATE_INTEGRATION,
        Action.UPDATE_INTEGRATION,
        Action.DELETE_INTEGRATION,
    }
    assert user.visibility is Visibility.OWN_SUBJECT
    assert user.actions == tokens | read_integrations
    assert runner.visibility is Visibility.OWN_RUNNER
    # A runner reads secrets sealed only, and signs up for itself.
    assert runner.actions == tokens | integrations | {Action.SEALED_READ, Action.SIGNUP}
    assert not runner.grants
    assert sa.visibility is Visibility.EVERYTHING
    assert sa.actions == tokens | integrations | {Action.GET_VALUE, Action.SEALED_READ}
    assert dict(sa.grants) == {Action.GET_VALUE: READ_SECRETS, Action.SEALED_READ: READ_SECRETS}
    assert set(POLICY) == {P.PRINCIPAL_USER, P.PRINCIPAL_RUNNER, P.PRINCIPAL_SERVICE_ACCOUNT}


def caller_of(who: Who, subject_id: UUID) -> Caller:
    return Caller(who.principal, subject_id, "test", frozenset(who.grants))


def record_of(token: pb.HostAuthenticationToken) -> TokenRecord:
    return TokenRecord(
        id=UUID(token.id),
        runner_id=UUID(token.runner_id),
        subject_id=UUID(token.subject.id) if token.subject.id else None,
        subject_principal=token.subject.principal,
        host=token.host,
        source=token.source,
        expires_at=None,
        integration_id=None,
        scopes=(),
    )


def expected(caller: Caller, action: Action, token: pb.HostAuthenticationToken | None) -> str:
    """The outcome the table promises: ok, or an error code."""
    scope = scope_of(caller)
    if scope is None:
        return "permission_denied"
    if token is None or not scope.sees(record_of(token)):
        return "not_found"
    return "ok" if may(caller, action) else "permission_denied"


def own_request(who: Who, subject_id: UUID) -> pb.CreateHostAuthenticationTokenRequest:
    """A token the table says is the caller's own."""
    if who.principal == P.PRINCIPAL_USER:
        return create_request(subject=P.Subject(id=str(subject_id), principal=P.PRINCIPAL_USER))
    if who.principal == P.PRINCIPAL_RUNNER:
        return create_request(runner_id=str(subject_id))
    return create_request()


@pytest.fixture(params=MATRIX_WIRES)
def matrix_wire(request: pytest.FixtureRequest, wires: dict[str, Wire]) -> Wire:
    return wires[request.param]


@pytest.mark.parametrize("who", CALLERS, ids=[c.label for c in CALLERS])
@pytest.mark.parametrize("action", TOKEN_ACTIONS, ids=[a.name for a in TOKEN_ACTIONS])
@pytest.mark.parametrize("target", TARGETS)
async def test_token_actions(
    matrix_wire: Wire,
    api_keys: ApiKeyStore,
    core: HostAuthService,
    admin_call: Call,
    who: Who,
    action: Action,
    target: str,
) -> None:
    subject_id = uuid4()
    wire = matrix_wire.with_credential(await make_api_key(api_keys, who.principal, subject_id, *who.grants))
    admin = matrix_wire  # the wires' own credential: a service account with secrets:read
    token: pb.HostAuthenticationToken | None = None
    token_id = str(uuid4())
    if target != "missing":
        req = own_request(who, subject_id) if target == "own" else create_request()
        token = await create(admin, req)
        token_id = token.id
    caller = caller_of(who, subject_id)
    want = expected(caller, action, token)

    calls: dict[Action, Callable[[], Awaitable[object]]] = {
        Action.GET: lambda: get(wire, token_id),
        Action.UPDATE: lambda: update(wire, token_id, scopes=["changed"]),
        Action.DELETE: lambda: delete(wire, token_id),
        Action.GET_VALUE: lambda: get_value(wire, token_id),
    }
    code, message = await outcome(calls[action]())
    assert code == want, (who.label, action.name, target, message)

    if code == "not_found" and token is not None:
        # Hidden answers exactly like missing: the same code and words once
        # the token is really gone.
        await delete(admin, token_id)
        assert await outcome(calls[action]()) == (code, message)
    if code == "ok" and action is Action.UPDATE:
        assert list((await get(admin, token_id)).scopes) == ["changed"]
    if code == "permission_denied" and token is not None and action in (Action.UPDATE, Action.DELETE):
        assert list((await get(admin, token_id)).scopes) == list(token.scopes)  # untouched


@pytest.mark.parametrize("who", CALLERS, ids=[c.label for c in CALLERS])
@pytest.mark.parametrize("target", ["own", "other's"])
async def test_create(matrix_wire: Wire, api_keys: ApiKeyStore, who: Who, target: str) -> None:
    subject_id = uuid4()
    wire = matrix_wire.with_credential(await make_api_key(api_keys, who.principal, subject_id, *who.grants))
    req = own_request(who, subject_id) if target == "own" else create_request()
    caller = caller_of(who, subject_id)
    scope = scope_of(caller)
    would_be = pb.HostAuthenticationToken(id=str(uuid4()), runner_id=req.runner_id, subject=req.subject)
    want = (
        "ok"
        if may(caller, Action.CREATE) and scope is not None and scope.may_create(record_of(would_be))
        else "permission_denied"
    )
    code, message = await outcome(create(wire, req))
    assert code == want, (who.label, target, message)


async def test_user_create_without_subject_is_its_own(matrix_wire: Wire, api_keys: ApiKeyStore) -> None:
    user = uuid4()
    wire = matrix_wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, user))
    token = await create(wire, create_request(subject=None))
    assert token.subject == P.Subject(id=str(user), principal=P.PRINCIPAL_USER)
    assert token.user_id == str(user)
    assert (await get(wire, token.id)).id == token.id


OTHER_PRINCIPALS = [p for p in P.Principal.values() if p not in (P.PRINCIPAL_USER, P.PRINCIPAL_UNSPECIFIED)]


@pytest.mark.parametrize("principal", OTHER_PRINCIPALS, ids=[P.Principal.Name(p) for p in OTHER_PRINCIPALS])
async def test_user_may_not_create_under_its_id_as_another_principal(
    wire: Wire, api_keys: ApiKeyStore, principal: int
) -> None:
    """Itself as subject means its principal too, not only its id."""
    user = uuid4()
    as_user = wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, user))
    req = create_request(subject=P.Subject(id=str(user), principal=principal))  # type: ignore[arg-type]
    code, message = await outcome(create(as_user, req))
    assert (code, message) == (
        "permission_denied",
        "a user may only create tokens with itself as subject, a runner only tokens with its own runner_id",
    )
    assert await list_all(wire, page_size=25, runner_id=req.runner_id) == []  # nothing was stored


async def test_user_naming_its_id_without_principal_is_itself(wire: Wire, api_keys: ApiKeyStore) -> None:
    user = uuid4()
    as_user = wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, user))
    token = await create(as_user, create_request(subject=P.Subject(id=str(user).upper())))
    assert token.subject == P.Subject(id=str(user), principal=P.PRINCIPAL_USER)
    assert token.user_id == str(user)
    other = uuid4()  # someone else's id without a principal is still refused
    code, _ = await outcome(create(as_user, create_request(subject=P.Subject(id=str(other)))))
    assert code == "permission_denied"


@pytest.mark.parametrize("who", CALLERS, ids=[c.label for c in CALLERS])
async def test_list_is_narrowed_to_what_the_caller_sees(
    matrix_wire: Wire, api_keys: ApiKeyStore, who: Who
) -> None:
    subject_id = uuid4()
    wire = matrix_wire.with_credential(await make_api_key(api_keys, who.principal, subject_id, *who.grants))
    admin = matrix_wire
    runner_id = str(uuid4())  # one runner for this test's tokens, to filter on
    own_req = own_request(who, subject_id)
    if who.principal != P.PRINCIPAL_RUNNER:
        own_req.runner_id = runner_id
    own = await create(admin, own_req)
    other = await create(admin, create_request(runner_id=runner_id))
    caller = caller_of(who, subject_id)
    if not may(caller, Action.LIST) or scope_of(caller) is None:
        code, _ = await outcome(list_all(wire, page_size=10))
        assert code == "permission_denied"
        return
    visible = {t.id for t in (own, other) if expected(caller, Action.GET, t) == "ok"}
    seen = set(await list_all(wire, page_size=10, runner_id=own.runner_id)) | set(
        await list_all(wire, page_size=10, runner_id=runner_id)
    )
    assert seen == visible
    # Asking for someone else's tokens by filter shows nothing more.
    assert set(await list_all(wire, page_size=10, subject_id=other.subject.id)) <= visible


async def test_cursor_of_one_user_does_not_serve_another(matrix_wire: Wire, api_keys: ApiKeyStore) -> None:
    alice, bob = uuid4(), uuid4()
    alice_wire = matrix_wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, alice))
    bob_wire = matrix_wire.with_credential(await make_api_key(api_keys, P.PRINCIPAL_USER, bob))
    for _ in range(3):
        await create(alice_wire, create_request(subject=None))
    cursor = (await list_page(alice_wire, page_size=1)).pagination.next_token
    assert cursor
    code, message = await outcome(list_page(bob_wire, page_size=1, token=cursor))
    assert (code, message) == (
        "invalid_argument",
        "pagination.token: the page token was made for a List with other filters",
    )


def test_rule_for_unknown_principals_denies_everything() -> None:
    for principal in (P.PRINCIPAL_UNSPECIFIED, P.PRINCIPAL_ACCOUNT, P.PRINCIPAL_ENVIRONMENT, 42):
        caller = Caller(principal, uuid4(), "test")
        assert rule_for(caller).visibility is Visibility.NOTHING
        assert not any(may(caller, a) for a in Action)
