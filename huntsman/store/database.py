"""A telemetry store with every Advanced Hunting table, queried with KQL: :class:`Database`.

It lives here (not in ``huntsman.api``, which re-exports it) so that the tenant store can hand
out databases: ``Store(data_dir).tenant("contoso")`` is a :class:`Database`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from huntsman.backends.base import Backend, BatchCommit, BatchWriter
from huntsman.backends.duckdb import DuckDBBackend
from huntsman.errors import HuntsmanError, IngestError, QueryExecutionError, QueryTimeoutError
from huntsman.schema import catalog, normalize_type
from huntsman.store.external import load_external
from huntsman.store.ingest import IngestReport, OnError
from huntsman.store.ingest import ingest as ingest_data

if TYPE_CHECKING:
    from collections.abc import Sequence

    from huntsman.compiler.compiler import CompiledQuery
    from huntsman.kql.stored import StoredFunction

log = logging.getLogger("huntsman.store")
DEFAULT_TENANT = "default"
DEFAULT_RETENTION_DAYS = 180
"""How long rows are kept unless a tenant says otherwise (per tenant, per table)."""
_RETENTION_KEY = "retention:"


@dataclass
class QueryStats:
    """What one query cost. Times are seconds, sizes bytes.

    ``elapsed`` end to end, ``compile_time`` KQL to SQL, ``execute_time`` the engine run and
    fetch; ``cpu_time`` the CPU the query consumed: the compiling thread's CPU plus the
    engine's. DuckDB runs a query on worker threads of its own, so the calling thread's
    clock misses nearly all of it; the engine's part is the whole process's CPU over the
    run, which is exact for a query running alone but also counts queries running at the
    same time, capped by the profiler's operator time summed over threads (which counts
    only this query but includes time its threads waited for a core): the lesser of two
    over-estimates. ``rows`` returned (at most the
    row cap), ``bytes`` of the returned Arrow data; ``rows_scanned`` read from stored tables
    and ``bytes_scanned`` of column data those scans produced (uncompressed); ``peak_memory``
    the engine's peak buffer memory during the query (shared with queries running at the
    same time) and ``spilled`` the peak written to its temp directory; ``profiled`` says
    whether the engine's profiler supplied those figures (0 otherwise). ``sql`` is the SQL
    that ran, ``tables`` the stored tables read; ``truncated`` whether the row cap cut rows.
    """

    elapsed: float = 0.0
    compile_time: float = 0.0
    execute_time: float = 0.0
    cpu_time: float = 0.0
    rows: int = 0
    bytes: int = 0
    rows_scanned: int = 0
    bytes_scanned: int = 0
    peak_memory: int = 0
    spilled: int = 0
    profiled: bool = False
    truncated: bool = False
    sql: str = ""
    tables: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return asdict(self)


class QueryResult:
    """A query's result: Kusto-typed columns and rows (datetimes are timezone-aware UTC)."""

    def __init__(self, table: pa.Table, compiled: CompiledQuery, stats: QueryStats,
                 truncated: bool = False):
        self.columns: list[tuple[str, str]] = compiled.columns
        self.render = compiled.render
        self.stats = stats
        self.sql = compiled.sql
        self.truncated = truncated
        """True when the row cap (``max_rows``) cut the result: more rows existed."""
        self._raw = table.rename_columns([c for c, _ in compiled.columns])
        self._rows: list[tuple[Any, ...]] | None = None

    def __len__(self) -> int:
        return self._raw.num_rows

    def __repr__(self) -> str:
        return f"<QueryResult {len(self)} rows × {len(self.columns)} columns>"

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            # convert column by column, and only the types whose Python form differs
            cols = []
            for i, (_, t) in enumerate(self.columns):
                values = self._raw.column(i).to_pylist()
                if t in ("datetime", "timespan", "dynamic", "guid", "decimal"):
                    conv = _py_converter(t)
                    values = [conv(v) for v in values]
                cols.append(values)
            self._rows = list(zip(*cols, strict=True)) if cols else []
        return self._rows

    def to_dicts(self) -> list[dict[str, Any]]:
        names = [c for c, _ in self.columns]
        return [dict(zip(names, r, strict=True)) for r in self.rows]

    def to_arrow(self) -> pa.Table:
        """Arrow with datetimes as UTC timestamps and timespans as durations."""
        arrays = []
        for i, (_, t) in enumerate(self.columns):
            arr = self._raw.column(i)
            if t == "datetime":
                arr = arr.cast(pa.timestamp("us", tz="UTC"))
            elif t == "timespan":
                arr = arr.cast(pa.duration("us"))
            arrays.append(arr)
        return pa.table(arrays, names=[c for c, _ in self.columns])

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()


