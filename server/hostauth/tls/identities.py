"""Client certificates as credentials: a certificate's identity (its first
URI SAN, such as a SPIFFE id, else its first DNS SAN) and the principals
they stand for, from a small JSON file the service reads at start and again
when it changes:

    {
      "spiffe://example.org/ns/ci/sa/deployer": {
        "principal": "PRINCIPAL_SERVICE_ACCOUNT",
        "subject": "0b6f6ad4-5e1c-4c44-9d6e-6f0cbf1c2f41",
        "grants": ["secrets:read"]
      }
    }

A mapped identity is a caller like an API key's: the same policy table,
audited as `x509:<identity>`. The chain and expiry are checked in the TLS
handshake against the client CA; an identity not in the file is refused.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path

from cryptography import x509

from gitpod.v1 import identity_pb2
from hostauth.auth.caller import Caller
from hostauth.config import ConfigError, Settings

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0


class IdentitiesError(ConfigError):
    """The identities file cannot be used; the message names what is wrong."""


def _identity(cert: x509.Certificate) -> str | None:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    dns = names.get_values_for_type(x509.DNSName)
    found = uris or dns
    return found[0] if found else None


def identity_of(der: bytes) -> str | None:
    """The certificate's identity: its first URI SAN, else its first DNS SAN."""
    try:
        return _identity(x509.load_der_x509_certificate(der))
    except ValueError:
        return None


def identity_of_pem(pem: bytes) -> str | None:
    try:
        return _identity(x509.load_pem_x509_certificate(pem))
    except ValueError:
        return None


def _parse(text: str, path: Path) -> dict[str, Caller]:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IdentitiesError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(entries, dict):
        raise IdentitiesError(f"{path}: must be an object of identity: {{principal, subject, grants}}")
    callers = {}
    for identity, entry in entries.items():
        where = f"{path}: {identity!r}"
        if not isinstance(entry, dict):
            raise IdentitiesError(f"{where} must map to an object")
        name = entry.get("principal")
        if (
            not isinstance(name, str)
            or name not in identity_pb2.Principal.keys()  # noqa: SIM118 # an enum wrapper, not a dict
            or name == "PRINCIPAL_UNSPECIFIED"
        ):
            raise IdentitiesError(f"{where}: principal must be one of PRINCIPAL_USER, PRINCIPAL_RUNNER, ...")
        try:
            subject = uuid.UUID(str(entry.get("subject")))
        except ValueError:
            raise IdentitiesError(f"{where}: subject must be a UUID") from None
        grants = entry.get("grants", [])
        if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
            raise IdentitiesError(f"{where}: grants must be a list of strings")
        callers[identity] = Caller(
            identity_pb2.Principal.Value(name), subject, f"x509:{identity}", frozenset(grants)
        )
    return callers


def client_identities(settings: Settings) -> ClientIdentities | None:
    """The identities file's mapping when client certificates are on."""
    tls = settings.tls
    if tls is None or tls.client_certs == "off" or tls.client_identities_file is None:
        return None
    return ClientIdentities(tls.client_identities_file)


class ClientIdentities:
    """The identities file, kept current: a change is looked for at most once
    a second; a file that no longer parses keeps the mapping in use, with a
    warning, until it does."""

    __slots__ = ("_callers", "_checked", "_lock", "_path", "_stamp")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._callers = _parse(self._read(), path)  # a start with a bad file stops here
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise IdentitiesError(f"{self._path}: {exc.strerror}") from None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _read(self) -> str:
        try:
            return self._path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise IdentitiesError(f"{self._path}: {exc}") from None

    def caller(self, identity: str) -> Caller | None:
        """Whom the identity stands for; None when it is not in the file."""
        self._refresh()
        return self._callers.get(identity)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY_S:
            return
        with self._lock:
            self._checked = now
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._callers = _parse(self._read(), self._path)
                    self._stamp = stamp
                    log.info("client identities reloaded from %s: %d", self._path, len(self._callers))
            except IdentitiesError as exc:
                log.warning("client identities not reloaded, keeping the ones in use: %s", exc)
