"""RunnerInteractionService: a runner signs up with its public key, and
reads the token of a principal for a host sealed to that key."""

from __future__ import annotations

from uuid import UUID

from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.auth.caller import Call
from hostauth.core import versions
from hostauth.core.model import SecretRead
from hostauth.core.policy import Action, may, scope_of
from hostauth.core.port import IntegrationVault, Refresher, RunnerBoxes, TokenVault
from hostauth.core.secret_reads import read_secrets
from hostauth.core.trail import Trail, event
from hostauth.core.validation import sealed_read_violations
from hostauth.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, PermissionDenied

SIGNUP_FIRST = (
    "runner {runner} has no public key: it signs up first"
    " (gitpod.v1.RunnerInteractionService/Signup with its X25519 public key)"
)


def _no_token(runner_id: str, principal_id: str, host: str) -> NotFound:
    # The same words whether there is none or it is not the caller's to see.
    return NotFound(
        f"no host authentication token of principal {principal_id} for host {host!r} on runner {runner_id}"
    )


class RunnerInteraction:
    __slots__ = ("_boxes", "_integrations", "_refresher", "_tokens", "_trail")

    def __init__(
        self,
        tokens: TokenVault,
        integrations: IntegrationVault,
        trail: Trail,
        boxes: RunnerBoxes,
        refresher: Refresher | None = None,
    ) -> None:
        self._tokens = tokens
        self._refresher = refresher
        self._boxes = boxes
        self._integrations = integrations
        self._trail = trail

    async def signup(self, req: ri.SignupRequest, call: Call) -> ri.SignupResponse:
        return await self._trail.audited(call, Action.SIGNUP, self._signup(req, call))

    async def _signup(self, req: ri.SignupRequest, call: Call) -> ri.SignupResponse:
        if not may(call.caller, Action.SIGNUP):
            raise PermissionDenied("only a runner signs up, with its own credential")
        try:
            raw = self._boxes.raw_x25519_key(req.public_key)
        except ValueError as exc:
            raise InvalidArgument([FieldViolation("public_key", str(exc))]) from None
        runner_id = call.caller.subject_id
        await self._integrations.set_runner_key(runner_id, raw, event(call, Action.SIGNUP, "ok"))
        return ri.SignupResponse(runner_id=str(runner_id))

    async def get_token_value(
        self, req: ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest, call: Call
    ) -> ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse:
        return await self._trail.audited(call, Action.SEALED_READ, self._get_token_value(req, call))

    async def _get_token_value(
        self, req: ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest, call: Call
    ) -> ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse:
        violations = sealed_read_violations(req)
        if violations:
            raise InvalidArgument(violations)
        scope = scope_of(call.caller)
        runner_id, principal_id = UUID(req.runner_id), UUID(req.principal_id)
        if scope is None or (scope.runner_id is not None and scope.runner_id != runner_id):
            raise _no_token(req.runner_id, req.principal_id, req.host)  # another runner's
        token_id = await self._tokens.find(runner_id, principal_id, req.host)
        record = None if token_id is None else await self._tokens.get(token_id)
        if token_id is None or record is None or not scope.sees(record):
            raise _no_token(req.runner_id, req.principal_id, req.host)
        if not may(call.caller, Action.SEALED_READ):
            raise PermissionDenied(f"{Action.SEALED_READ.value} is not allowed for this caller")
        key = await self._integrations.runner_key(runner_id)
        if key is None:
            raise FailedPrecondition(SIGNUP_FIRST.format(runner=runner_id))
        read = SecretRead(token_id, runner_id, principal_id, event(call, Action.SEALED_READ, "ok", token_id))
        try:
            record, secrets = await read_secrets(self._tokens, read, call, self._refresher)
        except NotFound:
            raise _no_token(req.runner_id, req.principal_id, req.host) from None  # deleted meanwhile
        versions.note(record.id, record.version)
        response = ri.RunnerInteractionServiceGetHostAuthenticationTokenValueResponse(
            token_id=str(token_id),
            value=self._boxes.seal(key, secrets.token.encode()),
            source=record.source,  # type: ignore[arg-type]
        )
        if secrets.refresh_token:
            response.refresh_token = self._boxes.seal(key, secrets.refresh_token.encode())
        if record.expires_at is not None:
            response.expires_at.FromDatetime(record.expires_at)
        return response
