"""Which failures of a database call mean the database is out (or too slow),
not that the service has a bug: the caller should retry later."""

from __future__ import annotations

import asyncpg

# OSError covers refused and reset connections and timeouts (TimeoutError);
# PostgreSQL's class 08 (connection) and 57 (operator intervention: shutting
# down, starting up, a statement cancelled by its timeout) and 53 (too many
# connections, out of disk or memory).
_OUTAGES = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, _OUTAGES):
        return True
    # asyncpg's own word for a connection lost between statements.
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)
