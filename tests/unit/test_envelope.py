"""Envelope encryption v1: format, binding to context, tamper, keys and rewrap."""

from __future__ import annotations

import json
import struct

import pytest

from hostauth.crypto import (
    DecryptionError,
    KeyProviders,
    KeyringError,
    LocalKeyring,
    Sealer,
    SecretContext,
    key_id_of,
)
from hostauth.crypto.envelope import VERSION_1
from hostauth.crypto.keyring import generate_keyring_json

SECRET = b"gho_0123456789abcdef0123456789abcdef"
CTX = SecretContext("6f1c2f64-1b7e-4a53-9d2a-0d7c1f0b9a11", "token")


def keyring(*key_ids: str, primary: str | None = None) -> LocalKeyring:
    keys = {}
    for key_id in key_ids or ("k1",):
        keys.update(json.loads(generate_keyring_json(key_id))["keys"])
    doc = {"primary": primary or next(iter(keys)), "keys": keys}
    return LocalKeyring.from_json(json.dumps(doc), source="test")


def sealer(*key_ids: str, primary: str | None = None) -> Sealer:
    return Sealer(KeyProviders.local(keyring(*key_ids, primary=primary)))


def layout(blob: bytes) -> tuple[str, bytes, bytes]:
    """(key id, wrapped data key, nonce + ciphertext)"""
    header = 2 + blob[1]
    (wrapped_len,) = struct.unpack_from(">H", blob, header)
    start = header + 2
    return blob[2:header].decode(), blob[start : start + wrapped_len], blob[start + wrapped_len :]


async def test_round_trip_and_self_describing_header() -> None:
    s = sealer("k1")
    blob = await s.seal(SECRET, CTX)
    assert blob[0] == VERSION_1
    assert key_id_of(blob) == "k1"
    assert layout(blob)[0] == "k1"
    assert SECRET not in blob
    assert await s.open(blob, CTX) == SECRET


async def test_seal_keyed_names_the_key_it_sealed_under() -> None:
    s = sealer("k1", "k2", primary="k1")
    blob, key_id = await s.seal_keyed(SECRET, CTX)
    assert key_id == key_id_of(blob) == "k1"
    s.set_primary("k2")
    blob, key_id = await s.seal_keyed(SECRET, CTX)
    assert key_id == key_id_of(blob) == "k2"
    assert await s.open(blob, CTX) == SECRET


async def test_fresh_data_key_and_nonce_per_seal() -> None:
    s = sealer()
    a, b = await s.seal(SECRET, CTX), await s.seal(SECRET, CTX)
    assert layout(a)[1] != layout(b)[1]  # wrapped data keys differ
    assert layout(a)[2][:12] != layout(b)[2][:12]  # nonces differ


@pytest.mark.parametrize(
    "other",
    [
        SecretContext(CTX.token_id, "refresh_token"),
        SecretContext("00000000-0000-4000-8000-000000000000", "token"),
    ],
)
async def test_other_context_does_not_open(other: SecretContext) -> None:
    s = sealer()
    with pytest.raises(DecryptionError, match="does not open"):
        await s.open(await s.seal(SECRET, CTX), other)


async def test_every_flipped_byte_is_detected() -> None:
    s = sealer()
    blob = await s.seal(SECRET, CTX)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError) as caught:
            await s.open(bytes(tampered), CTX)
        assert CTX.token_id in str(caught.value)
        assert SECRET.decode() not in str(caught.value)


async def test_truncated_and_unknown_version() -> None:
    s = sealer()
    blob = await s.seal(SECRET, CTX)
    with pytest.raises(DecryptionError, match="truncated"):
        await s.open(blob[:40], CTX)
    with pytest.raises(DecryptionError, match="unknown format version"):
        await s.open(b"\x02" + blob[1:], CTX)


async def test_key_not_in_keyring_is_named() -> None:
    blob = await sealer("old-key").seal(SECRET, CTX)
    with pytest.raises(DecryptionError, match="key 'old-key' is not configured"):
        await sealer("new-key").open(blob, CTX)


async def test_same_id_other_material_does_not_open() -> None:
    blob = await sealer("k1").seal(SECRET, CTX)
    with pytest.raises(DecryptionError, match="does not unwrap"):
        await sealer("k1").open(blob, CTX)


async def test_rewrap_changes_only_the_wrapped_data_key() -> None:
    ring = keyring("k1", "k2", primary="k1")
    s = Sealer(KeyProviders.local(ring))
    blob = await s.seal(SECRET, CTX)
    s.set_primary("k2")
    moved = await s.rewrap(blob, CTX)
    assert key_id_of(moved) == "k2"
    assert layout(moved)[2] == layout(blob)[2]  # nonce and ciphertext untouched
    assert layout(moved)[1] != layout(blob)[1]
    assert await s.open(moved, CTX) == SECRET
    assert await s.rewrap(moved, CTX) == moved  # already under the primary
    with pytest.raises(DecryptionError):
        await s.rewrap(blob, SecretContext(CTX.token_id, "refresh_token"))  # the context still binds


async def test_check_values() -> None:
    keys = KeyProviders.local(keyring("k1"))
    check = await keys.make_check("k1")
    assert await keys.verify_check("k1", check)
    assert not await KeyProviders.local(keyring("k1")).verify_check("k1", check)  # other material, same id


async def test_reprs_and_errors_hold_no_key_material() -> None:
    text = generate_keyring_json("k1")
    material = json.loads(text)["keys"]["k1"]
    ring = LocalKeyring.from_json(text, source="test")
    assert material not in repr(ring)
    assert material not in repr(Sealer(KeyProviders.local(ring)))
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
    with pytest.raises(KeyringError, match="key id"):  # `$` alone would let the newline in
        LocalKeyring({"k1\n": b"x" * 32}, "k1\n")
