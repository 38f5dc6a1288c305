"""What `hostauth --version` prints: the installed version, and the commit
when the package runs from a git checkout."""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@functools.cache
def build() -> tuple[str, str | None]:
    """The installed version, and the commit when known."""
    try:
        installed = version("hostauth")
    except PackageNotFoundError:
        installed = "unknown"
    return installed, _checkout_commit()


def version_line() -> str:
    installed, commit = build()
    return f"hostauth {installed}" + (f" (commit {commit})" if commit else "")


def _checkout_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(  # noqa: S603 # git, only ever on our own directory
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
