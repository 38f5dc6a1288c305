"""The development API key of `make run`: a service account that may read secrets."""

from __future__ import annotations

import os
import sys
from uuid import uuid4

from gitpod.v1 import identity_pb2
from hostauth.auth.api_keys import hash_api_key, new_api_key
from hostauth.config import Settings
from hostauth.core.policy import READ_SECRETS
from hostauth.store import ApiKeyStore

DEV_API_KEY_FILE = "dev-api-key"

_BANNER = """
######################################################################
#  DEVELOPMENT API key (service account, may read secrets):
#
#    {key}
#
#  Saved in {path}. For development only. Use it as
#    export HOSTAUTH_DEV_API_KEY=$(cat {path})
######################################################################
"""


async def ensure_dev_api_key(settings: Settings, api_keys: ApiKeyStore) -> None:
    """HOSTAUTH_DEV_API_KEY when set, else the key saved on an earlier start,
    else a new one (printed once); registered in the database either way."""
    path = settings.data_dir / DEV_API_KEY_FILE
    key, announce = settings.dev_api_key, False
    if key is None and path.exists():
        key = path.read_text().strip()
    if key is None:
        key, announce = new_api_key(), True
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
    await api_keys.create(
        hash_api_key(key),
        identity_pb2.PRINCIPAL_SERVICE_ACCOUNT,
        uuid4(),
        (READ_SECRETS,),
        "development key of make run",
    )
    if announce:
        print(_BANNER.format(key=key, path=path), file=sys.stderr, flush=True)
