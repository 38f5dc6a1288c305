"""The service core: the six methods of RunnerConfigurationService.

Transport-free: it takes and returns protobuf messages and raises
server.errors; the gRPC and Connect adapters only translate.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC
from uuid import UUID, uuid4

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from server.crypto import Sealer, SecretContext
from server.errors import Aborted, FieldViolation, InvalidArgument, Unimplemented
from server.store import Ciphertext, SealedSecrets, TokenRecord, TokenStore
from server.validation import create_violations

log = logging.getLogger(__name__)

# A Create that keeps losing races (the row it found deleted, or another
# writer's insert in between) gives up after this many rounds.
_UPSERT_ATTEMPTS = 5

FIELD_TOKEN = "token"
FIELD_REFRESH_TOKEN = "refresh_token"


def resolve_subject(
    req: pb.CreateHostAuthenticationTokenRequest, violations: list[FieldViolation]
) -> tuple[str, int]:
    """The token's subject: `subject` when set, else the deprecated user_id.

    A subject with neither id nor principal counts as unset (an empty JSON
    object `"subject": {}` says nothing).
    """
    subject = req.subject
    if req.HasField("subject") and (subject.id or subject.principal):
        if req.user_id and req.user_id.lower() != subject.id.lower():
            violations.append(
                FieldViolation("user_id", "value must be empty or equal subject.id when both are set")
            )
        return subject.id, subject.principal
    if req.user_id:
        return req.user_id, identity_pb2.PRINCIPAL_USER
    return "", identity_pb2.PRINCIPAL_UNSPECIFIED


def to_message(record: TokenRecord) -> pb.HostAuthenticationToken:
    """A stored token's metadata as the API returns it (never a secret)."""
    msg = pb.HostAuthenticationToken(
        id=str(record.id),
        runner_id=str(record.runner_id),
        host=record.host,
        source=record.source,  # type: ignore[arg-type]
        integration_id=str(record.integration_id) if record.integration_id else "",
        scopes=record.scopes,
    )
    subject_id = str(record.subject_id) if record.subject_id else ""
    if subject_id or record.subject_principal:
        msg.subject.id = subject_id
        msg.subject.principal = record.subject_principal  # type: ignore[assignment]
    if subject_id and record.subject_principal == identity_pb2.PRINCIPAL_USER:
        msg.user_id = subject_id
    if record.expires_at is not None:
        msg.expires_at.FromDatetime(record.expires_at)
    return msg


class HostAuthService:
    """RunnerConfigurationService, independent of any wire."""

    __slots__ = ("_sealer", "_store")

    def __init__(self, store: TokenStore, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    def _seal(self, token_id: UUID, token: str, refresh_token: str) -> SealedSecrets:
        tid = str(token_id)
        return SealedSecrets(
            token=Ciphertext(self._sealer.seal(token.encode(), SecretContext(tid, FIELD_TOKEN))),
            refresh_token=(
                Ciphertext(self._sealer.seal(refresh_token.encode(), SecretContext(tid, FIELD_REFRESH_TOKEN)))
                if refresh_token
                else None
            ),
        )

    async def create_host_authentication_token(
        self, req: pb.CreateHostAuthenticationTokenRequest
    ) -> pb.CreateHostAuthenticationTokenResponse:
        violations = create_violations(req)
        subject_id, principal = resolve_subject(req, violations)
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
        async with self._store.session() as db:
            for _ in range(_UPSERT_ATTEMPTS):
                # Most Creates are new: try the insert first, and on a
                # conflict re-seal under the existing id (the ciphertexts are
                # bound to the id) and replace that row in place.
                if await db.insert(record, self._seal(record.id, req.token, req.refresh_token)):
                    break
                existing = await db.find_id(record.runner_id, record.subject_id, record.host)
                if existing is None:
                    continue  # deleted in between: insert again
                record = dataclasses.replace(record, id=existing)
                if await db.replace(record, self._seal(existing, req.token, req.refresh_token)):
                    break
                record = dataclasses.replace(record, id=uuid4())
            else:
                raise Aborted("the token was changed concurrently too often; retry the request")
        return pb.CreateHostAuthenticationTokenResponse(token=to_message(record))

    async def get_host_authentication_token(
        self, req: pb.GetHostAuthenticationTokenRequest
    ) -> pb.GetHostAuthenticationTokenResponse:
        raise Unimplemented("GetHostAuthenticationToken is not implemented yet")

    async def list_host_authentication_tokens(
        self, req: pb.ListHostAuthenticationTokensRequest
    ) -> pb.ListHostAuthenticationTokensResponse:
        raise Unimplemented("ListHostAuthenticationTokens is not implemented yet")

    async def update_host_authentication_token(
        self, req: pb.UpdateHostAuthenticationTokenRequest
    ) -> pb.UpdateHostAuthenticationTokenResponse:
        raise Unimplemented("UpdateHostAuthenticationToken is not implemented yet")

    async def delete_host_authentication_token(
        self, req: pb.DeleteHostAuthenticationTokenRequest
    ) -> pb.DeleteHostAuthenticationTokenResponse:
        raise Unimplemented("DeleteHostAuthenticationToken is not implemented yet")

    async def get_host_authentication_token_value(
        self, req: pb.GetHostAuthenticationTokenValueRequest
    ) -> pb.GetHostAuthenticationTokenValueResponse:
        raise Unimplemented("GetHostAuthenticationTokenValue is not implemented yet")
