"""docs/operations.md's configuration reference is the settings module's:
every variable config.py reads is listed, nothing else is, and each default
the table gives is the default (setting a variable to it changes nothing)."""

from __future__ import annotations

import ast
import re

import pytest

from hostauth.config import Settings
from tests.support.processes import ROOT

DOC = (ROOT / "docs" / "operations.md").read_text()
BASE = {"DATABASE_URL": "postgresql://localhost/x"}


def _read_by_config() -> set[str]:
    tree = ast.parse((ROOT / "server" / "hostauth" / "config.py").read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"(HOSTAUTH|OTEL)_[A-Z0-9_]+|DATABASE_URL", node.value)
    }


def _rows() -> dict[str, str]:
    """variable -> its default cell, from the table under ## Configuration."""
    section = DOC.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and (name := re.fullmatch(r"`([A-Z0-9_]+)`", cells[0])):
            rows[name.group(1)] = cells[1]
    return rows


def test_the_table_lists_exactly_what_config_reads() -> None:
    listed, read = set(_rows()), _read_by_config()
    assert not read - listed, f"read by config.py, missing in docs/operations.md: {sorted(read - listed)}"
    assert not listed - read, f"in docs/operations.md, not read by config.py: {sorted(listed - read)}"


@pytest.mark.parametrize(
    ("name", "default"),
    [(n, d[1:-1]) for n, d in _rows().items() if re.fullmatch(r"`[^`]+`", d)],
)
def test_each_default_given_is_the_default(name: str, default: str) -> None:
    assert Settings.from_env({**BASE, name: default}) == Settings.from_env(BASE), name
