"""A real, private PostgreSQL server for tests: initdb into a temporary folder, start it on a
free loopback port with its socket in that folder, stop and remove it at the end.

The server is a child of the test process and dies with it. initdb and postgres refuse to run
as root; as root the server runs as the ``postgres`` system
user (Debian's package creates it) or else ``nobody``, in a temporary folder that user owns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SUPERUSER = "huntsman"


def find_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl): ``$HUNTSMAN_TEST_PG_BIN``,
    else the one on PATH, else the newest Debian one under /usr/lib/postgresql."""
    if os.environ.get("HUNTSMAN_TEST_PG_BIN"):
        chosen = Path(os.environ["HUNTSMAN_TEST_PG_BIN"])
        return chosen if (chosen / "initdb").exists() else None
    found = shutil.which("initdb")
    if found and Path(found).resolve().with_name("pg_ctl").exists():
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                            key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                            else 0, reverse=True):
        return Path(candidate).parent
    return None


def _scratch_dir() -> str | None:
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2**31:
            return str(shm)
    except OSError:
        pass
    return None   # the system's temporary folder


def _die_with_parent() -> None:
    """In the server's process before exec: SIGQUIT it when its parent (the tests) dies."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGQUIT))   # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``start()`` a throw-away server; ``url(db)`` is a SQLAlchemy URL; ``stop()`` removes it."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.run_as = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            if self.run_as is None:
                raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run "
                                   "PostgreSQL as (initdb refuses root)")
        # Not under pytest's tmp folders: those are private to root, and the server user must
        # reach its own folder. In memory when there is room: a throw-away server need not
        # wait for a (shared, busy) disk.
        self.root = Path(tempfile.mkdtemp(prefix="huntsman-pg-", dir=_scratch_dir()))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        if self.run_as is not None:
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)

    def _as_server_user(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": str(self.root)}}

    def start(self) -> PostgresServer:
        initdb = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, timeout=120, cwd=self.root, **self._as_server_user())
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}): {initdb.stderr}")
        for _ in range(5):   # a port found free can be taken before the server binds it
            self.port = _free_port()
            # The postmaster runs as our child (not daemonised by pg_ctl) and gets SIGQUIT
            # (immediate shutdown) if this process dies: a killed test run leaves no server.
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                     "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.root, preexec_fn=_die_with_parent, **self._as_server_user())
            if self._ready():
                return self
            self._shutdown()
        log_text = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start:\n{log_text}")

    def _ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                                dbname="postgres", connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def _shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)   # immediate shutdown: nothing to keep
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        try:
            self._shutdown()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                               dbname="postgres", autocommit=True)

    def create_database(self) -> tuple[str, str]:
        """A new empty database: its name and SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
