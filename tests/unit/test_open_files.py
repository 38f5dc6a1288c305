"""The open-file limit raised at start to what the connection limit needs,
or a start error that says what to change. Each case runs in a process of
its own, started with the limits given."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

from hostauth.config import Settings
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.runtime.open_files import needed

_RAISE = (
    "import resource, os; from hostauth.config import Settings;"
    " from hostauth.runtime.open_files import raise_open_file_limit;"
    " raise_open_file_limit(Settings.from_env(os.environ, database=False));"
    " print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
)


def _run(
    soft: int, hard: int, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return subprocess.run(  # our own interpreter and code
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limited,  # the limits of the child alone
        env={**os.environ, **env},
        check=False,
    )


def test_a_low_soft_limit_is_raised_to_what_the_connections_need() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed(Settings(max_connections=1000))
    assert want < hard  # this machine's hard limit leaves room
    done = _run(256, hard, "-c", _RAISE, env={"HOSTAUTH_MAX_CONNECTIONS": "1000"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(want), str(hard)]


def test_a_hard_limit_below_the_need_stops_the_start_saying_what_to_change() -> None:
    done = _run(
        1024,
        1024,
        "-m",
        "hostauth",
        "serve",
        env={
            "HOSTAUTH_MAX_CONNECTIONS": "4096",
            "DATABASE_URL": "postgresql://x/y",
            "HOSTAUTH_KEYRING": generate_keyring_json("k"),
        },
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"hostauth: HOSTAUTH_MAX_CONNECTIONS=4096 needs {needed(Settings(max_connections=4096))} open files"
        " a process; the limit is 1024 (hard 1024): raise it (ulimit -n, systemd LimitNOFILE, the"
        " container's nofile) or lower HOSTAUTH_MAX_CONNECTIONS"
    )
