"""PostgreSQL storage: rows in, rows out; secrets only ever as ciphertext."""

from hostauth.store.api_keys import ApiKeyRow, ApiKeyStore
from hostauth.store.audit import AuditRow, list_audit
from hostauth.store.database import close_pool, connect_pool
from hostauth.store.migrate import migrate
from hostauth.store.outage import is_outage
from hostauth.store.service_secrets import cursor_key
from hostauth.store.token_rows import Ciphertext, NewToken, Sealed, SealedSecrets
from hostauth.store.tokens import TokenStore

__all__ = [
    "ApiKeyRow",
    "ApiKeyStore",
    "AuditRow",
    "Ciphertext",
    "NewToken",
    "Sealed",
    "SealedSecrets",
    "TokenStore",
    "close_pool",
    "connect_pool",
    "cursor_key",
    "is_outage",
    "list_audit",
    "migrate",
]
