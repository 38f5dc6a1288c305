"""What the service says of its own health, the same on both ports.

`/healthz` (the process serves) and `/readyz` (the database answers within
its timeout, the keys are loaded and checked, the service is not draining)
on the HTTP port, for GET and HEAD, without a credential; gRPC health says
the same readiness, for the whole server and per service. A prober asks the
database once a second through the pool the calls use, so a pool held up
(every connection busy past the timeout) counts as the database not
answering, as it does for the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})

# One database round trip; raises when the database does not answer.
Probe = Callable[[], Awaitable[object]]

PROBE_EVERY_S = 1.0


class Readiness:
    """The last probe's word, and what the calls know of themselves.

    `keys` says whether the keys are loaded and checked against the
    registry (the service core is built); `draining` whether a stop has
    begun. Both are read when asked; the database's answer is the last
    probe's."""

    __slots__ = ("_database", "_draining", "_keys", "_probe", "_timeout_s")

    def __init__(
        self,
        keys: Callable[[], bool],
        draining: Callable[[], bool],
        probe: Callable[[], Probe | None],
        timeout_s: float,
    ) -> None:
        self._keys, self._draining, self._probe = keys, draining, probe
        self._timeout_s = timeout_s
        self._database = False

    def checks(self) -> dict[str, str]:
        """Each check: "ok", or what is wrong."""
        return {
            "database": "ok" if self._database else "unavailable",
            "keys": "ok" if self._keys() else "not loaded",
            "drain": "draining" if self._draining() else "ok",
        }

    @property
    def database_ok(self) -> bool:
        """The last probe was answered in time."""
        return self._database

    @property
    def ready(self) -> bool:
        return self._database and self._keys() and not self._draining()

    async def probe_once(self) -> None:
        probe = self._probe()
        if probe is None:
            self._database = False
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await probe()
        except Exception:  # noqa: BLE001 # any failure: not answering, the calls classify it
            self._database = False
        else:
            self._database = True

    async def watch(self, publish: Callable[[bool], Awaitable[None]], every_s: float = PROBE_EVERY_S) -> None:
        """Probe for ever, publishing readiness (gRPC health) each time it changes."""
        said: bool | None = None
        while True:
            if not self._draining():
                await self.probe_once()
            ready = self.ready
            if ready != said:
                await publish(ready)
                if said is not None:
                    failed = [f"{name} {state}" for name, state in self.checks().items() if state != "ok"]
                    if failed:
                        log.info("not ready: %s", ", ".join(failed))
                    else:
                        log.info("ready")
                said = ready
            await asyncio.sleep(every_s)


async def watching(readiness: Readiness, publish: Callable[[bool], Awaitable[None]]) -> asyncio.Task[None]:
    """The readiness watch started, after a first probe has been published."""
    await readiness.probe_once()
    await publish(readiness.ready)
    return asyncio.create_task(readiness.watch(publish))


async def stop_watching(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _body(path: str, readiness: Readiness) -> tuple[int, bytes]:
    if path == "/healthz":
        return 200, b'{"status":"serving"}'
    checks = readiness.checks()
    failed = [name for name, state in checks.items() if state != "ok"]
    body: dict[str, object] = {"ready": not failed, "checks": checks}
    if failed:
        body["failed"] = failed
    return (503 if failed else 200), json.dumps(body, separators=(",", ":")).encode()


async def answer_health(readiness: Readiness, scope: Any, send: Any) -> None:
    """The ASGI answer to /healthz or /readyz."""
    if scope["method"] not in ("GET", "HEAD"):
        status, body = 405, b'{"error":"GET or HEAD"}'
        extra = [(b"allow", b"GET, HEAD")]
    else:
        (status, body), extra = _body(scope["path"], readiness), []
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
