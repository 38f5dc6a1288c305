"""The authenticated caller of one request, as the core sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Caller:
    """A principal with an id, proven by a credential (named, never held)."""

    principal: int
    subject_id: UUID
    # Names the credential for audit ("api_key:<id>", "jwt:<jti>"); never the credential.
    credential_id: str
    grants: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Call:
    """One request: who makes it, and the id that ties its log and audit lines."""

    caller: Caller
    request_id: str
