"""Alembic environment: migrate the engine huntsman hands over, or ``$HUNTSMAN_STATE_URL``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from huntsman.state.db import connect_engine, database_url, metadata

# Any constant would do: it serialises concurrent migrations of one PostgreSQL database
# (several server processes starting at once).
_PG_LOCK = 0x68756E74


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata(),
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        context.run_migrations()


def run_online() -> None:
    engine = context.config.attributes.get("engine") or connect_engine(database_url())
    with engine.connect() as connection:
        _run(connection)
        connection.commit()


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=metadata(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _in_alembic() -> bool:
    # Alembic runs this file with its context set up; a plain import (pytest's doctest
    # collection of the package) has none, and must do nothing.
    try:
        context.config  # noqa: B018
    except AttributeError:
        return False
    return True


if _in_alembic():
    run_offline() if context.is_offline_mode() else run_online()
