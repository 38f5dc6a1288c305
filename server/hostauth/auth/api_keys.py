"""API keys: `hak_` + 43 characters of base64url (256 random bits).

Only a SHA-256 of a key is stored. The key is random and long, so a slow
password hash would buy nothing; the prefix lets secret scanners and people
recognise a leaked key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from hostauth.config import API_KEY_PREFIX as PREFIX


def new_api_key() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(PREFIX)
