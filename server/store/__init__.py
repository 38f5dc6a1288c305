"""PostgreSQL storage: rows in, rows out; secrets only ever as ciphertext."""

from server.store.database import connect_pool
from server.store.migrate import migrate
from server.store.tokens import Ciphertext, SealedSecrets, TokenRecord, TokenStore

__all__ = ["Ciphertext", "SealedSecrets", "TokenRecord", "TokenStore", "connect_pool", "migrate"]
