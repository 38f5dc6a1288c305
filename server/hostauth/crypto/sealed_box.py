"""Sealed boxes to a runner's key: libsodium's crypto_box_seal, through PyNaCl.

A runner signs up with an X25519 public key in PKIX DER (a
SubjectPublicKeyInfo, as Gitpod's runners send it); what it reads comes back
as an anonymous sealed box (an ephemeral key pair per message, 48 bytes
longer than the plaintext) that only its private key opens.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox

X25519_OID = "1.3.101.110"
SEAL_OVERHEAD = 48


class BadRunnerKey(ValueError):
    """The bytes are not a usable X25519 public key; the message says why."""


def raw_x25519_key(der: bytes) -> bytes:
    """The 32 raw bytes of an X25519 public key given in PKIX DER."""
    if not der:
        raise BadRunnerKey("value is required")
    try:
        key = load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise BadRunnerKey(
            f"must be an X25519 public key (OID {X25519_OID}) in PKIX, ASN.1 DER format"
        ) from None
    if not isinstance(key, X25519PublicKey):
        raise BadRunnerKey(f"must be an X25519 public key (OID {X25519_OID}), not {_kind(key)}")
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        # A low-order point (the all-zero key, say) gives no shared secret:
        # libsodium refuses to seal to it, so it is refused here, at sign-up.
        SealedBox(PublicKey(raw)).encrypt(b"\0")
    except CryptoError:
        raise BadRunnerKey("is not a usable X25519 public key (a low-order point)") from None
    return raw


def der_of(raw: bytes) -> bytes:
    """An X25519 public key's raw bytes in PKIX DER."""
    return X25519PublicKey.from_public_bytes(raw).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )


def seal(raw_key: bytes, plaintext: bytes) -> bytes:
    """An anonymous sealed box of plaintext to the raw X25519 key."""
    return bytes(SealedBox(PublicKey(raw_key)).encrypt(plaintext))


def _kind(key: object) -> str:
    name = type(key).__name__.removeprefix("_")
    return {
        "RSAPublicKey": "an RSA key",
        "ECPublicKey": "an elliptic-curve (ECDSA/ECDH) key",
        "Ed25519PublicKey": "an Ed25519 key",
        "Ed448PublicKey": "an Ed448 key",
        "X448PublicKey": "an X448 key",
        "DSAPublicKey": "a DSA key",
    }.get(name, "another kind of key")
