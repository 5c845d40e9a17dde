"""The migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect

from huntsman.state import State
from huntsman.state.db import (
    alembic_config,
    connect_engine,
    current_revision,
    head_revision,
    metadata,
    upgrade,
)
from huntsman.state.errors import StateError


def _diff(url: str) -> list[Any]:
    engine = connect_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, metadata()))
    finally:
        engine.dispose()


def test_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert script.get_base() is not None


def test_upgrade_on_empty_database_gives_the_models_schema(state_url: str) -> None:
    engine = connect_engine(state_url)
    assert current_revision(engine) is None
    assert inspect(engine).get_table_names() == []
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set(metadata().tables)
    command.check(alembic_config(engine))   # `alembic check`, through env.py: no new operations
    engine.dispose()
    assert _diff(state_url) == []


def test_the_models_differ_from_an_unmigrated_database(state_url: str) -> None:
    # The comparison above can fail: on an empty database every table is reported missing.
    diff = _diff(state_url)
    assert {d[1].name for d in diff if d[0] == "add_table"} == set(metadata().tables)
    engine = connect_engine(state_url)
    with pytest.raises(CommandError):
        command.check(alembic_config(engine))
    engine.dispose()


def test_downgrade_to_base_and_up_again(state_url: str) -> None:
    engine = connect_engine(state_url)
    upgrade(engine)
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    assert _diff(state_url) == []


def test_opening_twice_keeps_the_data(state_url: str) -> None:
    with State(state_url) as first:
        first.create_tenant("contoso")
    with State(state_url) as second:
        assert [t.name for t in second.list_tenants()] == ["contoso"]


def test_concurrent_first_start_migrates_once(state_url: str) -> None:
    # Several server processes starting at once on one fresh database: the first migrates,
    # the others wait (PostgreSQL: an advisory lock; SQLite: a write lock) and find it at head.
    url = state_url
    code = "import sys; from huntsman.state import State; State(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    failures = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]
    assert failures == []
    assert _diff(url) == []


def test_concurrent_first_start_in_threads(state_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            State(state_url).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _diff(state_url) == []


def test_default_is_sqlite_file_in_data_dir(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HUNTSMAN_STATE_URL", raising=False)
    with State(data_dir=tmp_path / "data") as state:
        state.create_tenant("a")
        assert state.url == f"sqlite:///{tmp_path / 'data' / 'state.sqlite'}"
        with state.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "data" / "state.sqlite").is_file()


@pytest.mark.parametrize("url", ["mysql://x@y/z", "not a url"])
def test_unsupported_or_invalid_url(url: str) -> None:
    with pytest.raises(StateError, match="state database"):
        State(url)
