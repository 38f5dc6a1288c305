"""PostgreSQL storage: rows in, rows out; secrets only ever as ciphertext."""

from server.store.api_keys import ApiKeyRow, ApiKeyStore
from server.store.audit import AuditEvent, AuditRow, list_audit
from server.store.database import close_pool, connect_pool
from server.store.migrate import migrate
from server.store.outage import is_outage
from server.store.service_secrets import cursor_key
from server.store.token_rows import (
    KEEP,
    Ciphertext,
    Keep,
    ListQuery,
    NewToken,
    Position,
    Sealed,
    SealedSecrets,
    SecretRead,
    TokenChanges,
    TokenRecord,
)
from server.store.tokens import TokenStore

__all__ = [
    "KEEP",
    "ApiKeyRow",
    "ApiKeyStore",
    "AuditEvent",
    "AuditRow",
    "Ciphertext",
    "Keep",
    "ListQuery",
    "NewToken",
    "Position",
    "Sealed",
    "SealedSecrets",
    "SecretRead",
    "TokenChanges",
    "TokenRecord",
    "TokenStore",
    "close_pool",
    "connect_pool",
    "cursor_key",
    "is_outage",
    "list_audit",
    "migrate",
]
