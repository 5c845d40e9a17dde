"""The private PostgreSQL of the state tests: runs unprivileged when we are root, and its
absence fails the suite under CI but only skips it elsewhere."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.state.conftest import ExternalServer
from tests.state.pg import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def test_server_is_real_and_never_runs_as_root(postgres: object) -> None:
    if isinstance(postgres, str):
        pytest.skip(postgres)
    if isinstance(postgres, ExternalServer):
        pytest.skip("an external server (HUNTSMAN_TEST_PG_URL) is not ours to inspect")
    assert isinstance(postgres, PostgresServer)
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="huntsman",
                         dbname="postgres") as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        owner = os.stat(f"/proc/{pid[0]}").st_uid   # while the backend lives
    assert version is not None and int(version[0]) >= 120000
    assert owner != 0
    if os.geteuid() == 0:
        assert postgres.run_as is not None and owner == postgres.run_as.pw_uid


def _run_without_postgres(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HUNTSMAN_TEST_PG_URL")}
    env["HUNTSMAN_TEST_PG_BIN"] = "/nonexistent"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-rs", "tests/state/test_accounts.py::test_tenant_lifecycle"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_missing_postgres_skips_locally_and_fails_under_ci() -> None:
    local = _run_without_postgres(None)
    assert local.returncode == 0, local.stdout
    assert local.stdout.startswith(".s"), local.stdout   # SQLite passed, PostgreSQL skipped
    assert "no initdb found" in local.stdout
    ci = _run_without_postgres("true")
    assert ci.returncode == 1, ci.stdout
    assert ci.stdout.startswith(".E"), ci.stdout   # an error in the fixture, not a skip
    assert "PostgreSQL is required under CI" in ci.stdout


def test_a_killed_test_run_leaves_no_server_behind(postgres: object) -> None:
    if isinstance(postgres, str):
        pytest.skip(postgres)
    code = ("import sys, time\n"
            "from tests.state.pg import PostgresServer, find_bin\n"
            "s = PostgresServer(find_bin()).start()\n"
            "print(s.proc.pid, s.root, flush=True)\n"
            "time.sleep(600)\n")
    runner = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert runner.stdout is not None
    pid_text, root = runner.stdout.readline().split()
    pid = int(pid_text)
    try:
        assert Path(f"/proc/{pid}").exists()
        runner.kill()                      # SIGKILL: no finalizer runs
        runner.wait()
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), "the postmaster outlived its test run"
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
