"""Settings from the environment: switches, counts, the dev API key and keyring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostauth.auth.api_keys import new_api_key
from hostauth.config import ConfigError, Settings
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.keys.loading import DEV_KEYRING_NAME
from tests.support.processes import ROOT

BASE = {"DATABASE_URL": "postgresql://localhost/x"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("on", True), ("1", True), ("off", False), ("0", False), ("False", False)],
)
def test_pin_workers_switch(value: str | None, expected: bool) -> None:
    env = BASE if value is None else {**BASE, "HOSTAUTH_PIN_WORKERS": value}
    assert Settings.from_env(env).pin_workers is expected


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("on", True), ("off", False)])
def test_batch_scheduling_switch(value: str | None, expected: bool) -> None:
    env = BASE if value is None else {**BASE, "HOSTAUTH_BATCH_SCHEDULING": value}
    assert Settings.from_env(env).batch_scheduling is expected


def test_a_bad_pin_workers_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="HOSTAUTH_PIN_WORKERS"):
        Settings.from_env({**BASE, "HOSTAUTH_PIN_WORKERS": "sometimes"})


@pytest.mark.parametrize("name", ["HOSTAUTH_WORKERS", "HOSTAUTH_DB_POOL_SIZE", "HOSTAUTH_KMS_CACHE_SIZE"])
def test_counts_are_whole_numbers_above_zero(name: str) -> None:
    for bad in ("abc", "2.5", "0", "-1"):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE, name: bad})
        assert caught.value.args[0] == f"{name} must be a whole number above 0, got {bad!r}"
    settings = Settings.from_env({**BASE, name: "3"})
    field = {"HOSTAUTH_WORKERS": "workers", "HOSTAUTH_DB_POOL_SIZE": "db_pool_size"}.get(
        name, "kms_cache_size"
    )
    assert getattr(settings, field) == 3


def test_a_dev_api_key_of_ones_own_must_be_an_api_key() -> None:
    """Any other word was registered, and then every call with it was refused."""
    for bad in ("my-dev-key", "hak_short", "hak_" + "x" * 20 + " "):
        with pytest.raises(ConfigError, match="HOSTAUTH_DEV_API_KEY must be hak_") as caught:
            Settings.from_env({**BASE, "HOSTAUTH_DEV_API_KEY": bad})
        assert bad.strip() not in str(caught.value)  # a credential is never echoed
    key = new_api_key()
    assert Settings.from_env({**BASE, "HOSTAUTH_DEV_API_KEY": key}).dev_api_key == key


def test_a_dev_keyring_whose_primary_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    """As the keyring is after step 4 of a rotation with its primary left as it was."""
    keyring = json.loads(generate_keyring_json("k-old"))
    keyring["keys"] = {"k-new": keyring["keys"].pop("k-old")}
    (tmp_path / DEV_KEYRING_NAME).write_text(json.dumps(keyring))
    done = subprocess.run(
        [sys.executable, "-m", "hostauth", "keys", "status", "--dev"],
        cwd=ROOT,
        env={**os.environ, "HOSTAUTH_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://127.0.0.1:1/x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().endswith(
        "hostauth: primary key 'k-old' is not in the keyring: set its \"primary\" to a key it holds"
        " (after a rotation, the new primary)"
    )
