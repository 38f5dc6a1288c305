"""The SCM integration methods of RunnerConfigurationService.

An integration is a runner's OAuth app (or PAT setting) for one git host.
Its client secret is stored envelope-encrypted (through the IntegrationVault)
and leaves only as a sealed box to the integration's runner's key.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.auth.caller import Call
from hostauth.core.cursor import CursorCodec
from hostauth.core.model import KEEP, IntegrationChanges, IntegrationRecord, Keep, StoredIntegration
from hostauth.core.policy import Action, integration_scope, may
from hostauth.core.port import IntegrationVault, RunnerBoxes
from hostauth.core.trail import Trail, event
from hostauth.core.validation import (
    create_integration_violations,
    id_violations,
    list_integrations_violations,
    update_integration_violations,
)
from hostauth.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound, PermissionDenied

DEFAULT_PAGE_SIZE = 25


def integration_message(stored: StoredIntegration[str], boxes: RunnerBoxes) -> pb.SCMIntegration:
    """An integration as the API returns it: the client secret sealed to its
    runner's key, or empty while that runner has none."""
    record = stored.record
    msg = pb.SCMIntegration(
        id=str(record.id),
        scm_id=record.scm_id,
        host=record.host,
        pat=record.pat,
        runner_id=str(record.runner_id),
    )
    if record.oauth_client_id is not None:
        oauth = msg.oauth
        oauth.client_id = record.oauth_client_id
        if record.issuer_url:
            oauth.issuer_url = record.issuer_url
        if stored.client_secret is not None and stored.runner_key is not None:
            oauth.encrypted_client_secret = boxes.seal(stored.runner_key, stored.client_secret.encode())
    elif record.issuer_url:
        msg.oauth.issuer_url = record.issuer_url
    if record.virtual_directory is not None:
        msg.virtual_directory = record.virtual_directory
    return msg


def not_found(integration_id: UUID) -> NotFound:
    # The same words whether it never existed or is not the caller's to see.
    return NotFound(f"SCM integration {integration_id} not found")


def _optional(req: pb.CreateSCMIntegrationRequest, name: str) -> str | None:
    value: str = getattr(req, name)
    return value if req.HasField(name) and value else None


