"""The service core: the six methods of RunnerConfigurationService.

Transport-free and cipher-free: it takes and returns protobuf messages,
raises hostauth.errors, and stores plaintext through one TokenVault
(core/port.py); the adapters above it only translate, the vault below it
(vault.py) encrypts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC
from typing import TypeVar
from uuid import UUID, uuid4

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.caller import Call
from hostauth.core import versions
from hostauth.core.cursor import CursorCodec
from hostauth.core.integrations import ScmIntegrations
from hostauth.core.model import (
    KEEP,
    AuditEvent,
    ListQuery,
    SecretRead,
    Secrets,
    TokenChanges,
    TokenRecord,
)
from hostauth.core.policy import Action, Scope, may, scope_of
from hostauth.core.port import IntegrationVault, Refresher, RunnerBoxes, TokenVault
from hostauth.core.runner_side import RunnerInteraction
from hostauth.core.secret_reads import not_found, read_secrets
from hostauth.core.trail import Trail, event
from hostauth.core.validation import create_violations, id_violations, list_violations, update_violations
from hostauth.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unimplemented,
)
from hostauth.log_repeats import Repeats

log = logging.getLogger(__name__)
_failures = Repeats(log)

T = TypeVar("T")

# A Create that keeps losing races (the row it found deleted, or another
# writer's insert in between) gives up after this many rounds.
_UPSERT_ATTEMPTS = 5

DEFAULT_PAGE_SIZE = 25

SEALED_READ_PATH = "gitpod.v1.RunnerInteractionService/GetHostAuthenticationTokenValue"
RUNNERS_READ_SEALED = f"a runner reads its tokens sealed to its key: call {SEALED_READ_PATH}"
PLAINTEXT_READS_OFF = (
    "GetHostAuthenticationTokenValue is turned off on this service (HOSTAUTH_PLAINTEXT_READS=off):"
    f" runners read their tokens sealed to their key through {SEALED_READ_PATH}"
)


def resolve_subject(
    req: pb.CreateHostAuthenticationTokenRequest, violations: list[FieldViolation], call: Call
) -> tuple[str, int]:
    """The token's subject: `subject` when set, else the deprecated user_id,
    else (for a user calling) the user itself.

    A subject with neither id nor principal counts as unset (an empty JSON
    object `"subject": {}` says nothing). A user naming its own id without a
    principal names itself.
    """
    subject = req.subject
    if req.HasField("subject") and (subject.id or subject.principal):
        if req.user_id and req.user_id.lower() != subject.id.lower():
            violations.append(
                FieldViolation("user_id", "value must be empty or equal subject.id when both are set")
            )
        caller = call.caller
        if (
            subject.principal == identity_pb2.PRINCIPAL_UNSPECIFIED
            and caller.principal == identity_pb2.PRINCIPAL_USER
            and subject.id.lower() == str(caller.subject_id)
        ):
            return subject.id, identity_pb2.PRINCIPAL_USER
        return subject.id, subject.principal
    if req.user_id:
        return req.user_id, identity_pb2.PRINCIPAL_USER
    if call.caller.principal == identity_pb2.PRINCIPAL_USER:
        return str(call.caller.subject_id), identity_pb2.PRINCIPAL_USER
    return "", identity_pb2.PRINCIPAL_UNSPECIFIED


def to_message(record: TokenRecord) -> pb.HostAuthenticationToken:
    """A stored token's metadata as the API returns it (never a secret).
    Fields at their default are left unset rather than set to it: a List page
    makes 25 of these, and every keyword costs."""
    msg = pb.HostAuthenticationToken(id=str(record.id), runner_id=str(record.runner_id), host=record.host)
    if record.source:
        msg.source = record.source  # type: ignore[assignment]
    if record.integration_id:
        msg.integration_id = str(record.integration_id)
    if record.scopes:
        msg.scopes.extend(record.scopes)
    subject_id = str(record.subject_id) if record.subject_id else ""
    if subject_id or record.subject_principal:
        subject = msg.subject
        subject.id = subject_id
        subject.principal = record.subject_principal  # type: ignore[assignment]
    if subject_id and record.subject_principal == identity_pb2.PRINCIPAL_USER:
        msg.user_id = subject_id
    if record.expires_at is not None:
        msg.expires_at.FromDatetime(record.expires_at)
    return msg


def parse_id(token_id: str) -> UUID:
    """A request's token id, or invalid_argument naming the field `id`."""
    violations = id_violations(token_id)
    if violations:
        raise InvalidArgument(violations)
    return UUID(token_id)


