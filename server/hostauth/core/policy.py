"""Who may do what: the one policy table, read by the core and by the tests.

Host authentication tokens (GetValue: the plaintext read of
RunnerConfigurationService; sealed: RunnerInteractionService's):

| principal       | Create                       | Get/List/Update/Delete | GetValue        | sealed         |
| USER            | only with itself as subject  | its own tokens         | denied          | denied         |
| RUNNER          | any subject, runner = itself | tokens of its runner   | denied (sealed) | its runner's   |
| SERVICE_ACCOUNT | all                          | all                    | `secrets:read`  | `secrets:read` |
| any other       | denied                       | denied                 | denied          | denied         |

SCM integrations and sign-up:

| principal       | Get / List          | Create / Update / Delete | Signup       |
| USER            | every integration   | denied                   | denied       |
| RUNNER          | its runner's        | its runner's             | for itself   |
| SERVICE_ACCOUNT | every integration   | every integration        | denied       |
| any other       | denied              | denied                   | denied       |

A token or integration the caller may not see is answered not_found, like a
missing one; an action the caller may not take on one it sees is
permission_denied. An integration's client secret never leaves in clear:
whoever may read an integration gets it sealed to the integration's runner.
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
    SEALED_READ = "RunnerInteractionService/GetHostAuthenticationTokenValue"
    CREATE_INTEGRATION = "CreateSCMIntegration"
    GET_INTEGRATION = "GetSCMIntegration"
    LIST_INTEGRATIONS = "ListSCMIntegrations"
    UPDATE_INTEGRATION = "UpdateSCMIntegration"
    DELETE_INTEGRATION = "DeleteSCMIntegration"
    SIGNUP = "RunnerInteractionService/Signup"
    # The service's own write, made during a secret read (in no rule's actions).
    REFRESH = "RefreshHostAuthenticationToken"


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


TOKEN_ACTIONS = frozenset({Action.CREATE, Action.GET, Action.LIST, Action.UPDATE, Action.DELETE})
READ_INTEGRATIONS = frozenset({Action.GET_INTEGRATION, Action.LIST_INTEGRATIONS})
MANAGE_INTEGRATIONS = READ_INTEGRATIONS | {
    Action.CREATE_INTEGRATION,
    Action.UPDATE_INTEGRATION,
    Action.DELETE_INTEGRATION,
}

POLICY: Mapping[int, Rule] = {
    identity_pb2.PRINCIPAL_USER: Rule(Visibility.OWN_SUBJECT, TOKEN_ACTIONS | READ_INTEGRATIONS),
    identity_pb2.PRINCIPAL_RUNNER: Rule(
        Visibility.OWN_RUNNER, TOKEN_ACTIONS | MANAGE_INTEGRATIONS | {Action.SEALED_READ, Action.SIGNUP}
    ),
    identity_pb2.PRINCIPAL_SERVICE_ACCOUNT: Rule(
        Visibility.EVERYTHING,
        TOKEN_ACTIONS | MANAGE_INTEGRATIONS | {Action.GET_VALUE, Action.SEALED_READ},
        {Action.GET_VALUE: READ_SECRETS, Action.SEALED_READ: READ_SECRETS},
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


def integration_scope(caller: Caller) -> UUID | None:
    """The runner whose integrations the caller sees (None: every runner's);
    callers who see none are refused by `may` before this is asked."""
    if rule_for(caller).visibility is Visibility.OWN_RUNNER:
        return caller.subject_id
    return None


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
