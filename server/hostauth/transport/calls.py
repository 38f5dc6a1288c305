"""The step every call takes on every wire, written once: its request id,
the caller's credential checked, the core method run, and any failure
classified into one core error code (status.py) for the adapter to put in
its wire's terms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from hostauth.auth.authenticator import Authenticator
from hostauth.auth.caller import Call
from hostauth.errors import ErrorCode
from hostauth.transport.status import classify

Req = TypeVar("Req")
Res = TypeVar("Res")

CoreMethod = Callable[[Req, Call], Awaitable[Res]]


class Refused(Exception):
    """The call's answer is an error: a core code and the caller's message."""

    __slots__ = ("code", "message")

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Undecodable:
    """A request whose bytes do not parse: invalid_argument, before the
    credential is looked at (as connectrpc answers it on Connect)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


async def answer(
    auth: Authenticator,
    name: str,
    authorization: Sequence[str],
    request_id: str,
    method: CoreMethod[Req, Res],
    request: Req | Undecodable,
) -> Res:
    """The core's answer to one call of method `name`, or Refused."""
    if isinstance(request, Undecodable):
        raise Refused(ErrorCode.INVALID_ARGUMENT, request.reason)
    try:
        call = await auth.authenticate(authorization, request_id, name)
        return await method(request, call)
    except Exception as exc:  # noqa: BLE001 # every failure becomes a status
        code, message = classify(name, exc)
    raise Refused(code, message)
