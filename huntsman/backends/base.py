"""The ``Backend`` interface: the only way the rest of huntsman reaches telemetry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from huntsman.compiler.compiler import INGESTION_TIME, CompiledQuery, compile_kql
from huntsman.compiler.external import ExternalInput
from huntsman.errors import HuntsmanError, UnsupportedError
from huntsman.kql.stored import StoredFunction

__all__ = ["INGESTION_TIME", "Backend", "BatchCommit", "BatchWriter", "CompiledQuery",
           "EngineProfile", "SelectFailed"]


@dataclass
class BatchCommit:
    """What one committed batch did: rows inserted and rows dropped as duplicates, per table.

    ``duplicate_batch`` is true when the batch id had already been committed: nothing was
    written and ``inserted`` holds the counts of the first commit.
    """

    batch_id: str
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    duplicate_batch: bool = False


@dataclass
class EngineProfile:
    """What the engine reports about one query it ran (0 where it cannot tell).

    ``cpu_time``: seconds of CPU the engine's threads spent on the query; ``rows_scanned``:
    rows read from stored tables; ``bytes_scanned``: bytes of column data those scans read;
    ``peak_memory``: the engine's peak buffer memory while the query ran, in bytes;
    ``spilled``: peak bytes written to the temp (spill) directory; ``profiled``: whether
    the engine's profiler was on (otherwise the other figures are 0)."""

    cpu_time: float = 0.0
    rows_scanned: int = 0
    bytes_scanned: int = 0
    peak_memory: int = 0
    spilled: int = 0
    profiled: bool = False


class BatchWriter(ABC):
    """An open batch (one transaction); holds the backend's write lock until it ends."""

    previous: BatchCommit | None = None

    @abstractmethod
    def insert(self, name: str, data: pa.Table, keys: Sequence[str] | None = None) -> int:
        """Insert coerced rows; returns the rows inserted (the rest were duplicates)."""

    @abstractmethod
    def commit(self) -> BatchCommit: ...

    @abstractmethod
    def rollback(self) -> None: ...

    # Files read by the engine itself (optional: a backend that cannot says so with None)

    def readable(self, path: Path) -> AbstractContextManager[str | None]:
        """While open, a name under which this batch's SQL can read the file ``path``
        (None: the engine cannot read it, and rows must come as Arrow)."""
        return nullcontext(None)

    def select(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a (small) query of this batch's, e.g. over a :meth:`readable` file;
        :class:`SelectFailed` if the engine fails it."""
        raise NotImplementedError

    def insert_select(self, name: str, sql: str, keys: Sequence[str] | None = None) -> int:
        """Insert the rows of the SELECT ``sql`` (the table's columns, by name) as
        :meth:`insert` inserts Arrow; returns the rows inserted (the rest were duplicates).

        Raises :class:`SelectFailed` if the engine fails it (bad input the SELECT could not
        read, or refused), or if its rows repeat each other's ``keys`` (the one to keep is the
        first, and a SELECT's rows have no order): the batch must then be rolled back.
        """
        raise NotImplementedError


    def inserted_rows(self, name: str) -> pa.Table:
        """The rows of ``name`` this batch has inserted so far (what :meth:`insert_select`
        stored, for whoever needs the batch as Arrow: continuous rules)."""
        raise NotImplementedError


class SelectFailed(HuntsmanError):
    """The engine could not run an :meth:`BatchWriter.insert_select`; the batch is spoiled."""


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
    def begin_batch(self, batch_id: str) -> BatchWriter:
        """Start one batch: a transaction that takes Arrow inserts into any tables.

        Idempotent: if ``batch_id`` was already committed the writer's ``previous`` holds what
        that commit did and nothing may be written. A row whose ``keys`` columns (all
        non-empty) equal those of a stored row — or of an earlier row of the same batch — is
        dropped as a duplicate. ``commit()`` returns only once the transaction is durable.
        """

    def commit_batch(self, data: Mapping[str, pa.Table], batch_id: str,
                     keys: Mapping[str, Sequence[str]] | None = None) -> BatchCommit:
        """Append coerced Arrow batches to several tables in one transaction."""
        writer = self.begin_batch(batch_id)
        if writer.previous is not None:
            return writer.previous
        try:
            for name, tbl in data.items():
                writer.insert(name, tbl, (keys or {}).get(name))
        except BaseException:
            writer.rollback()
            raise
        return writer.commit()

    @abstractmethod
    def delete_older_than(self, name: str, column: str, cutoff: datetime) -> int:
        """Delete the rows of ``name`` whose ``column`` is before ``cutoff``; returns the count."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A value of the store's own small key/value settings (retention, tenant facts)."""

    @abstractmethod
    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or with ``None`` remove) a setting; committed at once."""

    @abstractmethod
    def execute(self, sql: str, views: Mapping[str, pa.Table] | None = None) -> pa.Table:
        """Run compiled SQL and return Arrow; ``views`` are Arrow tables the SQL reads by name
        (``externaldata`` inputs), visible to this query only."""

    @abstractmethod
    def close(self) -> None: ...

    external_dirs: Sequence[str] = ()
    """Directories ``externaldata`` may read (empty: externaldata is refused)."""
    external_loader: Callable[[ExternalInput], pa.Table] | None = None
    """Reads one externaldata input (set by the store, which owns coercion)."""

    def compile(self, kql: str, now: object = None, *,
                functions: Sequence[StoredFunction] | None = None,
                window: tuple[datetime | None, datetime | None] | None = None) -> CompiledQuery:
        """Compile KQL against this backend's tables; ``functions`` are the tenant's stored
        functions (bound like ``let`` declarations before the query), ``window`` restricts
        every stored table read to rows with ``Timestamp`` in ``[start, end)``."""
        tables = self.tables()
        return compile_kql(kql, tables.get, lambda: sorted(tables), now,  # type: ignore[arg-type]
                           self.dialect, probe=self.probe, external_dirs=self.external_dirs,
                           functions=functions, window=window)

    def external_views(self, compiled: CompiledQuery) -> dict[str, pa.Table]:
        if not compiled.external_inputs:
            return {}
        if self.external_loader is None:
            raise UnsupportedError("externaldata: this store cannot load external files")
        return {i.view: self.external_loader(i) for i in compiled.external_inputs}

    def run(self, compiled: CompiledQuery) -> pa.Table:
        """Run a compiled query, loading its externaldata inputs first."""
        return self.execute(compiled.sql, self.external_views(compiled))

    def run_measured(self, compiled: CompiledQuery, sql: str | None = None, *,
                     timeout: float | None = None) -> tuple[pa.Table, EngineProfile]:
        """Run a compiled query (or ``sql``, a rewrite of it such as a row cap) and measure it.

        ``timeout`` seconds cancels the engine query and raises ``QueryTimeoutError``. This
        default measures nothing and cannot cancel; engines override it (see DuckDB's)."""
        if timeout is not None:
            raise UnsupportedError(f"the {self.dialect} backend cannot enforce a query timeout")
        return self.execute(sql or compiled.sql, self.external_views(compiled)), EngineProfile()

    def probe(self, compiled: CompiledQuery) -> list[tuple[object, ...]]:
        """Run a small query while compiling (bag_unpack/pivot discover their columns)."""
        table = self.run(compiled)
        columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
        return list(zip(*columns, strict=True)) if columns else []
