"""What `hostauth --version` prints: the installed version, and the commit:
the one `make dist` wrote into the wheel, else the git checkout's the
package runs from."""

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
    return installed, _built_commit() or _checkout_commit()


def _built_commit() -> str | None:
    try:
        return (Path(__file__).resolve().parents[1] / "COMMIT").read_text().strip() or None
    except OSError:
        return None


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
