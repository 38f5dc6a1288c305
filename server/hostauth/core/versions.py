"""Tokens' versions on the wire (AIP-154): each token answer carries the
version of the token it answers with, as an etag beside the message (a
Connect response header, gRPC trailing metadata: the messages stay
Gitpod's), and Update and Delete take one back in `if-match`.

The adapter opens an `Answer` for its call; the core notes versions into it
and reads the precondition from it. No answer open (a test driving the core
directly): nothing is noted and there is no precondition.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from uuid import UUID

from hostauth.errors import FieldViolation, InvalidArgument

_ETAG = re.compile(r'"(\d{1,18})"')
MALFORMED = 'value must be an etag of this service, such as "3" (from a previous answer\'s etag)'


def etag_of(version: int) -> str:
    return f'"{version}"'


class Answer:
    """One call's precondition (`if-match`, as received) and the versions of
    the tokens its answer holds."""

    __slots__ = ("if_match", "versions")

    def __init__(self, if_match: str | None) -> None:
        self.if_match = if_match
        self.versions: list[tuple[UUID, int]] = []

    def etag(self) -> str | None:
        """The answer's etag header: the one token's version; for a page of
        several, each as `<id>="<version>"`."""
        if not self.versions:
            return None
        if len(self.versions) == 1:
            return etag_of(self.versions[0][1])
        return ", ".join(f"{token_id}={etag_of(version)}" for token_id, version in self.versions)


current: ContextVar[Answer | None] = ContextVar("answer", default=None)


def note(token_id: UUID, version: int) -> None:
    answer = current.get()
    if answer is not None:
        answer.versions.append((token_id, version))


def expected_version() -> int | None:
    """The version `if-match` names, or None when the call sent none (or `*`:
    any version of a token that exists, as without it)."""
    answer = current.get()
    if answer is None or answer.if_match is None or answer.if_match.strip() == "*":
        return None
    match = _ETAG.fullmatch(answer.if_match.strip())
    if match is None:
        raise InvalidArgument([FieldViolation("if-match", MALFORMED)])
    return int(match.group(1))
