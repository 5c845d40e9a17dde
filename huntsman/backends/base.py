"""The ``Backend`` interface: the only way the rest of huntsman reaches telemetry."""

from __future__ import annotations

from abc import ABC, abstractmethod

import pyarrow as pa

from huntsman.compiler.compiler import CompiledQuery, compile_kql


class Backend(ABC):
    """A SQL engine holding telemetry tables. Subclasses set ``dialect`` and ``UNSUPPORTED``."""

    dialect: str = "duckdb"
    UNSUPPORTED: frozenset[str] = frozenset()
    """KQL operators/functions this backend cannot run (listed in the support matrix)."""

    @abstractmethod
    def tables(self) -> dict[str, list[tuple[str, str]]]:
        """Every table with its Kusto columns ``[(name, type)]``."""

    @abstractmethod
    def create_table(self, name: str, columns: list[tuple[str, str]]) -> None:
        """Create a table with Kusto-typed columns (no-op if it exists with those columns)."""

    @abstractmethod
    def append(self, name: str, data: pa.Table) -> int:
        """Append an Arrow batch already coerced to the table's schema; returns rows added."""

    @abstractmethod
    def execute(self, sql: str) -> pa.Table:
        """Run compiled SQL and return Arrow."""

    @abstractmethod
    def close(self) -> None: ...

    def compile(self, kql: str, now: object = None) -> CompiledQuery:
        tables = self.tables()
        return compile_kql(kql, tables.get, lambda: sorted(tables), now,  # type: ignore[arg-type]
                           self.dialect)
