"""Settings from the environment: the worker pinning and scheduling switches."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings

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
