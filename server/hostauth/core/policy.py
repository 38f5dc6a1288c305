"""Who may do what: the one policy table, read by the core and by the tests.

| principal       | Create                    | Get / List / Update / Delete | GetValue              |
| USER            | only with itself as subject | its own tokens             | denied                |
| RUNNER          | any subject, runner = itself | tokens of its runner       | tokens of its runner  |
| SERVICE_ACCOUNT | all                       | all                          | with `secrets:read`   |
| any other       | denied                    | denied                       | denied                |

A token the caller may not see is answered not_found, like a missing one; an
action the caller may not take on a token it sees is permission_denied.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from gitpod.v1 import identity_pb2
from hostauth.auth.caller import Caller
from hostauth.core.model import TokenRecord

READ_SECRETS = "secrets:read"


class Action(enum.Enum):
    CREATE = "CreateHostAuthenticationToken"
    GET = "GetHostAuthenticationToken"
    LIST = "ListHostAuthenticationTokens"
    UPDATE = "UpdateHostAuthenticationToken"
    DELETE = "DeleteHostAuthenticationToken"
    GET_VALUE = "GetHostAuthenticationTokenValue"


class Visibility(enum.Enum):
    NOTHING = "nothing"
    OWN_SUBJECT = "tokens whose subject is the caller"
    OWN_RUNNER = "tokens whose runner is the caller"
    EVERYTHING = "every token"


@dataclass(frozen=True, slots=True)
class Rule:
    visibility: Visibility
    actions: frozenset[Action]
    # Actions that also need a grant on the credential.
    grants: Mapping[Action, str] = field(default_factory=dict)


ALL_ACTIONS = frozenset(Action)

POLICY: Mapping[int, Rule] = {
    identity_pb2.PRINCIPAL_USER: Rule(
        Visibility.OWN_SUBJECT,
        frozenset({Action.CREATE, Action.GET, Action.LIST, Action.UPDATE, Action.DELETE}),
    ),
    identity_pb2.PRINCIPAL_RUNNER: Rule(Visibility.OWN_RUNNER, ALL_ACTIONS),
    identity_pb2.PRINCIPAL_SERVICE_ACCOUNT: Rule(
        Visibility.EVERYTHING, ALL_ACTIONS, {Action.GET_VALUE: READ_SECRETS}
    ),
}
NOBODY = Rule(Visibility.NOTHING, frozenset())


def rule_for(caller: Caller) -> Rule:
    return POLICY.get(caller.principal, NOBODY)


def may(caller: Caller, action: Action) -> bool:
    rule = rule_for(caller)
    grant = rule.grants.get(action)
    return action in rule.actions and (grant is None or grant in caller.grants)


@dataclass(frozen=True, slots=True)
class Scope:
    """The tokens a caller sees: those matching every id set here."""

    runner_id: UUID | None = None
    subject_id: UUID | None = None
    # A user's own subject is its id and its principal; seeing goes by the id.
    subject_principal: int | None = None

    def sees(self, record: TokenRecord) -> bool:
        return (self.runner_id is None or record.runner_id == self.runner_id) and (
            self.subject_id is None or record.subject_id == self.subject_id
        )

    def may_create(self, record: TokenRecord) -> bool:
        """A new token must be the caller's own: one it sees, and for a user,
        with itself as the subject, principal included."""
        return self.sees(record) and (
            self.subject_principal is None or record.subject_principal == self.subject_principal
        )


def scope_of(caller: Caller) -> Scope | None:
    """None when the caller sees nothing at all."""
    match rule_for(caller).visibility:
        case Visibility.EVERYTHING:
            return Scope()
        case Visibility.OWN_RUNNER:
            return Scope(runner_id=caller.subject_id)
        case Visibility.OWN_SUBJECT:
            return Scope(subject_id=caller.subject_id, subject_principal=caller.principal)
        case Visibility.NOTHING:
            return None