def _py_converter(ktype: str) -> Any:
    if ktype == "datetime":
        return lambda v: v.replace(tzinfo=UTC) if v is not None else None
    if ktype == "timespan":
        from datetime import timedelta
        return lambda v: timedelta(microseconds=v) if v is not None else None
    if ktype == "dynamic":
        return lambda v: json.loads(v) if v is not None else None
    if ktype == "guid":
        return lambda v: str(v) if v is not None else None
    if ktype == "decimal":
        return lambda v: Decimal(str(v)) if v is not None else None
    return lambda v: v


class Database:
    """A telemetry store with every Advanced Hunting table, queried with KQL."""

    def __init__(self, path: str | Path | None = None, *, memory_limit: str | None = None,
                 threads: int | None = None, backend: Backend | None = None,
                 name: str = DEFAULT_TENANT):
        """In memory (``path`` None), a database file (``*.duckdb``), or a data directory,
        where this is the default tenant's file (``<dir>/default.duckdb``)."""
        self.name = name
        if backend is None:
            file: Path | None = None
            if path is not None:
                p = Path(path)
                if p.suffix in (".duckdb", ".db"):
                    p.parent.mkdir(parents=True, exist_ok=True)
                    file = p
                else:
                    p.mkdir(parents=True, exist_ok=True)
                    file = p / f"{name}.duckdb"
            backend = DuckDBBackend(file, memory_limit=memory_limit, threads=threads)
        self.backend = backend
        self.backend.external_loader = load_external
        self._commit_listeners: list[CommitListener] = []
        for t in catalog().tables.values():
            if t.name not in self.backend.tables():
                self.backend.create_table(t.name, [(c.name, c.type) for c in t.columns])

    def allow_externaldata(self, *directories: str | Path) -> None:
        """Let ``externaldata`` read local files under these directories (nothing by default;
        URLs are always refused)."""
        self.backend.external_dirs = tuple(str(Path(d).resolve()) for d in directories)

    # ------------------------------------------------------------ catalog

    def tables(self) -> dict[str, list[tuple[str, str]]]:
        """Every table with its columns and Kusto types."""
        return dict(self.backend.tables())

    def has_table(self, name: str) -> bool:
        return name in self.backend.tables()

    def create_table(self, name: str, columns: list[tuple[str, str]]) -> None:
        """Create a custom table: ``db.create_table("MyLogs", [("Timestamp", "datetime")])``."""
        if not name or not all(ch.isalnum() or ch in "_-." for ch in name):
            raise HuntsmanError(f"invalid table name {name!r}: use letters, digits, _ - .")
        if not columns:
            raise HuntsmanError(f"table '{name}' needs at least one column")
        norm: list[tuple[str, str]] = []
        seen: set[str] = set()
        for cname, ctype in columns:
            if cname.lower() in seen:
                raise HuntsmanError(f"table '{name}': column names must be unique "
                                    f"(ignoring case): '{cname}'")
            seen.add(cname.lower())
            try:
                norm.append((cname, normalize_type(ctype)))
            except ValueError as e:
                raise HuntsmanError(f"table '{name}', column '{cname}': {e}") from None
        self.backend.create_table(name, norm)

    # ------------------------------------------------------------ ingestion

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(database, {table: Arrow rows})`` after each batch :meth:`ingest`
        commits (before ``ingest`` returns), with the rows the batch carried per table (already
        coerced to the schema; rows the store skipped as duplicates included, except from a file
        the engine read itself: its rows are read back as stored). A listener's
        failure is logged, never the ingest's. (Continuous detection rules use this.)"""
        if listener not in self._commit_listeners:
            self._commit_listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        if listener in self._commit_listeners:
            self._commit_listeners.remove(listener)

    def ingest(self, table: str | None, data: Any, *, format: str | None = None,
               batch_id: str | None = None, on_error: OnError = "fail") -> IngestReport:
        """Add rows as one committed batch: a list of dicts, Arrow, or a file path.

        Files are NDJSON (plain or gzip), a JSON array, a Defender streaming-API export
        (``table`` may then be None: each record names its table), CSV or Parquet; ``format``
        names one instead of detecting it. ``batch_id`` makes a re-sent batch a no-op. With
        ``on_error="fail"`` (the default) the first bad record raises :class:`IngestError`
        and nothing is written; with ``"skip"`` the report lists the rejected records.
        The report compares equal to the number of rows accepted.
        """
        listeners = list(self._commit_listeners)
        if not listeners:
            return ingest_data(self.backend, table, data, fmt=format, batch_id=batch_id,
                               on_error=on_error)
        captured: dict[str, list[pa.Table]] = {}
        report = ingest_data(cast(Backend, _CapturingBackend(self.backend, captured)), table,
                             data, fmt=format, batch_id=batch_id, on_error=on_error)
        batch = {name: pa.concat_tables(parts) for name, parts in captured.items()
                 if parts and sum(p.num_rows for p in parts)}
        if batch and not report.duplicate_batch:
            for listener in listeners:
                try:
                    listener(self, batch)
                except Exception:
                    log.exception("a commit listener failed on batch %s", report.batch_id)
        return report

    def load_directory(self, directory: str | Path) -> dict[str, int]:
        """Ingest every ``<Table>.{ndjson,json,jsonl,csv,parquet}[.gz]`` file of a folder."""
        d = Path(directory)
        if not d.is_dir():
            raise IngestError(f"no such directory: {d}")
        counts: dict[str, int] = {}
        for f in sorted(d.iterdir()):
            table = f.name.split(".")[0]
            if not f.is_file() or not self.has_table(table):
                continue
            counts[table] = counts.get(table, 0) + self.ingest(table, f).accepted
        return counts

    # ------------------------------------------------------------ retention

    def retention_days(self, table: str | None = None) -> int:
        """Days rows of ``table`` are kept (its own setting, else the tenant's, else 180)."""
        for key in ([table] if table else []) + ["*"]:
            value = self.backend.get_meta(_RETENTION_KEY + key)
            if value is not None:
                return int(value)
        return DEFAULT_RETENTION_DAYS

    def set_retention(self, days: int | None, table: str | None = None) -> None:
        """Keep rows ``days`` days (for ``table``, or the tenant's default); None resets."""
        if table is not None and not self.has_table(table):
            raise HuntsmanError(f"unknown table '{table}'")
        if days is not None and (not isinstance(days, int) or days < 1):
            raise HuntsmanError(f"retention must be a whole number of days >= 1, not {days!r}")
        self.backend.set_meta(_RETENTION_KEY + (table or "*"),
                              None if days is None else str(days))

    def retention(self) -> dict[str, int]:
        """The retention in days of every table."""
        return {t: self.retention_days(t) for t in sorted(self.tables())}

    def batches(self) -> list[str]:
        """The ids of the batches committed to this store, oldest first."""
        ids = getattr(self.backend, "batch_ids", None)
        return list(ids()) if ids else []

    # ------------------------------------------------------------ queries

    def compile(self, kql: str, now: datetime | None = None, *,
                functions: Sequence[StoredFunction] | None = None,
                window: tuple[datetime | None, datetime | None] | None = None) -> CompiledQuery:
        """Compile KQL to the backend's SQL. ``functions``: stored functions bound before the
        query like ``let`` declarations; ``window=(start, end)``: every stored table read is
        restricted to rows whose ``Timestamp`` is in ``[start, end)`` (None = open)."""
        return self.backend.compile(kql, now, functions=functions, window=window)

    def query(self, kql: str, now: datetime | None = None, *,
              functions: Sequence[StoredFunction] | None = None,
              window: tuple[datetime | None, datetime | None] | None = None,
              timeout: float | None = None, max_rows: int | None = None) -> QueryResult:
        """Run a KQL query and return its result, with what it cost in ``result.stats``.

        ``functions`` and ``window`` are passed to :meth:`compile`. ``timeout`` seconds (for
        compiling and running) cancels the engine's query and raises
        :class:`~huntsman.errors.QueryTimeoutError`; ``max_rows`` caps the rows returned
        (the engine stops after ``max_rows + 1``) and sets ``result.truncated`` when more
        existed. Safe to call from several threads at once.

        >>> db = Database()
        >>> r = db.query("range x from 1 to 10 step 1 | sort by x desc", max_rows=3)
        >>> r.rows, r.truncated, r.stats.rows
        ([(10,), (9,), (8,)], True, 3)
        """
        if timeout is not None and not timeout > 0:
            raise HuntsmanError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                                     or max_rows < 0):
            raise HuntsmanError(f"max_rows must be a whole number >= 0, not {max_rows!r}")
        t0, thread0 = time.perf_counter(), time.thread_time()
        compiled = self.compile(kql, now, functions=functions, window=window)
        compile_cpu = time.thread_time() - thread0
        t1 = time.perf_counter()
        sql = compiled.sql if max_rows is None else _capped_sql(compiled, max_rows + 1,
                                                                self.backend.dialect)
        remaining = None if timeout is None else timeout - (t1 - t0)
        if remaining is not None and remaining <= 0:
            raise QueryTimeoutError(f"The query was cancelled after compiling for longer than "
                                    f"its time limit of {timeout:g} seconds", "timeout")
        cpu1 = time.process_time()
        try:
            table, profile = self.backend.run_measured(compiled, sql, timeout=remaining)
        except QueryTimeoutError:
            raise QueryTimeoutError(
                f"The query was cancelled after running longer than its time limit of "
                f"{timeout:g} seconds; narrow it with a time filter, fewer rows or columns, "
                f"or summarize earlier", "timeout") from None
        except duckdb.Error as e:
            raise QueryExecutionError(_engine_message(e)) from None
        t2, cpu2 = time.perf_counter(), time.process_time()
        truncated = max_rows is not None and table.num_rows > max_rows
        if truncated:
            table = table.slice(0, max_rows)
        engine_cpu = cpu2 - cpu1
        if profile.profiled:
            engine_cpu = min(engine_cpu, profile.cpu_time)
        stats = QueryStats(elapsed=t2 - t0, compile_time=t1 - t0, execute_time=t2 - t1,
                           cpu_time=compile_cpu + engine_cpu, rows=table.num_rows, bytes=table.nbytes,
                           rows_scanned=profile.rows_scanned,
                           bytes_scanned=profile.bytes_scanned,
                           peak_memory=profile.peak_memory, spilled=profile.spilled,
                           profiled=profile.profiled, truncated=truncated, sql=sql,
                           tables=compiled.tables)
        return QueryResult(table, compiled, stats, truncated)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CommitListener = Callable[["Database", dict[str, pa.Table]], None]
