"""The embedded DuckDB backend (the reference): one database (file or memory) per store.

Connections are opened with external access disabled and the configuration locked, so a
compiled query can reach nothing but the tables of its own database, and one spool directory
(``<data dir>/.tmp/<store name>-ingest``) into which ingestion hard-links the NDJSON files
it has the engine read itself (``BatchWriter.readable``). Writes go through one
connection under a lock, each batch in one transaction; queries run on cursors of their own,
so that neither ingestion nor retention blocks them (DuckDB's MVCC gives each a snapshot).

Queries run on a pool of connections opened (and given DuckDB's profiler, which is a
per-connection setting) before the configuration is locked; each call takes one, so several
threads may query at once, and a timer interrupts that connection when a query overruns its
timeout. DuckDB spills to ``<data dir>/.tmp/<store name>`` (a private temporary directory
for an in-memory store), never into the current directory.

Large batches are stored in ``Timestamp`` order so that DuckDB's zone maps (min/max per row
group) let ``Timestamp > ago(...)`` skip the row groups that are out of range.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from huntsman.backends.base import (
    Backend,
    BatchCommit,
    BatchWriter,
    EngineProfile,
    SelectFailed,
)
from huntsman.backends.duckdb.udfs import register_udfs
from huntsman.compiler.compiler import INGESTION_TIME, CompiledQuery
from huntsman.errors import HuntsmanError, QueryTimeoutError, StoreBusyError
from huntsman.kql.functions.network import GEOIP_TABLE, load_geoip_table
from huntsman.kql.types import SQL_TYPES

_CATALOG_TABLE = "__huntsman_columns"
_BATCHES_TABLE = "__huntsman_batches"
_META_TABLE = "__huntsman_meta"
ROW_GROUP_SIZE = 122_880
"""DuckDB's row-group size: zone maps prune whole row groups, so larger batches are sorted."""
QUERY_CONNECTIONS = 8
"""Connections in the query pool: this many queries run at once, later callers wait."""
PROFILER_SETTINGS = ("SET enable_profiling = 'no_output'", "SET profiling_coverage = 'SELECT'")
"""Per-connection profiler settings of the query pool (figures read back per query)."""


def _q(name: str) -> str:
    """Quote an identifier for the few DDL statements built here (names are validated)."""
    return '"' + name.replace('"', '""') + '"'