class HostAuthService:
    """RunnerConfigurationService, independent of any wire.

    Every method takes the request and the Call (who, request id). Writes and
    secret reads leave an audit row: a write's in the same statement as the
    write, a GetValue's before any secret is returned.
    """

    __slots__ = (
        "_cursors", "_plaintext_reads", "_refresher", "_store", "integrations", "refresher", "runners",
        "trail",
    )  # fmt: skip

    def __init__(
        self,
        store: TokenVault,
        cursors: CursorCodec,
        integrations: IntegrationVault,
        boxes: RunnerBoxes,
        *,
        plaintext_reads: bool = True,
        refresher: Refresher | None = None,
    ) -> None:
        """plaintext_reads: False turns GetHostAuthenticationTokenValue off
        (secrets then leave only sealed to a runner)."""
        self._store = store
        self._cursors = cursors
        self._plaintext_reads = plaintext_reads
        self._refresher = refresher
        self.refresher = refresher
        self.trail = Trail(store.audit)
        self.integrations = ScmIntegrations(integrations, cursors, self.trail, boxes)
        self.runners = RunnerInteraction(store, integrations, self.trail, boxes, refresher)

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _event(call: Call, action: Action, token_id: UUID | None, outcome: str) -> AuditEvent:
        return event(call, action, outcome, token_id)

    async def _audited(self, call: Call, action: Action, token_id: UUID | None, work: Awaitable[T]) -> T:
        """Run a write or secret read; a refusal of it is recorded too (its
        success records itself, in the statement that writes)."""
        try:
            return await work
        except Exception as exc:
            await self.trail.refusal(call, action, exc, token_id, None)
            raise

    @staticmethod
    def _token_id_of(raw: str) -> UUID | None:
        return UUID(raw) if not id_violations(raw) else None

    @staticmethod
    def _visible_scope(call: Call) -> Scope:
        scope = scope_of(call.caller)
        if scope is None:
            raise PermissionDenied("this principal may not use host authentication tokens")
        return scope

    def _require(self, call: Call, action: Action) -> None:
        if not may(call.caller, action):
            raise PermissionDenied(f"{action.value} is not allowed for this caller")

    # -- the six methods -----------------------------------------------------

    async def create_host_authentication_token(
        self, req: pb.CreateHostAuthenticationTokenRequest, call: Call
    ) -> pb.CreateHostAuthenticationTokenResponse:
        return await self._audited(call, Action.CREATE, None, self._create(req, call))

    async def _create(
        self, req: pb.CreateHostAuthenticationTokenRequest, call: Call
    ) -> pb.CreateHostAuthenticationTokenResponse:
        self._require(call, Action.CREATE)
        violations = create_violations(req)
        subject_id, principal = resolve_subject(req, violations, call)
        if violations:
            raise InvalidArgument(violations)
        record = TokenRecord(
            id=uuid4(),
            runner_id=UUID(req.runner_id),
            subject_id=UUID(subject_id) if subject_id else None,
            subject_principal=principal,
            host=req.host,
            source=req.source,
            expires_at=req.expires_at.ToDatetime(tzinfo=UTC) if req.HasField("expires_at") else None,
            integration_id=UUID(req.integration_id) if req.integration_id else None,
            scopes=tuple(req.scopes),
        )
        if not self._visible_scope(call).may_create(record):
            raise PermissionDenied(
                "a user may only create tokens with itself as subject,"
                " a runner only tokens with its own runner_id"
            )
        if record.integration_id is not None:
            await self.integrations.check_token_integration(
                record.integration_id, record.runner_id, record.host
            )
        secrets = Secrets(req.token, req.refresh_token)
        for _ in range(_UPSERT_ATTEMPTS):
            # Most Creates are new: try the insert first (concurrent ones share
            # a statement), and on a conflict replace the existing token in
            # place, keeping its id. Each write carries its audit row in the
            # same statement.
            if await self._store.insert(record, secrets, self._event(call, Action.CREATE, record.id, "ok")):
                break
            existing = await self._store.replace(
                record, secrets, self._event(call, Action.CREATE, None, "ok")
            )
            if existing is not None:
                record = record._replace(id=existing[0], version=existing[1])
                break
            record = record._replace(id=uuid4())  # deleted in between: insert again
        else:
            raise Aborted("the token was changed concurrently too often; retry the request")
        versions.note(record.id, record.version)
        return pb.CreateHostAuthenticationTokenResponse(token=to_message(record))

    async def get_host_authentication_token(
        self, req: pb.GetHostAuthenticationTokenRequest, call: Call
    ) -> pb.GetHostAuthenticationTokenResponse:
        scope = self._visible_scope(call)
        token_id = parse_id(req.id)
        record = await self._store.get(token_id)
        if record is None or not scope.sees(record):
            raise not_found(token_id)
        self._require(call, Action.GET)
        versions.note(record.id, record.version)
        return pb.GetHostAuthenticationTokenResponse(token=to_message(record))

    async def list_host_authentication_tokens(
        self, req: pb.ListHostAuthenticationTokensRequest, call: Call
    ) -> pb.ListHostAuthenticationTokensResponse:
        scope = self._visible_scope(call)
        self._require(call, Action.LIST)
        violations = list_violations(req)
        if violations:
            raise InvalidArgument(violations)
        f = req.filter
        runner_ids = {UUID(f.runner_id)} if f.HasField("runner_id") else set()
        # user_id is the deprecated name of subject_id; both present must agree.
        subject_ids = {UUID(getattr(f, name)) for name in ("subject_id", "user_id") if f.HasField(name)}
        # The caller's scope narrows the filters: a token outside it matches nothing.
        if scope.runner_id is not None:
            runner_ids.add(scope.runner_id)
        if scope.subject_id is not None:
            subject_ids.add(scope.subject_id)
        runners, subjects = (",".join(sorted(map(str, ids))) for ids in (runner_ids, subject_ids))
        cursor_scope = f"runners={runners};subjects={subjects}"
        after = self._cursors.decode(req.pagination.token, cursor_scope) if req.pagination.token else None
        if len(subject_ids) > 1 or len(runner_ids) > 1:
            return pb.ListHostAuthenticationTokensResponse()  # no token has two
        page_size = req.pagination.page_size or DEFAULT_PAGE_SIZE
        query = ListQuery(
            runner_id=next(iter(runner_ids), None),
            subject_id=next(iter(subject_ids), None),
            after=after,
            limit=page_size + 1,  # one more tells whether a next page exists
        )
        rows = await self._store.list(query)
        page = rows[:page_size]
        for r, _ in page:
            versions.note(r.id, r.version)
        response = pb.ListHostAuthenticationTokensResponse(tokens=[to_message(r) for r, _ in page])
        if len(rows) > page_size:
            response.pagination.next_token = self._cursors.encode(page[-1][1], cursor_scope)
        return response

    async def _refuse_or_hide(
        self, call: Call, action: Action, token_id: UUID, scope: Scope, why: str | None = None
    ) -> None:
        """For an action the caller may not take: not_found unless it sees the token."""
        record = await self._store.get(token_id)
        if record is None or not scope.sees(record):
            raise not_found(token_id)
        raise PermissionDenied(why or f"{action.value} is not allowed for this caller")

    async def update_host_authentication_token(
        self, req: pb.UpdateHostAuthenticationTokenRequest, call: Call
    ) -> pb.UpdateHostAuthenticationTokenResponse:
        return await self._audited(call, Action.UPDATE, self._token_id_of(req.id), self._update(req, call))

    async def _update(
        self, req: pb.UpdateHostAuthenticationTokenRequest, call: Call
    ) -> pb.UpdateHostAuthenticationTokenResponse:
        scope = self._visible_scope(call)
        violations = update_violations(req)
        if violations:
            raise InvalidArgument(violations)
        token_id = UUID(req.id)
        if not may(call.caller, Action.UPDATE):
            await self._refuse_or_hide(call, Action.UPDATE, token_id, scope)
        changes: TokenChanges[str] = TokenChanges(
            token=req.token if req.HasField("token") else KEEP,
            # Present and empty clears the refresh token.
            refresh_token=(req.refresh_token or None) if req.HasField("refresh_token") else KEEP,
            expires_at=req.expires_at.ToDatetime(tzinfo=UTC) if req.HasField("expires_at") else KEEP,
            # An empty list leaves the scopes as they are (see the proto).
            scopes=tuple(req.scopes) if req.scopes else KEEP,
        )
        event = self._event(call, Action.UPDATE, token_id, "ok")
        expected = versions.expected_version()
        version = await self._store.update(
            token_id,
            changes,
            runner_id=scope.runner_id,
            subject_id=scope.subject_id,
            audit=event,
            if_version=expected,
        )
        if version is None:
            await self._missing_or_changed(token_id, scope, expected)
        else:
            versions.note(token_id, version)
        return pb.UpdateHostAuthenticationTokenResponse()

    async def _missing_or_changed(self, token_id: UUID, scope: Scope, expected: int | None) -> None:
        """A conditional write that wrote nothing: failed_precondition when the
        caller sees the token at another version than it named, else not_found."""
        if expected is not None:
            record = await self._store.get(token_id)
            if record is not None and scope.sees(record) and record.version != expected:
                raise FailedPrecondition(
                    f"host authentication token {token_id} changed: it is at version"
                    f" {versions.etag_of(record.version)}, not {versions.etag_of(expected)};"
                    " read it again and retry with its etag"
                )
        raise not_found(token_id)

    async def delete_host_authentication_token(
        self, req: pb.DeleteHostAuthenticationTokenRequest, call: Call
    ) -> pb.DeleteHostAuthenticationTokenResponse:
        return await self._audited(call, Action.DELETE, self._token_id_of(req.id), self._delete(req, call))

    async def _delete(
        self, req: pb.DeleteHostAuthenticationTokenRequest, call: Call
    ) -> pb.DeleteHostAuthenticationTokenResponse:
        scope = self._visible_scope(call)
        token_id = parse_id(req.id)
        if not may(call.caller, Action.DELETE):
            await self._refuse_or_hide(call, Action.DELETE, token_id, scope)
        event = self._event(call, Action.DELETE, token_id, "ok")
        expected = versions.expected_version()
        if not await self._store.delete(
            token_id, runner_id=scope.runner_id, subject_id=scope.subject_id, audit=event, if_version=expected
        ):
            await self._missing_or_changed(token_id, scope, expected)
        return pb.DeleteHostAuthenticationTokenResponse()

    async def get_host_authentication_token_value(
        self, req: pb.GetHostAuthenticationTokenValueRequest, call: Call
    ) -> pb.GetHostAuthenticationTokenValueResponse:
        return await self._audited(
            call, Action.GET_VALUE, self._token_id_of(req.id), self._get_value(req, call)
        )

    async def _get_value(
        self, req: pb.GetHostAuthenticationTokenValueRequest, call: Call
    ) -> pb.GetHostAuthenticationTokenValueResponse:
        if not self._plaintext_reads:
            raise Unimplemented(PLAINTEXT_READS_OFF)
        scope = self._visible_scope(call)
        token_id = parse_id(req.id)
        if not may(call.caller, Action.GET_VALUE):
            why = RUNNERS_READ_SEALED if call.caller.principal == identity_pb2.PRINCIPAL_RUNNER else None
            await self._refuse_or_hide(call, Action.GET_VALUE, token_id, scope, why)
        # The read and its audit row are committed together (concurrent reads
        # share the statement): no secret is read without a record of it.
        read = SecretRead(
            token_id, scope.runner_id, scope.subject_id, self._event(call, Action.GET_VALUE, token_id, "ok")
        )
        record, secrets = await read_secrets(self._store, read, call, self._refresher)
        versions.note(record.id, record.version)
        response = pb.GetHostAuthenticationTokenValueResponse(
            id=str(token_id), token=secrets.token, refresh_token=secrets.refresh_token
        )
        if record.expires_at is not None:
            response.expires_at.FromDatetime(record.expires_at)
        return response
