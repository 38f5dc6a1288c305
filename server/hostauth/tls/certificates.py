"""The server's certificate and key, and the client CA, read from their
files and read again when any of them changes on disk (cert-manager swaps a
Secret's files in place): new connections get the new certificate, open
ones keep theirs, nothing restarts.

A change is looked for at most once a second, when a connection arrives. A
file caught half-written (a certificate that does not match its key) is
skipped with a warning and the certificate in use stays until a complete
pair is there.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass

import grpc

from hostauth.config import ConfigError, TlsSettings

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0


class CertificateError(ConfigError):
    """The certificate, its key or the client CA cannot be used."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[tuple[int, int, int], ...]  # (inode, size, mtime_ns) of each file
    context: ssl.SSLContext
    grpc_config: grpc.ServerCertificateConfiguration


class ServerCertificates:
    """The certificate in use for each port, kept current with the files."""

    __slots__ = ("_checked", "_files", "_grpc_handed", "_loaded", "_lock", "settings")

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._files = tuple(f for f in (settings.cert_file, settings.key_file, settings.client_ca_file) if f)
        self._lock = threading.Lock()  # gRPC asks from its own threads
        self._loaded = self._load()  # a start with unusable files stops here
        self._grpc_handed = self._loaded
        self._checked = time.monotonic()

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stats = [os.stat(f) for f in self._files]  # follows symlinks, as cert-manager's are
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _load(self) -> _Loaded:
        s = self.settings
        try:
            stamp = self._stamp()
            chain, key = s.cert_file.read_bytes(), s.key_file.read_bytes()
            ca = s.client_ca_file.read_bytes() if s.client_ca_file else None
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.set_alpn_protocols(["h2", "http/1.1"])
            context.load_cert_chain(s.cert_file, s.key_file)
            if ca is not None and s.client_certs != "off":
                context.load_verify_locations(cadata=ca.decode("ascii"))
                context.verify_mode = ssl.CERT_REQUIRED if s.client_certs == "require" else ssl.CERT_OPTIONAL
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise CertificateError(_reason(exc)) from None
        config = grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)
        return _Loaded(stamp, context, config)

    def _current(self) -> _Loaded:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY_S:
            return self._loaded
        with self._lock:
            if now - self._checked < CHECK_EVERY_S:
                return self._loaded
            self._checked = now
            try:
                if self._stamp() != self._loaded.stamp:
                    self._loaded = self._load()
                    log.info("TLS certificate reloaded from %s", self.settings.cert_file)
            except (OSError, CertificateError) as exc:
                log.warning(
                    "TLS certificate files changed but cannot be used yet (%s); keeping the one in use", exc
                )
            return self._loaded

    def context(self) -> ssl.SSLContext:
        """The SSL context for the next connection to the HTTP port."""
        return self._current().context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """gRPC's credentials, asking for the current certificate at each new connection."""
        return grpc.dynamic_ssl_server_credentials(
            self._loaded.grpc_config,
            self._grpc_fetch,  # type: ignore[arg-type] # None means unchanged (grpc's docstring)
            require_client_authentication=self.settings.client_certs == "require",
        )

    def _grpc_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        loaded = self._current()
        if loaded is self._grpc_handed:
            return None  # unchanged
        self._grpc_handed = loaded
        return loaded.grpc_config


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, ssl.SSLError):
        return f"the certificate, its key or the client CA is not usable ({exc.reason or exc})"
    return str(exc)
