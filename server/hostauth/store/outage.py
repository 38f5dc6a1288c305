"""Which failures of a database call mean the database is out (or too slow),
or a connection is in a state nobody can trust, not that the service has a
bug: the caller should retry later. And which of them leave the connection
they happened on unfit to reuse."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import asyncpg

# OSError covers refused and reset connections and timeouts (TimeoutError);
# PostgreSQL's class 08 (connection), 57 (operator intervention: shutting
# down, starting up, a statement cancelled by its timeout), 53 (too many
# connections, out of disk or memory), 40 (a transaction rolled back:
# deadlock, serialization) and 25006 (read-only: a standby during a
# failover, before the new primary is found).
_OUTAGES = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.CannotConnectNowError,
)

# asyncpg's client-side errors: a connection lost between statements
# ("connection is closed"), one half lost in an outage whose protocol is
# stuck mid-operation (InternalClientError: "cannot switch to state ..."),
# the pool closing under a stop. All are about the connection's state.
_BROKEN = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, _OUTAGES + _BROKEN)


def breaks_connection(exc: BaseException) -> bool:
    """True when the connection the error happened on must be closed, not
    given back: its protocol state is unknown (a half-lost connection
    reused answers InternalClientError to every statement after)."""
    return isinstance(exc, (*_BROKEN, OSError, asyncpg.PostgresConnectionError))


class DatabaseUnreachable(OSError):
    """No connection could be made: the message names the database (hosts,
    ports or socket directory; never the user or password)."""


def where(dsn: str) -> str:
    """The database a DSN points at, as an operator would look for it."""
    try:
        url = urlsplit(dsn)
        query = parse_qs(url.query)
        hosts = query.get("host") or [url.netloc.rpartition("@")[2]]
        ports = query.get("port")
    except ValueError:
        return "DATABASE_URL"
    located = ",".join(h for h in hosts if h) or "localhost"
    if ports:
        located += f" port {','.join(ports)}"
    if located.startswith("/"):
        located += " (a Unix socket directory)"
    return located