"""Called after a batch commits with the batch's rows per table (see ``add_commit_listener``)."""


class _CapturingBackend:
    """The backend as ingestion sees it, keeping what each committed batch inserted."""

    def __init__(self, backend: Backend, captured: dict[str, list[pa.Table]]):
        self._backend = backend
        self._captured = captured

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def begin_batch(self, batch_id: str) -> BatchWriter:
        return _CapturingWriter(self._backend.begin_batch(batch_id), self._captured)


class _CapturingWriter(BatchWriter):
    def __init__(self, writer: BatchWriter, captured: dict[str, list[pa.Table]]):
        self._writer = writer
        self._captured = captured
        self._pending: dict[str, list[pa.Table]] = {}
        self.previous = writer.previous

    def insert(self, name: str, data: pa.Table, keys: Sequence[str] | None = None) -> int:
        n = self._writer.insert(name, data, keys)
        self._pending.setdefault(name, []).append(data)
        return n

    def readable(self, path: Path) -> AbstractContextManager[str | None]:
        return self._writer.readable(path)

    def select(self, sql: str) -> list[tuple[Any, ...]]:
        return self._writer.select(sql)

    def insert_select(self, name: str, sql: str, keys: Sequence[str] | None = None) -> int:
        n = self._writer.insert_select(name, sql, keys)
        # the rows as stored, read back (repeats of stored events are gone already)
        self._pending.setdefault(name, []).append(self._writer.inserted_rows(name))
        return n

    def commit(self) -> BatchCommit:
        result = self._writer.commit()
        for name, parts in self._pending.items():
            self._captured.setdefault(name, []).extend(parts)
        return result

    def rollback(self) -> None:
        self._pending.clear()
        self._writer.rollback()


