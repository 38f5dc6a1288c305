"""Envelope encryption of secrets: the narrow door between core and keys.

`Sealer.seal(plaintext, context)` returns a self-describing ciphertext and
`Sealer.open(ciphertext, context)` returns the plaintext; the context names
the row and field the secret belongs to, so a ciphertext moved anywhere else
fails to open.
"""

from server.crypto.envelope import DecryptionError, Sealer, SecretContext, key_id_of
from server.crypto.keyring import KeyProvider, KeyringError, Keys, LocalKeyring, UnwrapError

__all__ = [
    "DecryptionError",
    "KeyProvider",
    "KeyringError",
    "Keys",
    "LocalKeyring",
    "Sealer",
    "SecretContext",
    "UnwrapError",
    "key_id_of",
]
