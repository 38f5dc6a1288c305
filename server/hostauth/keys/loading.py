"""Which keyring the service uses, including the development one."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

from hostauth.config import ConfigError, Settings
from hostauth.crypto import KeyProvider, KeyProviders, KeyringError, LocalKeyring
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.crypto.kms import KmsKeyProvider

log = logging.getLogger(__name__)

DEV_KEYRING_NAME = "dev-keyring.json"

_DEV_WARNING = """
######################################################################
#  WARNING: generated a DEVELOPMENT keyring at {path}
#  It is for development only: the key sits unprotected on disk next
#  to the data it protects. Never use it for real credentials.
######################################################################
"""


def load_keyring(settings: Settings) -> LocalKeyring | None:
    """The local keyring: configured, or (--dev) the development one; None
    when there is none and KMS is configured instead."""
    try:
        if settings.keyring_json is not None:
            return LocalKeyring.from_json(settings.keyring_json, source="HOSTAUTH_KEYRING")
        if settings.keyring_file is not None:
            return LocalKeyring.from_file(settings.keyring_file)
    except (KeyringError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    if not settings.dev:
        if settings.kms_key_id is not None:
            return None
        raise ConfigError("no keys: set HOSTAUTH_KEYRING_FILE, HOSTAUTH_KEYRING or HOSTAUTH_KMS_KEY_ID")
    path = settings.data_dir / DEV_KEYRING_NAME
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        key_id = "dev-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        # Created 0600 from the start: the key must not be readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(generate_keyring_json(key_id))
        print(_DEV_WARNING.format(path=path), file=sys.stderr, flush=True)
    else:
        log.warning("using the DEVELOPMENT keyring %s: for development only", path)
    try:
        return LocalKeyring.from_file(path)
    except (KeyringError, OSError) as exc:
        raise ConfigError(str(exc)) from None


def load_keys(settings: Settings) -> KeyProviders:
    """Every configured key provider. New data goes under the KMS key when one
    is configured (until the database names another primary)."""
    local = load_keyring(settings)
    providers: list[KeyProvider] = [local] if local is not None else []
    if settings.kms_key_id is None:
        assert local is not None
        return KeyProviders(providers, local.primary_id)
    import boto3

    client = boto3.client("kms", endpoint_url=settings.kms_endpoint_url)
    kms = KmsKeyProvider(
        settings.kms_key_id, client, cache_size=settings.kms_cache_size, cache_ttl_s=settings.kms_cache_ttl_s
    )
    return KeyProviders([*providers, kms], kms.key_id)
