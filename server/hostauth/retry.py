"""How long to wait before the next attempt at something the database's
outage stopped: quick at first, then every few seconds."""

from __future__ import annotations

_STEPS_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # the last repeats


def backoff_s(attempt: int) -> float:
    """The wait before attempt `attempt` (counted from 0)."""
    return _STEPS_S[min(attempt, len(_STEPS_S) - 1)]
