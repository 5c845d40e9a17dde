"""The public Python API: ``huntsman.connect()``, ``Database.query()``, ``to_sql()``.

>>> import huntsman
>>> db = huntsman.connect()
>>> db.query("print greeting = strcat('hello', ' ', 'world')").rows
[('hello world',)]
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from huntsman.compiler.compiler import compile_kql
from huntsman.errors import KqlSemanticError
from huntsman.store import Store
from huntsman.store.database import Database, QueryResult, QueryStats
from huntsman.store.ingest import IngestReport, Rejection

__all__ = ["Database", "IngestReport", "QueryResult", "QueryStats", "Rejection", "Store",
           "connect", "to_sql"]


def connect(path: str | Path | None = None, *, tenant: str | None = None, **kw: Any
            ) -> Database:
    """Open a store: in memory by default, or on disk under ``path``.

    ``path`` is a data directory (its ``default`` tenant, or ``tenant``) or a ``.duckdb`` file.
    ``connect(tenant="contoso")`` opens that tenant under ``$HUNTSMAN_DATA_DIR`` (``./data``).
    """
    if tenant is not None:
        if path is not None and Path(path).suffix in (".duckdb", ".db"):
            raise KqlSemanticError("tenant= needs a data directory, not a database file")
        return Store(path, **kw).tenant(tenant)
    return Database(path, **kw)


def to_sql(kql: str, dialect: str = "duckdb", now: datetime | None = None) -> str:
    """The SQL a KQL query compiles to, against the built-in Advanced Hunting tables."""
    if dialect != "duckdb":
        raise KqlSemanticError(f"unknown SQL dialect '{dialect}' (supported: duckdb)")
    return compile_kql(kql, now=now, dialect=dialect).sql
