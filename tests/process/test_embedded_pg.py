"""hostauth.runtime.embedded_pg against a real PostgreSQL: persistence, no orphans, no permission changes."""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from hostauth.runtime.embedded_pg import EmbeddedPostgres, binaries_dir

ROOT = Path(__file__).resolve().parents[2]  # the checkout

# Runs in a child interpreter; prints the postmaster's pid and the DSN, then waits to be killed.
OWNER = """
import sys, time
from pathlib import Path
from hostauth.runtime.embedded_pg import EmbeddedPostgres
data = Path(sys.argv[1])
pg = EmbeddedPostgres(data, fsync=False)
pg.start()
print((data / "postmaster.pid").read_text().split()[0], pg.dsn, flush=True)
time.sleep(120)
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Our own folder, open to `nobody` (pytest's tmp_path under root is 0700).
    path = Path(tempfile.mkdtemp(prefix="hapg-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    # A zombie counts as gone: the orphaned server's new parent may reap it late.
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def _postmaster_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split()[0])


async def _sql(dsn: str, *statements: str) -> list[tuple[object, ...]]:
    """Runs the statements in order; returns the rows of the last one."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return [tuple(row) for row in rows]
    finally:
        await conn.close()


CREATE = (
    "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)",
    "INSERT INTO notes VALUES (1, 'kept')",
)
READ = "SELECT id, body FROM notes ORDER BY id"


def _modes(paths: list[Path]) -> list[tuple[int, int]]:
    return [(p.stat().st_mode, p.stat().st_uid) for p in paths]


def test_data_persists_across_restart_and_outside_stays_untouched(workdir: Path) -> None:
    data = workdir / "data"
    # Folders that are not ours: their modes and owners must not change.
    outside = [workdir, workdir.parent, binaries_dir(), *binaries_dir().parents]
    before = _modes(outside)

    with EmbeddedPostgres(data, fsync=False) as pg:
        socket_dir = Path(parse_qs(urlsplit(pg.dsn).query)["host"][0])
        assert socket_dir.is_dir()
        assert asyncio.run(_sql(pg.dsn, "SELECT 1")) == [(1,)]
        asyncio.run(_sql(pg.dsn, *CREATE))
    assert not socket_dir.exists()
    assert not (data / "postmaster.pid").exists()

    with EmbeddedPostgres(data, fsync=False) as pg:
        assert asyncio.run(_sql(pg.dsn, READ)) == [(1, "kept")]
    pg.stop()  # idempotent
    assert _modes(outside) == before


def test_server_dies_with_its_owner(workdir: Path) -> None:
    data = workdir / "data"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        pid_text, dsn = owner.stdout.readline().split()
        postmaster = int(pid_text)
        assert _alive(postmaster)
        asyncio.run(_sql(dsn, *CREATE))
    finally:
        owner.kill()  # SIGKILL: no atexit, only the parent-death signal can stop the server
        owner.wait()
    deadline = time.monotonic() + 10
    while _alive(postmaster):
        assert time.monotonic() < deadline, f"postmaster {postmaster} outlived its owner"
        time.sleep(0.05)
    shutil.rmtree(parse_qs(urlsplit(dsn).query)["host"][0], ignore_errors=True)

    # The folder the killed owner left behind serves again.
    with EmbeddedPostgres(data, fsync=False) as pg:
        assert asyncio.run(_sql(pg.dsn, READ)) == [(1, "kept")]


def test_restarts_after_postmaster_sigkill(workdir: Path) -> None:
    data = workdir / "data"
    pg = EmbeddedPostgres(data, fsync=False)
    # With fsync=False commits are not flushed at once (synchronous_commit=off), so
    # a crash may lose the last ones: CHECKPOINT makes this one survive the SIGKILL.
    asyncio.run(_sql(pg.start(), *CREATE, "CHECKPOINT"))
    os.kill(_postmaster_pid(data), signal.SIGKILL)
    pg.stop()
    assert (data / "postmaster.pid").exists()  # stale: left by the killed server

    with pg:
        assert asyncio.run(_sql(pg.dsn, READ)) == [(1, "kept")]


def test_unreachable_data_folder_is_refused_not_opened() -> None:
    private = Path(tempfile.mkdtemp(prefix="hapg-test-", dir="/tmp"))  # mode 0700
    try:
        pg = EmbeddedPostgres(private / "data", fsync=False)
        if os.geteuid() == 0:
            reason = f"cannot reach {private}/data: {private} is drwx------"
            with pytest.raises(RuntimeError, match=re.escape(reason)):
                pg.start()
            assert list(private.iterdir()) == []
        else:  # our own folder: the server runs as us
            with pg:
                pass
        assert private.stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(private, ignore_errors=True)
