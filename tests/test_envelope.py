"""Envelope encryption v1: format, binding to context, tamper and key errors."""

from __future__ import annotations

import json

import pytest

from server.crypto import DecryptionError, KeyringError, LocalKeyring, Sealer, SecretContext
from server.crypto.envelope import VERSION_1
from server.crypto.keyring import generate_keyring_json

SECRET = b"gho_0123456789abcdef0123456789abcdef"
CTX = SecretContext("6f1c2f64-1b7e-4a53-9d2a-0d7c1f0b9a11", "token")


def keyring(key_id: str = "k1") -> LocalKeyring:
    return LocalKeyring.from_json(generate_keyring_json(key_id), source="test")


def test_round_trip_and_self_describing_header() -> None:
    sealer = Sealer(keyring("k1"))
    blob = sealer.seal(SECRET, CTX)
    assert blob[0] == VERSION_1
    assert blob[2 : 2 + blob[1]] == b"k1"
    assert SECRET not in blob
    assert sealer.open(blob, CTX) == SECRET


def test_fresh_data_key_and_nonce_per_seal() -> None:
    sealer = Sealer(keyring())
    a, b = sealer.seal(SECRET, CTX), sealer.seal(SECRET, CTX)
    assert a != b
    header = 2 + a[1]
    assert a[header : header + 60] != b[header : header + 60]  # wrapped DEKs differ


@pytest.mark.parametrize(
    "other",
    [
        SecretContext(CTX.token_id, "refresh_token"),
        SecretContext("00000000-0000-4000-8000-000000000000", "token"),
    ],
)
def test_other_context_does_not_open(other: SecretContext) -> None:
    sealer = Sealer(keyring())
    with pytest.raises(DecryptionError, match="copied from another row or field"):
        sealer.open(sealer.seal(SECRET, CTX), other)


def test_every_flipped_byte_is_detected() -> None:
    sealer = Sealer(keyring())
    blob = sealer.seal(SECRET, CTX)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError) as caught:
            sealer.open(bytes(tampered), CTX)
        assert CTX.token_id in str(caught.value)
        assert SECRET.decode() not in str(caught.value)


def test_truncated_and_unknown_version() -> None:
    sealer = Sealer(keyring())
    blob = sealer.seal(SECRET, CTX)
    with pytest.raises(DecryptionError, match="truncated"):
        sealer.open(blob[:40], CTX)
    with pytest.raises(DecryptionError, match="unknown format version"):
        sealer.open(b"\x02" + blob[1:], CTX)


def test_key_not_in_keyring_is_named() -> None:
    blob = Sealer(keyring("old-key")).seal(SECRET, CTX)
    with pytest.raises(DecryptionError, match="key 'old-key' is not configured"):
        Sealer(keyring("new-key")).open(blob, CTX)


def test_swapped_key_id_does_not_open() -> None:
    # Same id, other material: the wrap's tag fails.
    blob = Sealer(keyring("k1")).seal(SECRET, CTX)
    with pytest.raises(DecryptionError, match="does not unwrap"):
        Sealer(keyring("k1")).open(blob, CTX)


def test_reprs_and_errors_hold_no_key_material() -> None:
    text = generate_keyring_json("k1")
    material = json.loads(text)["keys"]["k1"]
    ring = LocalKeyring.from_json(text, source="test")
    assert material not in repr(ring)
    assert material not in repr(Sealer(ring))
    broken = text.replace('"primary": "k1"', '"primary": "k2"')
    with pytest.raises(KeyringError) as caught:
        LocalKeyring.from_json(broken, source="test")
    assert material not in str(caught.value)
    with pytest.raises(KeyringError) as caught:
        LocalKeyring.from_json(text.replace(material, material[:-4] + "!!!!"), source="test")
    assert material[:-4] not in str(caught.value)


def test_keyring_rejects_short_keys_and_bad_ids() -> None:
    with pytest.raises(KeyringError, match="32 bytes"):
        LocalKeyring({"k": b"short"}, "k")
    with pytest.raises(KeyringError, match="key id"):
        LocalKeyring({"bad id": b"x" * 32}, "bad id")