def _str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _ts_literal(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


class DuckDBBackend(Backend):
    dialect = "duckdb"

    def __init__(self, path: str | Path | None = None, *, memory_limit: str | None = None,
                 threads: int | None = None, profile: bool = True,
                 query_connections: int = QUERY_CONNECTIONS):
        """``profile``: measure every query with DuckDB's profiler (rows and bytes scanned,
        engine CPU, peak memory); ``query_connections``: how many queries may run at once."""
        self.path = str(path) if path else ":memory:"
        self._own_temp: str | None = None
        if path:
            p = Path(path)
            spill = p.parent / ".tmp"
            spill.mkdir(parents=True, exist_ok=True)  # DuckDB creates only the last level
            temp_dir = str(spill / p.stem)
        else:
            temp_dir = self._own_temp = tempfile.mkdtemp(prefix="huntsman-spill-")
        # the one directory the engine may read: files being ingested are linked into it
        spool = Path(temp_dir + "-ingest")
        spool.mkdir(parents=True, exist_ok=True)
        self.spool: Path | None = spool
        config: dict[str, object] = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,
            "error_on_division_by_zero": False,
            "preserve_insertion_order": True,
            "temp_directory": temp_dir,
        }
        if memory_limit:
            config["memory_limit"] = memory_limit
        if threads:
            config["threads"] = threads
        try:
            self.con = duckdb.connect(self.path, config=config)  # type: ignore[arg-type]
        except duckdb.Error as e:
            if "Could not set lock" in str(e):
                holder = re.search(r"\(PID (\d+)\)", str(e))
                raise StoreBusyError(
                    f"the store {self.path} is in use by another process"
                    + (f" (PID {holder.group(1)})" if holder else "")
                    + ": one huntsman server or command at a time may open a tenant's store "
                      "(stop the other one, or go through its server: it runs queries, and "
                      "POST /api/ingest takes files)") from None
            if "temp_directory" not in str(e) and "different configuration" not in str(e):
                raise
            # the same file opened again in this process: DuckDB shares its (locked) instance
            config.pop("temp_directory")
            self.con = duckdb.connect(self.path, config=config)  # type: ignore[arg-type]
        register_udfs(self.con)  # parse_xml, parse_user_agent, series_outliers... (udfs.py)
        self.profiled = False
        self._pool: queue.LifoQueue[duckdb.DuckDBPyConnection] = queue.LifoQueue()
        # datetimes are UTC whatever the machine's zone; then nothing can be changed any more
        try:
            self.con.execute(f"SET allowed_directories = [{_str(str(spool) + os.sep)}]")
            self.con.execute("SET enable_external_access = false")
            for stale in spool.iterdir():  # links left by a crash
                stale.unlink(missing_ok=True)
            self.con.execute("SET GLOBAL TimeZone = 'UTC'")
            self.con.execute("SET enable_progress_bar = false")
            for _ in range(max(1, query_connections)):
                cur = self.con.cursor()
                for setting in PROFILER_SETTINGS if profile else ():
                    cur.execute(setting)
                self._pool.put(cur)
            self.profiled = profile
            self.con.execute("SET lock_configuration = true")
        except duckdb.Error:
            # the same file opened again in this process shares the locked instance: its
            # connections cannot be given the profiler any more
            row = self.con.execute("SELECT current_setting('TimeZone'), "
                                   "current_setting('lock_configuration'), "
                                   "current_setting('enable_external_access')").fetchone()
            if row is None or row[0] != "UTC" or not row[1] or row[2]:
                raise
            self.profiled = False
            self.spool = None  # (another opening's directory is the readable one)
            while self._pool.qsize() < max(1, query_connections):
                self._pool.put(self.con.cursor())
        self.lock = threading.RLock()
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {_q(_CATALOG_TABLE)} (tbl VARCHAR, "
                         f"ord INTEGER, name VARCHAR, ktype VARCHAR)")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {_q(_BATCHES_TABLE)} (batch_id VARCHAR "
                         f"PRIMARY KEY, committed_at TIMESTAMP DEFAULT current_timestamp, "
                         f"counts VARCHAR)")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {_q(_META_TABLE)} (key VARCHAR PRIMARY KEY, "
                         f"value VARCHAR)")
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

    # ------------------------------------------------------------ writes

    def append(self, name: str, data: pa.Table) -> int:
        with self.lock:
            self.con.execute("BEGIN")
            try:
                n = self._insert(name, data, None)
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
        return n

    def begin_batch(self, batch_id: str) -> BatchWriter:
        return _DuckDBBatch(self, batch_id)

    def _insert(self, name: str, data: pa.Table, keys: Sequence[str] | None) -> int:
        """INSERT one coerced batch inside the caller's transaction; returns rows inserted."""
        cols = self._tables[name]
        if data.num_rows == 0:
            return 0
        types = dict(cols)
        key = [k for k in (keys or ()) if k in types and k in data.column_names]
        if key:
            data = _first_per_key(data, key, types)
        if (data.num_rows >= ROW_GROUP_SIZE and types.get("Timestamp") == "datetime"
                and "Timestamp" in data.column_names):
            data = _sorted_by_time(data)
        view = "__ingest_batch"
        # in several record batches, so that DuckDB inserts them in parallel
        size = max(2048, -(-data.num_rows // 16))
        if any(len(c) > size for c in data.column(0).chunks):
            data = pa.Table.from_batches(data.to_batches(max_chunksize=size), schema=data.schema)
        self.con.register(view, data)
        try:
            select = ", ".join(
                f"CAST(b.{_q(c)} AS {SQL_TYPES[t]})" if t in ("dynamic", "guid")
                else f"b.{_q(c)}" for c, t in cols)
            targets = ", ".join(_q(c) for c, _ in cols)
            where = ""
            if key:
                where = self._dedup_clause(name, data, key, types)
            res = self.con.execute(f"INSERT INTO {_q(name)} ({targets}) SELECT {select} "
                                   f"FROM {_q(view)} AS b {where}").fetchone()
        finally:
            self.con.unregister(view)
        return int(res[0]) if res else 0

    def _dedup_clause(self, name: str, data: pa.Table, key: list[str],
                      types: dict[str, str]) -> str:
        """Skip rows whose key is already stored (by an earlier batch or an earlier insert of
        this one); rows repeated within one insert were dropped by :func:`_first_per_key`."""
        present = " AND ".join(f"b.{_q(k)} IS NOT NULL" + (
            f" AND b.{_q(k)} <> ''" if types[k] == "string" else "") for k in key)
        match = " AND ".join(f"t.{_q(k)} = b.{_q(k)}" for k in key)
        if "Timestamp" in key:
            lo, hi = pc.min_max(data.column("Timestamp")).values()
            if lo.is_valid and hi.is_valid:
                # constant bounds, so that the zone maps prune the stored side of the check
                match += (f" AND t.\"Timestamp\" BETWEEN {_ts_literal(lo.as_py())} "
                          f"AND {_ts_literal(hi.as_py())}")
        return (f"WHERE NOT ({present} AND EXISTS (SELECT 1 FROM {_q(name)} AS t "
                f"WHERE {match}))")

    def delete_older_than(self, name: str, column: str, cutoff: datetime) -> int:
        if name not in self._tables:
            raise HuntsmanError(f"unknown table '{name}'")
        if column != INGESTION_TIME and column not in dict(self._tables[name]):
            raise HuntsmanError(f"table '{name}' has no column '{column}'")
        with self.lock:
            row = self.con.execute(f"DELETE FROM {_q(name)} WHERE {_q(column)} < "
                                   f"{_ts_literal(cutoff)}").fetchone()
        return int(row[0]) if row else 0

    def get_meta(self, key: str) -> str | None:
        cur = self.con.cursor()
        try:
            row = cur.execute(f"SELECT value FROM {_q(_META_TABLE)} WHERE key = ?",
                              [key]).fetchone()
        finally:
            cur.close()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        with self.lock:
            if value is None:
                self.con.execute(f"DELETE FROM {_q(_META_TABLE)} WHERE key = ?", [key])
            else:
                self.con.execute(f"INSERT OR REPLACE INTO {_q(_META_TABLE)} VALUES (?, ?)",
                                 [key, value])

    def meta_items(self, prefix: str = "") -> dict[str, str]:
        cur = self.con.cursor()
        try:
            rows = cur.execute(f"SELECT key, value FROM {_q(_META_TABLE)} WHERE "
                               f"starts_with(key, ?)", [prefix]).fetchall()
        finally:
            cur.close()
        return {str(k): str(v) for k, v in rows}

    def batch_ids(self) -> list[str]:
        """The ids of every committed batch, oldest first."""
        return [str(r[0]) for r in self.con.cursor().execute(
            f"SELECT batch_id FROM {_q(_BATCHES_TABLE)} ORDER BY committed_at, batch_id"
        ).fetchall()]

    # ------------------------------------------------------------ reads

    def execute(self, sql: str, views: Mapping[str, pa.Table] | None = None) -> pa.Table:
        if GEOIP_TABLE in sql:
            self._ensure_geoip()
        cur = self.con.cursor()
        try:
            for name, table in (views or {}).items():
                cur.register(name, table)
            return cur.sql(sql).to_arrow_table()
        finally:
            cur.close()

    def run_measured(self, compiled: CompiledQuery, sql: str | None = None, *,
                     timeout: float | None = None) -> tuple[pa.Table, EngineProfile]:
        """Run on a pooled connection, read its profile back, and interrupt it past ``timeout``
        seconds (raising :class:`QueryTimeoutError`; the connection stays usable)."""
        sql = sql or compiled.sql
        if GEOIP_TABLE in sql:
            self._ensure_geoip()
        views = self.external_views(compiled)
        started = time.perf_counter()
        try:
            con = self._pool.get(timeout=timeout)
        except queue.Empty:
            raise QueryTimeoutError(
                f"The query waited longer than its time limit of {_seconds(timeout)} for a "
                f"free connection (too many queries at once); try again", "timeout") from None
        try:
            for name, table in views.items():
                con.register(name, table)
            left = None if timeout is None else timeout - (time.perf_counter() - started)
            if left is not None and left <= 0:
                raise QueryTimeoutError(
                    f"The query waited its whole time limit of {_seconds(timeout)} for a free "
                    f"connection (too many queries at once); try again", "timeout")
            guard = _Deadline(con, left)
            try:
                with guard:
                    result = con.sql(sql).to_arrow_table()
            except duckdb.InterruptException:
                if not guard.fired:
                    raise
                raise QueryTimeoutError(
                    f"The query was cancelled after running longer than its time limit of "
                    f"{_seconds(timeout)}; narrow it with a time filter, fewer rows or "
                    f"columns, or summarize earlier", "timeout") from None
            profile = _read_profile(con) if self.profiled else EngineProfile()
            return result, profile
        finally:
            for name in views:
                with contextlib.suppress(duckdb.Error):
                    con.unregister(name)
            self._pool.put(con)

    def _ensure_geoip(self) -> None:
        """geo_info_from_ip_address() reads a table of IP ranges, built from the bundled DB-IP
        database on first use (cached as Arrow under $HUNTSMAN_CACHE_DIR or ~/.cache)."""
        if getattr(self, "_geoip_ready", False):
            return
        cache = os.environ.get("HUNTSMAN_CACHE_DIR") or str(Path.home() / ".cache" / "huntsman")
        with self.lock:
            load_geoip_table(self.con, cache_dir=cache)
            self._geoip_ready = True

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait().close()
        self.con.close()
        if self._own_temp:
            shutil.rmtree(self._own_temp, ignore_errors=True)
        if self.spool is not None:
            shutil.rmtree(self.spool, ignore_errors=True)


class _Deadline:
    """Interrupts a connection's running query once ``seconds`` have passed (None: never).

    ``fired`` tells an interruption by the deadline from any other. DuckDB clears an interrupt
    when a query starts, so one sent just before the engine began would be lost: once due, the
    interrupt is repeated every ``REPEAT`` seconds until the query has ended. None is sent
    after that. One shared watchdog thread keeps every deadline (starting a timer thread per
    query cost each query a thread start, about 2 ms on a busy machine)."""

    REPEAT = 0.05

    def __init__(self, con: duckdb.DuckDBPyConnection, seconds: float | None):
        self.con: duckdb.DuckDBPyConnection | None = con
        self.seconds = seconds
        self.fired = False
        self._running = False
        self._lock = threading.Lock()

    def _fire(self) -> bool:
        """Interrupt the query if it still runs; whether it did (then it is repeated)."""
        with self._lock:
            if not self._running or self.con is None:
                return False
            self.fired = True
            self.con.interrupt()
            return True

    def __enter__(self) -> _Deadline:
        self._running = True
        if self.seconds is not None:
            _WATCHDOG.add(time.monotonic() + max(self.seconds, 0.0), self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._running = False
            self.con = None  # an ended deadline waiting in the heap keeps no connection


class _Watchdog:
    """The thread firing due deadlines, earliest first. Ended deadlines are left in the heap
    until due (or until the heap is mostly ended ones, then it is compacted)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def add(self, due: float, deadline: _Deadline) -> None:
        with self._cond:
            if len(self._heap) > 1024:
                live = [e for e in self._heap if e[2]._running]
                if len(live) * 4 < len(self._heap):
                    heapq.heapify(live)
                    self._heap = live
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="huntsman-deadlines",
                                                daemon=True)
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._cond.notify()  # due before what the watchdog waits for

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, deadline = heapq.heappop(self._heap)
                    if deadline._fire():
                        self._seq += 1
                        heapq.heappush(self._heap, (now + deadline.REPEAT, self._seq, deadline))
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG = _Watchdog()


def _seconds(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:g} second{'' if value == 1 else 's'}"


def _read_profile(con: duckdb.DuckDBPyConnection) -> EngineProfile:
    """The figures of the connection's last query, from DuckDB's profiler (JSON)."""
    try:
        info = json.loads(con.get_profiling_information())
    except (duckdb.Error, ValueError):
        return EngineProfile()
    q = info.get("query") or {}
    system = info.get("system") or {}
    scanned = 0
    stack = list(info.get("operator") or [])
    while stack:
        node = stack.pop()
        # scans of stored tables only (not range/datatable/externaldata sources)
        if node.get("type") == "TABLE_SCAN" and "Table" in (node.get("extra_info") or {}):
            scanned += int(node.get("intermediate_size_bytes") or 0)
        stack.extend(node.get("children") or [])
    return EngineProfile(
        cpu_time=float(q.get("cpu_time") or 0.0),
        rows_scanned=int(q.get("total_rows_scanned") or 0),
        bytes_scanned=scanned,
        peak_memory=int(system.get("peak_buffer_memory") or 0),
        spilled=int(system.get("peak_temp_dir_size") or 0),
        profiled=True)


class _DuckDBBatch(BatchWriter):
    def __init__(self, backend: DuckDBBackend, batch_id: str):
        self.backend = backend
        self.result = BatchCommit(batch_id)
        self.open = False
        backend.lock.acquire()
        try:
            con = backend.con
            row = con.execute(f"SELECT counts FROM {_q(_BATCHES_TABLE)} WHERE batch_id = ?",
                              [batch_id]).fetchone()
            if row is not None:
                self.previous = BatchCommit(batch_id, {k: int(v) for k, v in
                                                       json.loads(row[0]).items()},
                                            duplicate_batch=True)
                backend.lock.release()
                return
            con.execute("BEGIN")
            self.open = True
        except BaseException:
            backend.lock.release()
            raise

    def insert(self, name: str, data: pa.Table, keys: Sequence[str] | None = None) -> int:
        if not self.open:
            raise HuntsmanError("this batch is no longer open")
        n = self.backend._insert(name, data, keys)
        self.result.inserted[name] = self.result.inserted.get(name, 0) + n
        self.result.duplicates[name] = self.result.duplicates.get(name, 0) + data.num_rows - n
        return n

    @contextlib.contextmanager
    def readable(self, path: Path) -> Iterator[str | None]:
        """The file hard-linked into the store's spool directory, the one directory the
        engine may read (no copy; None when it is on another file system or may not be
        linked)."""
        spool = self.backend.spool
        if spool is None:
            yield None
            return
        link = spool / f"{uuid.uuid4().hex}.input"
        try:
            os.link(path, link)
        except OSError:
            yield None
            return
        try:
            yield str(link)
        finally:
            link.unlink(missing_ok=True)

    def select(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.open:
            raise HuntsmanError("this batch is no longer open")
        with _failing_as_select():
            return self.backend.con.execute(sql).fetchall()

    def insert_select(self, name: str, sql: str, keys: Sequence[str] | None = None) -> int:
        if not self.open:
            raise HuntsmanError("this batch is no longer open")
        con = self.backend.con
        cols = self.backend._tables[name]
        types = dict(cols)
        key = [k for k in (keys or ()) if k in types]
        select = ", ".join(f"CAST(b.{_q(c)} AS {SQL_TYPES[t]})" if t in ("dynamic", "guid")
                           else f"b.{_q(c)}" for c, t in cols)
        order = ' ORDER BY b."Timestamp"' if types.get("Timestamp") == "datetime" else ""
        with _failing_as_select():
            rows = con.execute(
                f"INSERT INTO {_q(name)} ({', '.join(_q(c) for c, _ in cols)}) "
                f"SELECT {select} FROM ({sql}) AS b{order}").fetchall()
        repeats = _delete_repeats(con, name, key, types) if key else 0
        n = int(rows[0][0]) - repeats
        self.result.inserted[name] = self.result.inserted.get(name, 0) + n
        self.result.duplicates[name] = self.result.duplicates.get(name, 0) + repeats
        return n

    def inserted_rows(self, name: str) -> pa.Table:
        if not self.open:
            raise HuntsmanError("this batch is no longer open")
        # as coerced Arrow has them (dynamic and guid as text)
        cols = ", ".join(f"CAST({_q(c)} AS VARCHAR) AS {_q(c)}" if t in ("dynamic", "guid")
                         else _q(c) for c, t in self.backend._tables[name])
        # (rows of this transaction: see _delete_repeats)
        return self.backend.con.sql(
            f"SELECT {cols} FROM {_q(name)} WHERE {_q(INGESTION_TIME)} = "
            f"CAST(current_timestamp AS TIMESTAMP)").to_arrow_table()

    def commit(self) -> BatchCommit:
        if not self.open:
            raise HuntsmanError("this batch is no longer open")
        con = self.backend.con
        try:
            con.execute(f"INSERT INTO {_q(_BATCHES_TABLE)} (batch_id, counts) VALUES (?, ?)",
                        [self.result.batch_id, json.dumps(self.result.inserted)])
            con.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self._end()
        return self.result

    def rollback(self) -> None:
        if self.open:
            try:
                self.backend.con.execute("ROLLBACK")
            finally:
                self._end()

    def _end(self) -> None:
        self.open = False
        self.backend.lock.release()


def _first_per_key(data: pa.Table, key: Sequence[str], types: Mapping[str, str]) -> pa.Table:
    """The rows of ``data`` without those repeating the ``key`` of an earlier row of it.

    Rows with a null (or empty string) key column are never duplicates, as in the check
    against stored rows. One hash aggregation: cheap next to the insert.
    """
    present: pa.ChunkedArray | pa.Array | None = None
    for k in key:
        col = data.column(k)
        ok = pc.is_valid(col)
        if types.get(k) == "string":
            ok = pc.and_(ok, pc.not_equal(col, ""))
        present = ok if present is None else pc.and_(present, ok)
    assert present is not None
    present = pc.fill_null(present, False)
    index = pa.array(np.arange(data.num_rows, dtype=np.int64))
    keyed = pa.table({k: _plain(data.column(k)) for k in key}).append_column("__i", index)
    keyed = keyed.filter(present)
    first = keyed.group_by(list(key), use_threads=False).aggregate([("__i", "min")])
    if first.num_rows == keyed.num_rows:
        return data
    keep = pc.or_(pc.invert(present), pc.is_in(index, value_set=first.column("__i_min")))
    return data.filter(keep)


@contextlib.contextmanager
def _failing_as_select() -> Iterator[None]:
    """The engine's failures as :class:`SelectFailed`; Ctrl-C (which DuckDB's Python client
    reports as a RuntimeError) as the KeyboardInterrupt it is, not a reason to try again."""
    try:
        yield
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except duckdb.Error as e:
        raise SelectFailed(str(e)) from None
    except UnicodeDecodeError:  # an error message quoting input cut inside a character
        raise SelectFailed("the engine failed on the input (its message was not UTF-8)") from None
    except RuntimeError as e:
        if "interrupted" in str(e).lower():
            raise KeyboardInterrupt from None
        raise


def _delete_repeats(con: duckdb.DuckDBPyConnection, name: str, key: list[str],
                    types: Mapping[str, str]) -> int:
    """Delete the rows this transaction inserted into ``name`` that repeat the ``key`` of a
    stored row, as :meth:`DuckDBBackend._dedup_clause` keeps them out of an insert; returns
    how many. Rows repeating each other raise :class:`SelectFailed`: the rule keeps the first,
    and a SELECT's rows have no order.

    The rows of this transaction are those whose ``ingestion_time`` is its start (the value
    of ``current_timestamp`` in it; zone maps skip the older row groups). One count tells
    whether any key is held twice; only then are the repeats deleted."""
    present = " AND ".join(f"{{t}}.{_q(k)} IS NOT NULL" + (
        f" AND {{t}}.{_q(k)} <> ''" if types.get(k) == "string" else "") for k in key)
    mine = f"{{t}}.{_q(INGESTION_TIME)} = CAST(current_timestamp AS TIMESTAMP)"
    cols = ", ".join(_q(k) for k in key)
    new = (f"(SELECT DISTINCT {cols} FROM {_q(name)} AS x WHERE "
           f"{mine.format(t='x')} AND {present.format(t='x')})")
    match = " AND ".join(f"t.{_q(k)} = n.{_q(k)}" for k in key)
    where = present.format(t="t")
    if "Timestamp" in key:
        rows = con.execute(f"SELECT min(\"Timestamp\"), max(\"Timestamp\") FROM {_q(name)} AS x "
                           f"WHERE {mine.format(t='x')} AND {present.format(t='x')}").fetchall()
        lo, hi = rows[0]
        if lo is None:
            return 0
        # constant bounds, so that the zone maps prune the stored side
        where += f" AND t.\"Timestamp\" BETWEEN {_ts_literal(lo)} AND {_ts_literal(hi)}"
    source = f"{_q(name)} AS t SEMI JOIN {new} AS n ON {match} WHERE {where}"
    counts = con.execute(f"SELECT count(*), count(*) FILTER ({mine.format(t='t')}), "
                         f"(SELECT count(*) FROM {new}) FROM {source}").fetchall()
    holding, inserted, distinct = counts[0]
    if distinct < inserted:
        raise SelectFailed(f"{inserted - distinct} rows repeat the {', '.join(key)} of "
                           f"another row of theirs")
    if holding == inserted:
        return 0  # each key is held by one row: its new one
    parts = ", ".join(f"t.{_q(k)}" for k in key)
    row = con.execute(
        f"DELETE FROM {_q(name)} WHERE rowid IN (SELECT r FROM (SELECT t.rowid AS r, "
        f"t.{_q(INGESTION_TIME)} AS it, row_number() OVER (PARTITION BY {parts} "
        f"ORDER BY t.{_q(INGESTION_TIME)}) AS rn FROM {source}) WHERE rn > 1 AND "
        f"it = CAST(current_timestamp AS TIMESTAMP))").fetchall()
    return int(row[0][0]) if row else 0


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary-encoded column decoded (chunks with differing dictionaries cannot be
    grouped on)."""
    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


def _sorted_by_time(data: pa.Table) -> pa.Table:
    """The batch in ``Timestamp`` order (stable), unless it (nearly) already is.

    Telemetry mostly arrives in time order; a batch with at most 1% of its neighbours out of
    order already gives tight zone maps, and sorting it would only cost time.
    """
    arr = data.column("Timestamp").combine_chunks()
    if len(arr) > 1:
        backwards = pc.sum(pc.cast(pc.less(arr[1:], arr[:-1]), pa.int64())).as_py() or 0
        if arr.null_count == 0 and backwards <= len(arr) // 100:
            return data
    order = pc.sort_indices(data, sort_keys=[("Timestamp", "ascending")])
    return data.take(order)
