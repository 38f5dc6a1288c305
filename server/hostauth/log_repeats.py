"""Failures that repeat per call, logged once an interval with their count.

An outage, or a stop during one, fails every call the same way; a line (or
a traceback) per call would fill the disk a fault lasts long enough for.
"""

from __future__ import annotations

import logging
import time

INTERVAL_S = 5.0
_MAX_KINDS = 256  # kinds are templates and bounded values (method, exception type)


class _Kinds:
    """When each kind of line is next due, and how many went unlogged since."""

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: dict[object, tuple[float, int]] = {}

    def due(self, kind: object) -> int | None:
        """None to stay quiet; else how many of the kind were not logged since
        the last one that was."""
        now = time.monotonic()
        due, quiet = self._due.get(kind, (0.0, 0))
        if now < due:
            self._due[kind] = (due, quiet + 1)
            return None
        if len(self._due) >= _MAX_KINDS:
            self._due.clear()
        self._due[kind] = (now + INTERVAL_S, 0)
        return quiet


class Repeats:
    """`repeats.log(template, *args)`: the first of a kind (template and args)
    is logged at once; the same again within INTERVAL_S is only counted, and
    the count goes with the next one logged."""

    __slots__ = ("_kinds", "_level", "_log")

    def __init__(self, logger: logging.Logger, level: int = logging.ERROR) -> None:
        self._log = logger
        self._level = level
        self._kinds = _Kinds()

    def log(self, template: str, *args: object, exc_info: BaseException | None = None) -> None:
        quiet = self._kinds.due((template, *args))
        if quiet is None:
            return
        if quiet:
            self._log.log(
                self._level, template + " (%d more since the last such line)", *args, quiet, exc_info=exc_info
            )
        else:
            self._log.log(self._level, template, *args, exc_info=exc_info)


class QuietRepeats(logging.Filter):
    """A logging filter for a library's logger that writes the same failure
    (with a traceback) at every retry (asyncpg's pool, at each attempt to
    restore its floor of connections): the first of a message is passed, the
    same message again within INTERVAL_S is dropped and counted, and the next
    one passed carries the count; none carries a traceback, only the
    exception's type."""

    def __init__(self) -> None:
        super().__init__()
        self._kinds = _Kinds()

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = self._kinds.due(str(record.msg))
        if quiet is None:
            return False
        if quiet:
            record.msg = f"{record.msg} (again {quiet} time(s) since the last such line)"
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            record.msg = f"{record.msg}: {type(exc).__name__}"
            record.exc_info = None
            record.exc_text = None
        return True
