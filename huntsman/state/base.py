"""What every part of the state service shares: the engine, sessions, names and tenant lookup."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Self

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from huntsman.state.db import connect_engine, database_url, upgrade
from huntsman.state.errors import ConflictError, NotFoundError, StateError
from huntsman.state.info import ROLES
from huntsman.state.models import Tenant

# The same rule as the telemetry store's tenant names (huntsman.store.tenants), which the state
# layer may not import: a tenant in the state is a tenant in the store.
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_tenant_name(name: str) -> str:
    if not isinstance(name, str) or not TENANT_NAME.match(name):
        raise StateError(f"invalid tenant name {name!r}: use 1-64 letters, digits, '_' or '-', "
                         f"starting with a letter or digit")
    return name


def check_username(name: str) -> str:
    if not isinstance(name, str) or not USERNAME.match(name):
        raise StateError(f"invalid user name {name!r}: use 1-128 letters, digits, '_', '.', "
                         f"'@', '+' or '-', starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise StateError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def check_text(what: str, value: str, *, max_len: int, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise StateError(f"{what} must be text, not {type(value).__name__}")
    value = value.strip()
    if not value and not empty:
        raise StateError(f"{what} must not be empty")
    if len(value) > max_len:
        raise StateError(f"{what} is too long ({len(value)} characters; at most {max_len})")
    return value


def check_aware(what: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise StateError(f"{what} must be a timezone-aware datetime (UTC), not {value!r}")
    return value


class StateBase:
    """The engine and session factory; ``State`` adds the domain methods."""

    def __init__(self, url: str | None = None, *, data_dir: str | Path | None = None,
                 migrate: bool = True):
        self.url = database_url(url, data_dir=data_dir)
        self.engine: Engine = connect_engine(self.url)
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def _session(self, conflict: str | None = None) -> Iterator[Session]:
        """A session committed on success; a unique-constraint violation becomes
        ``ConflictError(conflict)`` when ``conflict`` is given."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except IntegrityError as e:
                session.rollback()
                if conflict is None:
                    raise
                raise ConflictError(conflict) from e

    @staticmethod
    def _tenant(session: Session, name: str) -> Tenant:
        tenant = session.scalar(select(Tenant).where(Tenant.name == name))
        if tenant is None:
            raise NotFoundError(f"unknown tenant {name!r}")
        return tenant
