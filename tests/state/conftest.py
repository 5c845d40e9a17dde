"""Every state test runs twice: on SQLite and on a real PostgreSQL server started for the
session (see ``pg.py``). Without PostgreSQL the PostgreSQL half is skipped with the reason —
except under CI (``CI=true``), where it fails: CI must test both.

``HUNTSMAN_TEST_PG_BIN`` names the folder of initdb/pg_ctl to use;
``HUNTSMAN_TEST_PG_URL`` (a server URL such as ``postgresql+psycopg://user@host:5432/postgres``
whose user may create databases) uses an existing server instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from huntsman.state import State
from tests.state.pg import PostgresServer, find_bin

BACKENDS = ("sqlite", "postgresql")


class ExternalServer:
    """An existing PostgreSQL named by ``HUNTSMAN_TEST_PG_URL``."""

    def __init__(self, url: str):
        self.base = make_url(url)

    def _execute(self, statement: str) -> None:
        engine = create_engine(self.base, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    def create_database(self) -> tuple[str, str]:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}"')
        return name, self.base.set(database=name).render_as_string(hide_password=False)

    def drop_database(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | ExternalServer | str]:
    """The session's PostgreSQL server, or (as a str) why there is none."""
    if os.environ.get("HUNTSMAN_TEST_PG_URL"):
        yield ExternalServer(os.environ["HUNTSMAN_TEST_PG_URL"])
        return
    bin_dir = find_bin()
    if bin_dir is None:
        yield ("no initdb found (install Debian's 'postgresql' package: `make pg`; or set "
               "HUNTSMAN_TEST_PG_BIN or HUNTSMAN_TEST_PG_URL)")
        return
    try:
        server = PostgresServer(bin_dir).start()
    except Exception as e:  # noqa: BLE001 - any failure to start is reported the same way
        yield f"could not start PostgreSQL from {bin_dir}: {e}"
        return
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_database_url(tmp_path: Path, postgres: PostgresServer | ExternalServer | str
                     ) -> Iterator[Callable[[str], str]]:
    """``new_database_url(backend)``: the URL of a new, empty database on that backend
    (a PostgreSQL one is dropped after the test)."""
    counter = iter(range(1000))
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'state{next(counter)}.sqlite'}"
        if isinstance(postgres, str):
            _unavailable(postgres)
        assert not isinstance(postgres, str)
        name, url = postgres.create_database()
        created.append(name)
        return url

    yield make
    for name in created:
        assert not isinstance(postgres, str)
        postgres.drop_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_url(backend: str, new_database_url: Callable[[str], str]) -> str:
    """A new, empty database on each backend in turn."""
    return new_database_url(backend)


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    """A migrated ``State`` on a new database, on each backend in turn."""
    s = State(state_url)
    try:
        yield s
    finally:
        s.close()
