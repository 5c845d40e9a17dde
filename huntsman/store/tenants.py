"""Tenants' telemetry stores: one DuckDB database file per tenant under a data directory.

>>> import tempfile
>>> store = Store(tempfile.mkdtemp())
>>> db = store.tenant("contoso")          # created on first use
>>> store.tenants()
['contoso']
>>> store.delete_tenant("contoso"); store.tenants()
[]
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from huntsman.errors import HuntsmanError
from huntsman.store.database import DEFAULT_TENANT, Database

DATA_DIR_ENV = "HUNTSMAN_DATA_DIR"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SUFFIX = ".duckdb"


def default_data_dir() -> Path:
    """``$HUNTSMAN_DATA_DIR``, else ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def check_tenant_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise HuntsmanError(f"invalid tenant name {name!r}: use 1-64 letters, digits, '_' or "
                            f"'-', starting with a letter or digit")
    return name


class Store:
    """The tenants under one data directory; ``tenant(name)`` opens (or creates) one.

    A tenant's database is opened once per ``Store`` and shared; ``close()`` closes them all.
    """

    def __init__(self, data_dir: str | Path | None = None, *, memory_limit: str | None = None,
                 threads: int | None = None):
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self._kw: dict[str, Any] = {"memory_limit": memory_limit, "threads": threads}
        self._open: dict[str, Database] = {}
        self._lock = threading.RLock()

    def path(self, name: str) -> Path:
        return self.data_dir / f"{check_tenant_name(name)}{SUFFIX}"

    def tenants(self) -> list[str]:
        """The tenants that exist, sorted."""
        if not self.data_dir.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.data_dir.iterdir()
                      if p.is_file() and p.name.endswith(SUFFIX)
                      and _NAME.match(p.name[: -len(SUFFIX)]))

    def has_tenant(self, name: str) -> bool:
        return self.path(name).is_file()

    def create_tenant(self, name: str) -> Database:
        """Create a tenant (an error if it exists)."""
        if self.has_tenant(name):
            raise HuntsmanError(f"tenant '{name}' already exists")
        return self.tenant(name)

    def tenant(self, name: str = DEFAULT_TENANT, *, create: bool = True) -> Database:
        """The tenant's database; created on first use unless ``create`` is false."""
        with self._lock:
            db = self._open.get(name)
            if db is not None:
                return db
            path = self.path(name)
            if not path.is_file() and not create:
                raise HuntsmanError(f"no tenant '{name}' in {self.data_dir}")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            db = Database(path, name=name, **self._kw)
            self._open[name] = db
            return db

    def delete_tenant(self, name: str) -> None:
        """Remove the tenant and every row of its data."""
        with self._lock:
            path = self.path(name)
            if not path.is_file() and name not in self._open:
                raise HuntsmanError(f"no tenant '{name}' in {self.data_dir}")
            db = self._open.pop(name, None)
            if db is not None:
                db.close()
            for p in (path, path.with_name(path.name + ".wal")):
                if p.exists():
                    p.unlink()
            # its spill files and ingest spool (see DuckDBBackend)
            for d in (path.parent / ".tmp" / path.stem, path.parent / ".tmp" / f"{path.stem}-ingest"):
                shutil.rmtree(d, ignore_errors=True)

    def open_tenants(self) -> list[Database]:
        """Every tenant's database (opening them)."""
        return [self.tenant(n) for n in self.tenants()]

    def close(self) -> None:
        with self._lock:
            for db in self._open.values():
                db.close()
            self._open.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
