"""Outbound requests to a provider's token endpoint, guarded: https only,
no redirects, every address the host resolves to checked (no loopback,
link-local such as cloud metadata, private, reserved or multicast address
unless HOSTAUTH_OAUTH_ALLOWED_NETWORKS allows it), the connection made to
the address checked (so a second resolution cannot swap it), the answer's
size bounded. Nothing here puts a secret in an exception or a log."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

MAX_ANSWER_BYTES = 64 << 10

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """The request was not sent: the URL or its addresses are not allowed."""


class ProviderUnreachable(Exception):
    """Sent, or tried, without a usable answer: unreachable, too slow, too large."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Mapping[str, object]


def _forbidden(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


class Outbound:
    """One process's client for token endpoints."""

    __slots__ = ("_allowed", "_client", "_timeout_s")

    def __init__(
        self, *, allowed: Sequence[Network] = (), ca_file: str | None = None, timeout_s: float = 5.0
    ) -> None:
        self._allowed = tuple(allowed)
        self._timeout_s = timeout_s
        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._client = httpx.AsyncClient(
            verify=context, follow_redirects=False, trust_env=False, timeout=timeout_s
        )

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def _allowed_address(self, address: Address) -> bool:
        return not _forbidden(address) or any(address in network for network in self._allowed)

    async def vetted_address(self, host: str, port: int) -> str:
        """An address of host, when every address it has is allowed."""
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ProviderUnreachable(
                    f"{host} does not resolve ({exc.strerror or type(exc).__name__})"
                ) from None
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        for address in addresses:
            if not self._allowed_address(address):
                raise OutboundRefused(
                    f"{host} resolves to {address}, an address the service does not call (loopback,"
                    " link-local, private or reserved; HOSTAUTH_OAUTH_ALLOWED_NETWORKS allows some)"
                )
        return str(addresses[0])

    async def post_form(
        self, url: str, form: Mapping[str, str], *, basic: tuple[str, str] | None = None
    ) -> Reply:
        """POST the form; the JSON answer (any status), or ProviderUnreachable."""
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise OutboundRefused(f"the token endpoint must be an https URL, not {parts.scheme or 'none'}://")
        host, port = parts.hostname, parts.port or 443
        address = await self.vetted_address(host, port)
        netloc = f"[{address}]" if ":" in address else address
        pinned = urlunsplit(("https", f"{netloc}:{port}", parts.path or "/", parts.query, ""))
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "application/json"}
        if basic is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
        request = self._client.build_request(
            "POST",
            pinned,
            data=dict(form),
            headers=headers,
            # TLS checks the certificate for the name, not the address.
            extensions={"sni_hostname": host},
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise ProviderUnreachable(f"{host} answered more than {MAX_ANSWER_BYTES} bytes")
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ProviderUnreachable(f"{host} did not answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ProviderUnreachable(f"{host} could not be reached ({type(exc).__name__})") from None
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        return Reply(response.status_code, dict(response.headers), doc if isinstance(doc, dict) else {})

    async def close(self) -> None:
        await self._client.aclose()


def parse_networks(text: str) -> tuple[Network, ...]:
    """HOSTAUTH_OAUTH_ALLOWED_NETWORKS: CIDRs separated by commas."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
