"""Which keyring the service uses, including the development one."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

from server.config import ConfigError, Settings
from server.crypto import KeyringError, Keys, LocalKeyring
from server.crypto.keyring import generate_keyring_json

log = logging.getLogger(__name__)

DEV_KEYRING_NAME = "dev-keyring.json"

_DEV_WARNING = """
######################################################################
#  WARNING: generated a DEVELOPMENT keyring at {path}
#  It is for development only: the key sits unprotected on disk next
#  to the data it protects. Never use it for real credentials.
######################################################################
"""


def load_keyring(settings: Settings) -> LocalKeyring:
    try:
        if settings.keyring_json is not None:
            return LocalKeyring.from_json(settings.keyring_json, source="HOSTAUTH_KEYRING")
        if settings.keyring_file is not None:
            return LocalKeyring.from_file(settings.keyring_file)
    except (KeyringError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    if not settings.dev:
        raise ConfigError("no keyring: set HOSTAUTH_KEYRING_FILE or HOSTAUTH_KEYRING")
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
    return LocalKeyring.from_file(path)


def load_keys(settings: Settings) -> Keys:
    """Every configured key provider."""
    return Keys.local(load_keyring(settings))
