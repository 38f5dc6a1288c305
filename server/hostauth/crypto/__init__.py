"""Envelope encryption of secrets: the narrow door between core and keys.

`Sealer.seal(plaintext, context)` returns a self-describing ciphertext and
`Sealer.open(ciphertext, context)` returns the plaintext; the context names
the row and field the secret belongs to, so a ciphertext moved anywhere else
fails to open.
"""

from hostauth.crypto.context import SecretContext
from hostauth.crypto.envelope import DecryptionError, Sealer, key_id_of
from hostauth.crypto.keyring import KeyProvider, KeyProviders, KeyringError, LocalKeyring, UnwrapError

__all__ = [
    "DecryptionError",
    "KeyProvider",
    "KeyProviders",
    "KeyringError",
    "LocalKeyring",
    "Sealer",
    "SecretContext",
    "UnwrapError",
    "key_id_of",
]