class ScmIntegrations:
    """Create, Get, List, Update, Delete of SCM integrations."""

    __slots__ = ("_boxes", "_cursors", "_trail", "_vault")

    def __init__(
        self, vault: IntegrationVault, cursors: CursorCodec, trail: Trail, boxes: RunnerBoxes
    ) -> None:
        self._vault = vault
        self._boxes = boxes
        self._cursors = cursors
        self._trail = trail

    @staticmethod
    def _require(call: Call, action: Action) -> None:
        if not may(call.caller, action):
            raise PermissionDenied(f"{action.value} is not allowed for this caller")

    @staticmethod
    def _parse_id(raw: str) -> UUID:
        violations = id_violations(raw)
        if violations:
            raise InvalidArgument(violations)
        return UUID(raw)

    async def _visible(self, call: Call, integration_id: UUID) -> StoredIntegration[str]:
        """The integration, when the caller sees it; else not_found."""
        stored = await self._vault.get(integration_id)
        runner = integration_scope(call.caller)
        if stored is None or (runner is not None and stored.record.runner_id != runner):
            raise not_found(integration_id)
        return stored

    async def _refuse_or_hide(self, call: Call, action: Action, integration_id: UUID) -> None:
        if not may(call.caller, Action.GET_INTEGRATION):
            raise not_found(integration_id)  # sees no integration at all
        await self._visible(call, integration_id)
        raise PermissionDenied(f"{action.value} is not allowed for this caller")

    async def check_token_integration(self, integration_id: UUID, runner_id: UUID, host: str) -> None:
        """A token's integration_id must name an integration of the token's
        runner and host."""
        stored = await self._vault.get(integration_id)
        if (
            stored is None
            or stored.record.runner_id != runner_id
            or stored.record.host.lower() != host.lower()
        ):
            raise InvalidArgument(
                [FieldViolation("integration_id", "value must name an SCM integration of runner_id for host")]
            )

    # -- the five methods ----------------------------------------------------

    async def create(
        self, req: pb.CreateSCMIntegrationRequest, call: Call
    ) -> pb.CreateSCMIntegrationResponse:
        return await self._trail.audited(call, Action.CREATE_INTEGRATION, self._create(req, call))

    async def _create(
        self, req: pb.CreateSCMIntegrationRequest, call: Call
    ) -> pb.CreateSCMIntegrationResponse:
        self._require(call, Action.CREATE_INTEGRATION)
        violations = create_integration_violations(req)
        if violations:
            raise InvalidArgument(violations)
        record = IntegrationRecord(
            id=uuid4(),
            runner_id=UUID(req.runner_id),
            scm_id=req.scm_id,
            host=req.host,
            oauth_client_id=_optional(req, "oauth_client_id"),
            issuer_url=_optional(req, "issuer_url"),
            pat=req.pat,
            virtual_directory=req.virtual_directory if req.HasField("virtual_directory") else None,
        )
        runner = integration_scope(call.caller)
        if runner is not None and record.runner_id != runner:
            raise PermissionDenied("a runner may only create integrations with its own runner_id")
        secret = _optional(req, "oauth_plaintext_client_secret")
        audit = event(call, Action.CREATE_INTEGRATION, "ok", integration_id=record.id)
        if not await self._vault.insert(record, secret, audit):
            raise AlreadyExists(
                f"runner {record.runner_id} already has an SCM integration for host {req.host!r}"
            )
        return pb.CreateSCMIntegrationResponse(id=str(record.id))

    async def get(self, req: pb.GetSCMIntegrationRequest, call: Call) -> pb.GetSCMIntegrationResponse:
        integration_id = self._parse_id(req.id)
        if not may(call.caller, Action.GET_INTEGRATION):
            raise not_found(integration_id)
        stored = await self._visible(call, integration_id)
        return pb.GetSCMIntegrationResponse(integration=integration_message(stored, self._boxes))

    async def list(self, req: pb.ListSCMIntegrationsRequest, call: Call) -> pb.ListSCMIntegrationsResponse:
        self._require(call, Action.LIST_INTEGRATIONS)
        violations = list_integrations_violations(req)
        if violations:
            raise InvalidArgument(violations)
        wanted = {UUID(r) for r in req.filter.runner_ids}
        runner = integration_scope(call.caller)
        if runner is not None:
            # A runner sees its own only: a filter naming others matches nothing of theirs.
            if wanted and runner not in wanted:
                return pb.ListSCMIntegrationsResponse()
            wanted = {runner}
        runner_ids = tuple(sorted(wanted))
        cursor_scope = "integrations;runners=" + ",".join(map(str, runner_ids))
        after = self._cursors.decode(req.pagination.token, cursor_scope) if req.pagination.token else None
        page_size = req.pagination.page_size or DEFAULT_PAGE_SIZE
        rows = await self._vault.list(runner_ids, after, page_size + 1)
        page = rows[:page_size]
        response = pb.ListSCMIntegrationsResponse(
            integrations=[integration_message(s, self._boxes) for s in page]
        )
        if len(rows) > page_size:
            response.pagination.next_token = self._cursors.encode(page[-1].position, cursor_scope)
        return response

    async def update(
        self, req: pb.UpdateSCMIntegrationRequest, call: Call
    ) -> pb.UpdateSCMIntegrationResponse:
        target = UUID(req.id) if not id_violations(req.id) else None
        work = self._update(req, call, target)
        return await self._trail.audited(call, Action.UPDATE_INTEGRATION, work, integration_id=target)

    async def _update(
        self, req: pb.UpdateSCMIntegrationRequest, call: Call, target: UUID | None
    ) -> pb.UpdateSCMIntegrationResponse:
        violations = update_integration_violations(req)
        if violations or target is None:
            raise InvalidArgument(violations)
        if not may(call.caller, Action.UPDATE_INTEGRATION):
            await self._refuse_or_hide(call, Action.UPDATE_INTEGRATION, target)
        stored = await self._visible(call, target)
        oauth_client_id: str | Keep | None = KEEP
        secret: str | Keep | None = KEEP
        if req.HasField("oauth_client_id"):
            # Present: a new OAuth app (id and secret), or none (empty).
            oauth_client_id = req.oauth_client_id or None
            secret = req.oauth_plaintext_client_secret or None
        elif req.HasField("oauth_plaintext_client_secret"):
            if stored.record.oauth_client_id is None:
                raise InvalidArgument(
                    [FieldViolation("oauth_client_id", "value is required: the integration has no OAuth app")]
                )
            secret = req.oauth_plaintext_client_secret
        changes: IntegrationChanges[str] = IntegrationChanges(
            oauth_client_id=oauth_client_id,
            client_secret=secret,
            pat=req.pat if req.HasField("pat") else KEEP,
            issuer_url=(req.issuer_url or None) if req.HasField("issuer_url") else KEEP,
            virtual_directory=(req.virtual_directory or None) if req.HasField("virtual_directory") else KEEP,
        )
        audit = event(call, Action.UPDATE_INTEGRATION, "ok", integration_id=target)
        if not await self._vault.update(
            target, changes, runner_id=integration_scope(call.caller), audit=audit
        ):
            raise not_found(target)
        return pb.UpdateSCMIntegrationResponse()

    async def delete(
        self, req: pb.DeleteSCMIntegrationRequest, call: Call
    ) -> pb.DeleteSCMIntegrationResponse:
        target = UUID(req.id) if not id_violations(req.id) else None
        work = self._delete(req, call)
        return await self._trail.audited(call, Action.DELETE_INTEGRATION, work, integration_id=target)

    async def _delete(
        self, req: pb.DeleteSCMIntegrationRequest, call: Call
    ) -> pb.DeleteSCMIntegrationResponse:
        target = self._parse_id(req.id)
        if not may(call.caller, Action.DELETE_INTEGRATION):
            await self._refuse_or_hide(call, Action.DELETE_INTEGRATION, target)
        audit = event(call, Action.DELETE_INTEGRATION, "ok", integration_id=target)
        if await self._vault.delete(target, runner_id=integration_scope(call.caller), audit=audit) is None:
            raise not_found(target)
        return pb.DeleteSCMIntegrationResponse()
