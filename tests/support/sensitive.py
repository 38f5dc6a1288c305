"""Every secret and credential the tests make, to search logs and audit rows for."""

from __future__ import annotations

SENSITIVE: set[str] = set()


def remember(value: str) -> str:
    SENSITIVE.add(value)
    return value


def leaks(text: str) -> list[str]:
    """The remembered values that occur in text (shortened, for a readable failure)."""
    return sorted(value[:12] + "..." for value in SENSITIVE if value in text)
