"""``huntsman admin`` run as a real process, against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from huntsman.state import State

HUNTSMAN = [sys.executable, "-m", "huntsman.cli", "admin"]


@pytest.fixture
def admin(tmp_path: Path, state_url: str):  # type: ignore[no-untyped-def]
    """Run ``huntsman admin ARGS --data-dir D --state-url U``; returns the finished process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HUNTSMAN_STATE_URL", "HUNTSMAN_DATA_DIR")}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HUNTSMAN, *args, "--data-dir", str(tmp_path / "data"),
                               "--state-url", state_url], capture_output=True, text=True,
                              input=stdin, timeout=120, env=env)

    return run


def test_tenant_user_app_round_trip(admin, state_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = admin("tenant", "create", "contoso")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "data" / "contoso.duckdb").is_file()   # its telemetry store too
    p = admin("user", "create", "alice", "--password-stdin", stdin="s3cret-enough\n")
    assert p.returncode == 0, p.stderr
    p = admin("user", "grant", "alice", "--tenant", "contoso", "--role", "responder")
    assert p.returncode == 0, p.stderr
    p = admin("app", "create", "--tenant", "contoso", "--name", "sync", "--role", "viewer",
              "--role", "analyst", "--json")
    assert p.returncode == 0, p.stderr
    created = json.loads(p.stdout)
    p = admin("tenant", "limits", "contoso", "--set", "lookback_days=unlimited",
              "--set", "max_rows_api=500", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["max_rows_api"] == 500

    with State(state_url) as state:
        assert state.verify_user("alice", "s3cret-enough") is not None
        assert state.user_role("alice", "contoso") == "responder"
        app = state.verify_app(created["client_id"], created["client_secret"])
        assert app is not None and app.roles == ("viewer", "analyst")
        assert state.tenant_limits("contoso").lookback_days is None
        actions = [e.action for e in state.audit_log("contoso")]
    assert actions == ["tenant.limits", "app.create", "user.grant", "tenant.create"]

    p = admin("audit", "--tenant", "contoso", "--json")
    assert p.returncode == 0, p.stderr
    assert [json.loads(line)["action"] for line in p.stdout.splitlines()] == actions
    p = admin("app", "list", "--tenant", "contoso")
    assert created["client_id"] in p.stdout and created["client_secret"] not in p.stdout
    p = admin("app", "delete", created["client_id"])
    assert p.returncode == 0, p.stderr
    with State(state_url) as state:
        assert state.verify_app(created["client_id"], created["client_secret"]) is None


@pytest.fixture
def admin_sqlite(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``admin`` on a SQLite state that already has tenant contoso and user alice."""
    url = f"sqlite:///{tmp_path / 'errors.sqlite'}"
    with State(url) as state:
        state.create_tenant("contoso")
        state.create_user("alice", "first-password")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HUNTSMAN_STATE_URL", "HUNTSMAN_DATA_DIR")}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HUNTSMAN, *args, "--data-dir", str(tmp_path / "data"),
                               "--state-url", url], capture_output=True, text=True,
                              input=stdin, timeout=120, env=env)

    return run


# Error messages do not depend on the database: these run on SQLite only.
@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("user", "grant", "alice", "--tenant", "nope", "--role", "viewer"), None,
     "unknown tenant 'nope'"),
    (("user", "grant", "alice", "--tenant", "contoso", "--role", "boss"), None,
     "unknown role 'boss'"),
    (("user", "create", "alice", "--password-stdin"), "another-password\n",
     "user 'alice' already exists"),
    (("user", "create", "bob"), "", "use --password-stdin"),
    (("user", "create", "bob", "--password-stdin"), "", "nothing on standard input"),
    (("tenant", "create", "contoso"), None, "tenant 'contoso' already exists"),
    (("tenant", "limits", "contoso", "--set", "max_rows_api"), None, "write KEY=VALUE"),
    (("tenant", "limits", "contoso", "--set", "speed=3"), None, "unknown limit 'speed'"),
    (("app", "create", "--tenant", "contoso", "--name", "x", "--role", "root"), None,
     "unknown role 'root'"),
    (("app", "delete", "no-such-app"), None, "unknown app"),
    (("audit", "--tenant", "contoso", "--since", "yesterday"), None, "use an ISO date"),
])
def test_clear_errors_exit_1(admin_sqlite, args: tuple[str, ...],  # type: ignore[no-untyped-def]
                             stdin: str | None, message: str) -> None:
    p = admin_sqlite(*args, stdin=stdin)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_every_admin_command_is_in_the_readme() -> None:
    import typer.main

    from huntsman.cli_admin import admin_app

    def commands(group: Any, prefix: str) -> list[str]:
        found = []
        for name, command in group.commands.items():
            if hasattr(command, "commands"):   # a sub-group
                found += commands(command, f"{prefix} {name}")
            else:
                found.append(f"{prefix} {name}")
        return found

    root = typer.main.get_command(admin_app)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Administration"):]
    listed = commands(root, "huntsman admin")
    assert len(listed) >= 13
    assert [c for c in listed if c not in section] == []
