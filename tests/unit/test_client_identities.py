"""The identities file: parsed with errors that name the entry, reread when
it changes, kept as it was when a change does not parse; and a
certificate's identity (first URI SAN, else first DNS SAN)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives import serialization

from gitpod.v1 import identity_pb2
from hostauth.config import TlsSettings
from hostauth.tls import certificates, identities
from hostauth.tls.certificates import CertificateError, ServerCertificates
from hostauth.tls.identities import ClientIdentities, IdentitiesError, identity_of
from tests.support.certs import issue, make_ca, server_cert

SPIFFE = "spiffe://hostauth.test/ns/ci/sa/deployer"


def _write(path: Path, entries: object) -> None:
    path.write_text(json.dumps(entries))
    st = path.stat()  # a change within the clock's tick still counts: the size or inode moves too
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_identities_map_to_callers_and_follow_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identities, "CHECK_EVERY_S", 0.0)
    path = tmp_path / "identities.json"
    subject = uuid4()
    _write(
        path, {SPIFFE: {"principal": "PRINCIPAL_RUNNER", "subject": str(subject), "grants": ["secrets:read"]}}
    )
    mapping = ClientIdentities(path)
    caller = mapping.caller(SPIFFE)
    assert caller is not None
    assert (caller.principal, caller.subject_id, caller.credential_id, caller.grants) == (
        identity_pb2.PRINCIPAL_RUNNER, subject, f"x509:{SPIFFE}", frozenset({"secrets:read"})
    )  # fmt: skip
    assert mapping.caller("spiffe://hostauth.test/other") is None
    _write(path, {"runner.example.com": {"principal": "PRINCIPAL_SERVICE_ACCOUNT", "subject": str(subject)}})
    assert mapping.caller(SPIFFE) is None  # removed from the file: no longer a credential
    assert mapping.caller("runner.example.com") is not None


def test_a_change_that_does_not_parse_keeps_the_mapping_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(identities, "CHECK_EVERY_S", 0.0)
    path = tmp_path / "identities.json"
    _write(path, {SPIFFE: {"principal": "PRINCIPAL_RUNNER", "subject": str(uuid4())}})
    mapping = ClientIdentities(path)
    path.write_text('{"half written": ')
    with caplog.at_level(logging.WARNING):
        assert mapping.caller(SPIFFE) is not None
    assert "client identities not reloaded, keeping the ones in use" in caplog.text


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("[]", "must be an object"),
        ('{"a": {"principal": "ADMIN", "subject": "' + str(uuid4()) + '"}}', "'a': principal must be one of"),
        ('{"a": {"principal": "PRINCIPAL_USER", "subject": "me"}}', "'a': subject must be a UUID"),
        (
            '{"a": {"principal": "PRINCIPAL_USER", "subject": "' + str(uuid4()) + '", "grants": "x"}}',
            "grants",
        ),
        ("{", "not JSON"),
    ],
)
def test_a_bad_identities_file_stops_the_start_naming_the_entry(
    tmp_path: Path, entries: str, message: str
) -> None:
    path = tmp_path / "identities.json"
    path.write_text(entries)
    with pytest.raises(IdentitiesError, match=message) as caught:
        ClientIdentities(path)
    assert str(path) in str(caught.value)


def test_a_certificates_identity_is_its_first_uri_san_else_its_first_dns_san() -> None:
    ca = make_ca()
    der = serialization.Encoding.DER
    both = issue(ca, dns=("runner.example.com",), uris=(SPIFFE,), client=True)
    dns_only = issue(ca, dns=("runner.example.com", "other.example.com"), client=True)
    assert identity_of(both.cert.public_bytes(der)) == SPIFFE
    assert identity_of(dns_only.cert.public_bytes(der)) == "runner.example.com"
    assert identity_of(b"not a certificate") is None


def test_a_half_written_certificate_keeps_the_one_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(certificates, "CHECK_EVERY_S", 0.0)
    ca = make_ca()
    cert_file, key_file = server_cert(ca).write(tmp_path, "server")
    certs = ServerCertificates(TlsSettings(cert_file, key_file))
    in_use = certs.context()
    other = server_cert(ca)
    cert_file.write_bytes(other.cert_pem)  # its key not yet written: the pair does not match
    with caplog.at_level(logging.WARNING):
        assert certs.context() is in_use
    assert "cannot be used yet" in caplog.text
    assert other.key_pem.decode() not in caplog.text
    key_file.write_bytes(other.key_pem)
    assert certs.context() is not in_use  # the complete pair is taken


def test_unusable_certificate_files_stop_the_start_with_their_reason(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"server\.pem: No such file"):
        ServerCertificates(TlsSettings(tmp_path / "server.pem", tmp_path / "server.key"))
    ca = make_ca()
    cert_file, _ = server_cert(ca).write(tmp_path, "a")
    _, key_file = server_cert(ca).write(tmp_path, "b")
    with pytest.raises(CertificateError, match="not usable") as caught:
        ServerCertificates(TlsSettings(cert_file, key_file))
    assert "PRIVATE KEY" not in str(caught.value)