def _capped_sql(compiled: CompiledQuery, limit: int, dialect: str) -> str:
    """The query's SQL with ``LIMIT limit`` on its outer SELECT.

    The outer SELECT of a compiled query only projects (and orders) its last step, so the
    limit comes after its ORDER BY and keeps the order; a query that already has a LIMIT
    there keeps the smaller of the two."""
    select = compiled.expression
    if not isinstance(select, exp.Select):
        parsed = sqlglot.parse_one(compiled.sql, dialect=dialect)
        inner = exp.Subquery(this=parsed, alias=exp.TableAlias(this=exp.to_identifier("q")))
        return exp.select("*").from_(inner).limit(limit).sql(dialect=dialect)
    if select.args.get("limit") is None and select.args.get("offset") is None:
        return f"{compiled.sql} LIMIT {int(limit)}"  # the usual case: no copy of the tree
    select = select.copy()
    existing = select.args.get("limit")
    if existing is not None:
        current = existing.expression if isinstance(existing, exp.Limit) else None
        if isinstance(current, exp.Literal) and current.is_int:
            limit = min(limit, int(current.this))
        else:
            inner = exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier("q")))
            return exp.select("*").from_(inner).limit(limit).sql(dialect=dialect)
    return select.limit(limit, copy=False).sql(dialect=dialect)


def _engine_message(e: Exception) -> str:
    """A runtime failure in user terms (never the raw SQL)."""
    text = str(e).split("\n")[0]
    if "Conversion Error" in text or "Could not convert" in text:
        return f"A value could not be converted while running the query: {text.split(':', 1)[-1].strip()}"
    if "Out of Memory" in text:
        return "The query ran out of memory; narrow it with a time filter or fewer columns"
    if "Invalid Input Error" in text and "regex" in text.lower():
        return f"Invalid regular expression: {text.split(':', 1)[-1].strip()}"
    if text.startswith(("Binder Error", "Parser Error", "Catalog Error")):
        # the compiler produced SQL the engine rejects: a huntsman bug, not the user's
        return ("internal error: this query compiled to SQL that the engine rejected; "
                f"please report it with the query ({text})")
    return f"The query failed while running: {text}"
