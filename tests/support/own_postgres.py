"""A PostgreSQL of a test's own, to stop and start (the session's one stays up)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hostauth.runtime.embedded_pg import EmbeddedPostgres


@contextlib.contextmanager
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """Started on the calling thread (the main one, in tests): see EmbeddedPostgres.start."""
    folder = Path(tempfile.mkdtemp(prefix="hostauth-own-pg-"))
    folder.chmod(0o755)  # reachable by the unprivileged user it runs as under root
    pg = EmbeddedPostgres(folder / "pgdata", fsync=False)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
