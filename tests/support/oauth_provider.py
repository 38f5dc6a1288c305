"""A real OAuth token endpoint on loopback, over TLS with a test CA, as
strict as the git hosts (../shared/spec/oauth-refresh.md): each refresh
token works once; a spent one is `bad_refresh_token` with HTTP 200
(GitHub) or 400 `invalid_grant` (GitLab); it can also stall or rate-limit.
Every call is counted."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from tests.support.certs import make_ca, server_cert
from tests.support.sensitive import remember


@dataclass
class Provider:
    """style: github, gitlab or bitbucket (client in HTTP Basic); behaviour:
    ok, stall, rate_limit, down (HTTP 503), redirect, huge (a 1 MiB answer), or
    rotate_then_stall (takes the refresh token, then never answers)."""

    port: int = 0
    ca_file: Path = Path()
    style: str = "github"
    behaviour: str = "ok"
    delay_s: float = 0.0
    calls: int = 0
    valid: set[str] = field(default_factory=set)
    issued: list[tuple[str, str]] = field(default_factory=list)
    expires_in: int = 28800
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at each call
    last_form: dict[str, str] = field(default_factory=dict)
    last_authorization: str = ""
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def grant(self) -> str:
        """A refresh token the provider will take once."""
        token = remember(f"ghr_granted{next(self._serial)}_{id(self):x}")
        self.valid.add(token)
        return token

    def spend(self, refresh_token: str) -> None:
        """As if another client had used it."""
        self.valid.discard(refresh_token)

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, str], dict[str, object]]:
        if self.behaviour == "redirect":
            return 307, {"Location": f"{self.url}/elsewhere"}, {}
        if self.behaviour == "huge":
            return 200, {}, {"access_token": "x" * (1 << 20)}
        if self.behaviour == "rate_limit":
            return 429, {"Retry-After": "30"}, {"message": "API rate limit exceeded"}
        if self.behaviour == "down":
            return 503, {}, {}
        refresh_token = form.get("refresh_token", "")
        if form.get("grant_type") != "refresh_token" or refresh_token not in self.valid:
            if self.style == "gitlab":
                return (
                    400,
                    {},
                    {"error": "invalid_grant", "error_description": "The provided grant is invalid"},
                )
            return (
                200,
                {},
                {"error": "bad_refresh_token", "error_description": "The refresh token passed is incorrect"},
            )
        self.valid.discard(refresh_token)
        n = next(self._serial)
        access, refresh = remember(f"ghu_fresh{n}_{id(self):x}"), remember(f"ghr_fresh{n}_{id(self):x}")
        self.valid.add(refresh)
        self.issued.append((access, refresh))
        body: dict[str, object] = {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.expires_in,
            "token_type": "bearer",
        }
        return 200, {}, body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.calls += 1
            self.arrived.set()
            if self.behaviour == "stall":
                await asyncio.sleep(60)
            if self.behaviour == "rotate_then_stall":
                self._answer({k: v[-1] for k, v in parse_qs(body.decode()).items()})
                await asyncio.sleep(60)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            self.last_form, self.last_authorization = form, headers.get("authorization", "")
            status, extra, doc = self._answer(form)
            payload = json.dumps(doc).encode()
            out = [
                f"HTTP/1.1 {status} X",
                "Content-Type: application/json",
                f"Content-Length: {len(payload)}",
            ]
            out += [f"{k}: {v}" for k, v in extra.items()] + ["Connection: close", "", ""]
            writer.write("\r\n".join(out).encode() + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def running_provider(folder: Path, **options: object) -> AsyncIterator[Provider]:
    ca = make_ca("oauth test CA")
    cert, key = server_cert(ca).write(folder, "oauth")
    ca_file = folder / "oauth-ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    provider = Provider(ca_file=ca_file, **options)  # type: ignore[arg-type]
    server = await asyncio.start_server(provider._serve, "127.0.0.1", 0, ssl=context)
    provider.port = server.sockets[0].getsockname()[1]
    async with server:
        yield provider
