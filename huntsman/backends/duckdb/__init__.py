"""The embedded DuckDB backend (the reference): one database (file or memory) per store.

Connections are opened with external access disabled and the configuration locked, so a
compiled query can reach nothing but the tables of its own database.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from huntsman.backends.base import Backend
from huntsman.compiler.compiler import INGESTION_TIME
from huntsman.errors import HuntsmanError
from huntsman.kql.types import SQL_TYPES

_CATALOG_TABLE = "__huntsman_columns"


def _q(name: str) -> str:
    """Quote an identifier for the few DDL statements built here (names are validated)."""
    return '"' + name.replace('"', '""') + '"'


class DuckDBBackend(Backend):
    dialect = "duckdb"

    def __init__(self, path: str | Path | None = None, *, memory_limit: str | None = None,
                 threads: int | None = None):
        config: dict[str, object] = {
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,
            "error_on_division_by_zero": False,
            "preserve_insertion_order": True,
        }
        if memory_limit:
            config["memory_limit"] = memory_limit
        if threads:
            config["threads"] = threads
        self.path = str(path) if path else ":memory:"
        self.con = duckdb.connect(self.path, config=config)  # type: ignore[arg-type]
        # datetimes are UTC whatever the machine's zone; then nothing can be changed any more
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET lock_configuration = true")
        self.lock = threading.RLock()
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {_q(_CATALOG_TABLE)} (tbl VARCHAR, "
                         f"ord INTEGER, name VARCHAR, ktype VARCHAR)")
        self._tables: dict[str, list[tuple[str, str]]] = {}
        for tbl, name, ktype in self.con.execute(
                f"SELECT tbl, name, ktype FROM {_q(_CATALOG_TABLE)} ORDER BY tbl, ord").fetchall():
            self._tables.setdefault(tbl, []).append((name, ktype))

    def tables(self) -> dict[str, list[tuple[str, str]]]:
        return self._tables

    def create_table(self, name: str, columns: list[tuple[str, str]]) -> None:
        with self.lock:
            existing = self._tables.get(name)
            if existing is not None:
                if existing != list(columns):
                    raise HuntsmanError(f"table '{name}' already exists with other columns")
                return
            cols = ", ".join(f"{_q(c)} {SQL_TYPES[t]}" for c, t in columns)
            # when each row was committed, for ingestion_time(); hidden from the schema
            cols += f", {_q(INGESTION_TIME)} TIMESTAMP DEFAULT current_timestamp"
            self.con.execute("BEGIN")
            try:
                self.con.execute(f"CREATE TABLE {_q(name)} ({cols})")
                self.con.executemany(
                    f"INSERT INTO {_q(_CATALOG_TABLE)} VALUES (?, ?, ?, ?)",
                    [(name, i, c, t) for i, (c, t) in enumerate(columns)])
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
            self._tables[name] = list(columns)

    def drop_table(self, name: str) -> None:
        with self.lock:
            self.con.execute(f"DROP TABLE IF EXISTS {_q(name)}")
            self.con.execute(f"DELETE FROM {_q(_CATALOG_TABLE)} WHERE tbl = ?", [name])
            self._tables.pop(name, None)

    def append(self, name: str, data: pa.Table) -> int:
        cols = self._tables[name]
        with self.lock:
            view = "__ingest_batch"
            self.con.register(view, data)
            try:
                select = ", ".join(
                    f"CAST({_q(c)} AS {SQL_TYPES[t]})" if t in ("dynamic", "guid")
                    else _q(c) for c, t in cols)
                targets = ", ".join(_q(c) for c, _ in cols)
                self.con.execute(f"INSERT INTO {_q(name)} ({targets}) SELECT {select} "
                                 f"FROM {_q(view)}")
            finally:
                self.con.unregister(view)
        return data.num_rows

    def execute(self, sql: str) -> pa.Table:
        cur = self.con.cursor()
        try:
            return cur.sql(sql).to_arrow_table()
        finally:
            cur.close()

    def close(self) -> None:
        self.con.close()
