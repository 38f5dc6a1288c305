"""A failure repeated per call is logged once an interval with its count, and
a library's retry traceback is cut to one line."""

from __future__ import annotations

import logging

import pytest

from hostauth import log_repeats
from hostauth.log_repeats import QuietRepeats, Repeats


def test_repeats_are_counted_into_the_next_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(log_repeats.time, "monotonic", lambda: now[0])
    repeats = Repeats(logging.getLogger("hostauth.test.repeats"))
    with caplog.at_level(logging.ERROR, "hostauth.test.repeats"):
        for _ in range(1000):
            repeats.log("read failed: %s", "InterfaceError")
        now[0] += log_repeats.INTERVAL_S
        repeats.log("read failed: %s", "InterfaceError")
    assert [r.getMessage() for r in caplog.records] == [
        "read failed: InterfaceError",
        "read failed: InterfaceError (999 more since the last such line)",
    ]


def test_a_retry_traceback_becomes_one_counted_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(log_repeats.time, "monotonic", lambda: now[0])
    logger = logging.getLogger("hostauth.test.library")
    quiet = QuietRepeats()
    logger.addFilter(quiet)
    try:
        with caplog.at_level(logging.WARNING, "hostauth.test.library"):
            for _ in range(50):
                try:
                    raise ConnectionRefusedError(111, "Connect call failed")
                except OSError:
                    logger.warning("Failed to restore the pool connection floor", exc_info=True)
            now[0] += log_repeats.INTERVAL_S
            logger.warning("Failed to restore the pool connection floor")
    finally:
        logger.removeFilter(quiet)
    assert [r.getMessage() for r in caplog.records] == [
        "Failed to restore the pool connection floor: ConnectionRefusedError",
        "Failed to restore the pool connection floor (again 49 time(s) since the last such line)",
    ]
    assert all(r.exc_info is None for r in caplog.records)
