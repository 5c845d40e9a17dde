"""Ingestion: any format → validated, coerced Arrow → one committed, idempotent batch.

Every call is one *batch*: it is committed in one transaction (acknowledged means durable)
and recorded under its batch id, so that re-sending it writes nothing; rows with the same
``ReportId`` + ``Timestamp`` + ``DeviceId`` (the columns of these the table has) as a stored
row or as an earlier row of the same batch are dropped and counted as duplicates.
Validation is vectorized; only the records it cannot accept are looked at one by one, to
accept a rarer form or to say exactly why not.

An NDJSON or streaming-export file is first offered to the engine, which reads, coerces and
inserts it in one statement (:meth:`Ingestion.scan`); a file it cannot read, or with a record
that needs the exact rules, goes the way every other input goes, where three stages overlap:
a thread reads and splits the file, the calling thread coerces chunks (DuckDB on every core),
and an :class:`Inserter` thread writes the coerced parts.

With ``on_error="fail"`` the first bad record raises :class:`IngestError` (with its line)
and nothing is written; with ``"skip"`` the good records are stored and the report lists
every rejected record with its line number and the reason.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from huntsman.backends.base import Backend, BatchWriter, SelectFailed
from huntsman.errors import IngestError
from huntsman.store import fastjson, formats
from huntsman.store.coerce import (
    ALIASES,
    ARROW_TYPES,
    OVERFLOW_COLUMN,
    Coerced,
    Coercer,
    coerce_record,
    coercer,
    rows_to_arrow,
)

OnError = Literal["skip", "fail"]
EVENT_KEY = ("ReportId", "Timestamp", "DeviceId")
"""A row repeating these values (the ones its table has) is a duplicate of a stored row."""
FLUSH_ROWS = 131_072
"""Coerced rows gathered before they are handed to the writer (at least one DuckDB row group,
so that the backend sorts them by time for its zone maps)."""
MAX_LISTED = 10_000
"""Rejections listed one by one in a report (all are counted)."""


@dataclass
class Rejection:
    """A record that was not stored: where it is and why."""

    line: int
    reason: str
    table: str | None = None
    item: int = 0
    source: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", record {self.item}" if self.item else "")
        src = f"{self.source}: " if self.source else ""
        return f"{src}{where}: {self.reason}"


@dataclass
class TableCounts:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    overflow: list[str] = field(default_factory=list)
    """Unknown columns kept in ``AdditionalFields``."""


@dataclass(eq=False)
class IngestReport:
    """What one batch did. ``accepted`` rows are committed; ``duplicates`` were already there.

    For convenience a report compares equal to the number of rows it accepted.
    """

    batch_id: str
    source: str | None = None
    tables: dict[str, TableCounts] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    rejected_unattributed: int = 0
    duplicate_batch: bool = False
    elapsed: float = 0.0
    bytes: int = 0
    engine_read: bool = False
    """The file was read, coerced and inserted by the engine's own reader in one statement."""

    @property
    def accepted(self) -> int:
        return sum(t.accepted for t in self.tables.values())

    @property
    def rejected(self) -> int:
        return sum(t.rejected for t in self.tables.values()) + self.rejected_unattributed

    @property
    def duplicates(self) -> int:
        return sum(t.duplicates for t in self.tables.values())

    def counts(self, table: str) -> TableCounts:
        return self.tables.setdefault(table, TableCounts())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, int):
            return self.accepted == other
        return self is other

    __hash__ = object.__hash__

    def __int__(self) -> int:
        return self.accepted

    def __repr__(self) -> str:
        return (f"<IngestReport {self.batch_id}: {self.accepted} accepted, {self.rejected} "
                f"rejected, {self.duplicates} duplicates>")

    def summary(self) -> str:
        parts = [f"{self.accepted:,} accepted", f"{self.rejected:,} rejected"]
        if self.duplicates:
            parts.append(f"{self.duplicates:,} duplicates skipped")
        if self.duplicate_batch:
            parts = [f"batch {self.batch_id} was already committed: nothing written"]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "source": self.source, "accepted": self.accepted,
            "rejected": self.rejected, "duplicates": self.duplicates,
            "duplicate_batch": self.duplicate_batch, "engine_read": self.engine_read,
            "tables": {k: {"accepted": v.accepted, "rejected": v.rejected,
                           "duplicates": v.duplicates, "overflow": v.overflow}
                       for k, v in sorted(self.tables.items())},
            "rejections": [{"line": r.line, "record": r.item or None, "table": r.table,
                            "reason": r.reason} for r in self.rejections],
        }


def prefetch(chunks: Iterable[formats.Chunk], depth: int = 1) -> Iterator[formats.Chunk]:
    """Read the next chunk(s) on a thread while the current one is coerced and written
    (reading, decompressing and splitting lines overlap with DuckDB's work)."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for c in chunks:
                while not stop.is_set():
                    try:
                        q.put(("chunk", c), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # handed to the consumer
            q.put(("error", e))

    t = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    t.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        t.join(5)


class Inserter:
    """Inserts on a thread of their own: DuckDB writes one flushed part while the next chunks
    are read and coerced (its insert of Arrow runs on one core; coercion on the others).

    At most one part waits while another is written, so memory stays bounded. The first
    failure is raised by the next :meth:`put` or by :meth:`finish`.
    """

    def __init__(self, writer: BatchWriter):
        self.writer = writer
        self.parts: queue.Queue[tuple[str, pa.Table, list[str]] | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="ingest-writer", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            part = self.parts.get()
            if part is None:
                return
            if self.error is None:
                try:
                    self.writer.insert(*part)
                except BaseException as e:  # handed to the ingesting thread
                    self.error = e

    def put(self, table: str, data: pa.Table, key: list[str]) -> None:
        if self.error is not None:
            raise self.error
        self.parts.put((table, data, key))

    def finish(self) -> None:
        """Wait for every part to be written; raise the first failure."""
        self.close()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.thread.is_alive():
            self.parts.put(None)
            self.thread.join()


def event_key(columns: Sequence[tuple[str, str]]) -> list[str]:
    """The de-duplication key of a table: ``ReportId``, ``Timestamp``, ``DeviceId`` it has."""
    names = {c for c, _ in columns}
    if "ReportId" not in names or "Timestamp" not in names:
        return []
    return [k for k in EVENT_KEY if k in names]


class Ingestion:
    """One batch in progress: reads chunks, coerces them, writes them, reports."""

    def __init__(self, backend: Backend, batch_id: str | None = None, on_error: OnError = "fail",
                 source: str | None = None, engine: Coercer | None = None):
        if on_error not in ("skip", "fail"):
            raise IngestError(f"on_error must be 'skip' or 'fail', not {on_error!r}")
        self.backend = backend
        self.on_error = on_error
        self.engine = engine or coercer()
        self.report = IngestReport(batch_id or uuid.uuid4().hex, source)
        self.pending: dict[str, list[pa.Table]] = {}
        self.pending_rows: dict[str, int] = {}
        self.writer: BatchWriter | None = None
        self.inserter: Inserter | None = None
        self.t0 = time.perf_counter()

    # -------------------------------------------------------------- driving

    def run(self, chunks: Iterable[formats.Chunk], scan: ScanFile | None = None
            ) -> IngestReport:
        """Write the batch: ``scan`` first tries the engine's own reader on a file (see
        :meth:`scan`), then the chunks are read, coerced and written."""
        writer = self.begin()
        if writer is None:
            return self.report
        if scan is not None:
            outcome = self.scan(writer, scan)
            if outcome == "committed":
                self.report.elapsed = time.perf_counter() - self.t0
                return self.report
            if outcome == "spoiled":
                writer = self.begin()
                if writer is None:
                    return self.report
        self.writer = writer
        self.inserter = Inserter(writer)
        try:
            for chunk in chunks:
                self.chunk(chunk)
            for name in list(self.pending):
                self.flush(name)
            self.inserter.finish()
            commit = writer.commit()
        except BaseException:
            self.inserter.close()
            writer.rollback()
            raise
        for name, dups in commit.duplicates.items():
            counts = self.report.counts(name)
            counts.duplicates += dups
            counts.accepted -= dups
        self.report.elapsed = time.perf_counter() - self.t0
        return self.report

    def begin(self) -> BatchWriter | None:
        """The batch's writer; None (and the report says so) when it was committed before."""
        writer = self.backend.begin_batch(self.report.batch_id)
        if writer.previous is None:
            return writer
        self.report.duplicate_batch = True
        for name, n in writer.previous.inserted.items():
            self.report.counts(name).duplicates += n
        self.report.elapsed = time.perf_counter() - self.t0
        return None

    def scan(self, writer: BatchWriter, scan: ScanFile) -> Literal["committed", "spoiled",
                                                                    "unread"]:
        """The whole file read, coerced and inserted by the engine in one statement
        (DuckDB's JSON reader: no rows handed over as Arrow, no line split in Python).

        Its reader checks every key and type as it parses; the first record that needs the
        exact rules, or a message, fails the statement, and the batch (spoiled) starts again
        the exact way. ``unread``: the engine cannot read this file (nothing was written)."""
        columns = self.columns(scan.table)
        try:
            with writer.readable(scan.path) as name:
                if name is None:
                    return "unread"
                sql = self._scan_sql(writer, scan, name, columns)
                if sql is None:
                    return "unread"
                writer.insert_select(scan.table, sql, event_key(columns))
                commit = writer.commit()
        except SelectFailed:
            writer.rollback()
            return "spoiled"
        except BaseException:
            writer.rollback()
            raise
        counts = self.report.counts(scan.table)
        counts.accepted += commit.inserted.get(scan.table, 0)
        counts.duplicates += commit.duplicates.get(scan.table, 0)
        self.report.engine_read = True
        return "committed"

    @staticmethod
    def _scan_sql(writer: BatchWriter, scan: ScanFile, name: str,
                  columns: list[tuple[str, str]]) -> str | None:
        """The SELECT reading the file ``name`` coerced (None: it needs the exact way)."""
        if scan.category is not None:
            return fastjson.export_select(name, scan.gzip, scan.category, columns)
        # the reader's own types when it finds plain ones (it then checks every key); else
        # every key as text, the key lists looked at in a pass of their own
        scanned = [(str(k), str(t)) for k, t, *_ in writer.select(
            f"DESCRIBE {fastjson.scan_sql(name, scan.gzip)}")]
        if fastjson.unknown_keys(scanned, columns):
            return None
        sql = fastjson.typed_select(name, scan.gzip, scanned, columns)
        if sql is not None:
            return sql
        if not fastjson.keys_known(writer.select(fastjson.key_lists_sql(name, scan.gzip)),
                                   columns):
            return None
        return fastjson.text_select(name, scan.gzip, columns)

    def columns(self, table: str) -> list[tuple[str, str]]:
        cols = self.backend.tables().get(table)
        if cols is None:
            raise IngestError(f"unknown table '{table}' (create it with create_table first)",
                              None, self.report.source)
        return cols

    def chunk(self, chunk: formats.Chunk) -> None:
        for number, item, reason in chunk.rejects:
            self.reject(chunk.table, number, reason, item)
        coerced = chunk.coerced if isinstance(chunk, fastjson.CoercedChunk) else None
        if len(chunk) == 0 and coerced is None:
            return
        if chunk.table is None:
            raise IngestError("no table named for these records (name it, or use the "
                              "Defender streaming-export format)", None, self.report.source)
        columns = self.columns(chunk.table)
        if coerced is not None:
            res = coerced
        elif chunk.lines is not None:
            res = self.engine.json_lines(chunk.lines, chunk.numbers, columns)
        elif chunk.data is not None:
            res = self.arrow(chunk, columns)
        else:
            res = self.records(chunk, columns)
        if res.suspects:
            self.explain(chunk, columns, res)
        self.add(chunk.table, res.table)

    def arrow(self, chunk: formats.Chunk, columns: list[tuple[str, str]]) -> Coerced:
        assert chunk.data is not None
        names = {c for c, _ in columns}
        unknown = [c for c in chunk.data.column_names
                   if c not in names and not (c in ALIASES and ALIASES[c] in names)]
        if not unknown:
            return self.engine.arrow(chunk.data, chunk.numbers, columns)
        # unknown columns: only rows that have a value there need the overflow (or a reject)
        data = chunk.data
        blank = None
        for c in unknown:
            col = data.column(c)
            empty = pc.is_null(col)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                empty = pc.or_(empty, pc.equal(col, ""))
            blank = empty if blank is None else pc.and_(blank, empty)
        assert blank is not None
        blank = blank.combine_chunks() if isinstance(blank, pa.ChunkedArray) else blank
        blank = pc.fill_null(blank, True)
        known = data.drop_columns(unknown)
        plain = self.engine.arrow(known.filter(blank), chunk.numbers.filter(blank), columns)
        others = chunk.numbers.filter(pc.invert(blank)).to_pylist()
        plain.suspects.extend((n, "unknown") for n in others)
        return plain

    def records(self, chunk: formats.Chunk, columns: list[tuple[str, str]]) -> Coerced:
        """Python records: vectorized when they convert to flat Arrow, else one by one."""
        assert chunk.records is not None
        recs = chunk.records
        if recs and all(isinstance(r, Mapping) for r in recs):
            # every key of every record (from_pylist would take the first record's keys only)
            keys = list(dict.fromkeys(k for r in recs for k in r))
            try:
                data = pa.table({k: pa.array([r.get(k) for r in recs]) for k in keys})
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                data = None
            if data is not None and not any(
                    pa.types.is_nested(f.type) or pa.types.is_null(f.type) for f in data.schema):
                return self.arrow(formats.Chunk(chunk.table, chunk.numbers, data=data), columns)
        empty = pa.table({c: pa.array([], ARROW_TYPES[t]) for c, t in columns})
        return Coerced(empty, pa.array([], pa.int64()),
                       [(n, "record") for n in chunk.numbers.to_pylist()])

    def explain(self, chunk: formats.Chunk, columns: list[tuple[str, str]],
                res: Coerced) -> None:
        """Suspects one by one: rescue what the Python rules accept, reject the rest."""
        table = chunk.table
        assert table is not None
        rescued: list[dict[str, Any]] = []
        for number, code in res.suspects:
            item = chunk.item(number)
            line = chunk.line(number)
            try:
                rec = chunk.raw(number)
            except ValueError as e:
                msg = getattr(e, "msg", str(e))
                col = getattr(e, "colno", None)
                self.reject(table, line, f"invalid JSON: {msg}" +
                            (f" (column {col})" if col else ""), item)
                continue
            try:
                row, kept = coerce_record(rec, columns, table)
            except ValueError as e:
                self.reject(table, line, str(e), item)
                continue
            if code == "unknown" or kept:
                counts = self.report.counts(table)
                counts.overflow.extend(k for k in kept if k not in counts.overflow)
            rescued.append(row)
        if rescued:
            self.add(table, rows_to_arrow(rescued, columns))

    def reject(self, table: str | None, line: int, reason: str, item: int = 0) -> None:
        if self.on_error == "fail":
            where = f" (record {item} of the envelope)" if item else ""
            raise IngestError(reason + where, line, self.report.source)
        if table is None:
            self.report.rejected_unattributed += 1
        else:
            self.report.counts(table).rejected += 1
        if len(self.report.rejections) < MAX_LISTED:
            self.report.rejections.append(Rejection(line, reason, table, item,
                                                    self.report.source))

    # -------------------------------------------------------------- writing

    def add(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        self.pending.setdefault(table, []).append(data)
        self.pending_rows[table] = self.pending_rows.get(table, 0) + data.num_rows
        self.report.counts(table).accepted += data.num_rows
        if self.pending_rows[table] >= FLUSH_ROWS:
            self.flush(table)

    def flush(self, table: str) -> None:
        parts = self.pending.pop(table, [])
        self.pending_rows.pop(table, None)
        if not parts or self.inserter is None:
            return
        data = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        self.inserter.put(table, data, event_key(self.columns(table)))


# ---------------------------------------------------------------- entry points

def chunks_for(backend: Backend, table: str | None, data: Any, fmt: str | None,
               engine: Coercer) -> tuple[Iterator[formats.Chunk], str | None, int]:
    """The chunks of ``data`` (records, Arrow or a path), its source name and size in bytes."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return formats.arrow_chunks(data, table), None, data.nbytes
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise IngestError(f"no such file: {path}")
        kind = fmt or formats.detect_format(path)
        if kind not in formats.FORMATS:
            raise IngestError(f"unknown format '{kind}' (expected one of "
                              f"{', '.join(formats.FORMATS)})")
        size = path.stat().st_size
        if table is None and kind != "export":
            table = table_from_name(path, backend)
        if kind == "ndjson":
            columns = backend.tables().get(table) if table is not None else None
            if table is not None and columns is not None:  # coerced by one streaming query
                return fastjson.read_ndjson(path, table, columns, engine), str(path), size
            return formats.read_ndjson(path, table), str(path), size
        if kind == "json":
            return formats.read_json_values(path, table), str(path), size
        if kind == "csv":
            return formats.read_csv(path, table), str(path), size
        if kind == "parquet":
            return formats.read_parquet(path, table), str(path), size
        return (export_chunks(path, table, engine, _one_json_per_line(path), set(backend.tables())),
                str(path), size)
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, Sequence):
        data = list(data)
    return formats.record_chunks(data, table), None, 0


def _one_json_per_line(path: Path) -> bool:
    with formats.open_binary(path) as f:
        first = f.readline().decode("utf-8-sig", "replace").strip()
    try:
        json.loads(first)
        return True
    except ValueError:
        return False


def table_from_name(path: Path, backend: Backend) -> str | None:
    """``DeviceProcessEvents.ndjson.gz`` → ``DeviceProcessEvents`` when that table exists."""
    name = path.name.split(".")[0]
    return name if name in backend.tables() else None


def export_chunks(path: Path, table: str | None, engine: Coercer, one_per_line: bool,
                  known: set[str]) -> Iterator[formats.Chunk]:
    """Records of a streaming-API export, one chunk per table per block of the file."""
    seq = 0
    for envelopes, numbers in formats.read_export(path, one_per_line):
        flat = engine.explode_export(envelopes, numbers)
        n = flat.num_rows
        seqs = pa.array(np.arange(seq + 1, seq + 1 + n, dtype=np.int64))
        seq += n
        lines = flat.column("__n").combine_chunks()
        items = flat.column("__item").combine_chunks()
        errs = flat.column("__err").combine_chunks()
        cats = flat.column("category").combine_chunks()
        rejects: list[tuple[int, int, str]] = []
        if errs.null_count != n:
            bad = pc.invert(pc.is_null(errs))
            for ln, it, code in zip(lines.filter(bad).to_pylist(), items.filter(bad).to_pylist(),
                                    errs.filter(bad).to_pylist(), strict=True):
                rejects.append((ln, it, "invalid JSON" if code == "json" else
                                "not a streaming-export record (expected an object with "
                                "'category' and 'properties')"))
        good = pc.is_null(errs)
        for cat in pc.unique(cats.filter(good)).to_pylist():
            sel = pc.and_(good, pc.equal(cats, cat)) if cat is not None else \
                pc.and_(good, pc.is_null(cats))
            target = formats.table_from_category(cat)
            if target is None or target not in known or (table is not None and target != table):
                if target is None:
                    reason = f"category {cat!r} is not an Advanced Hunting table"
                elif target not in known:
                    reason = f"unknown table '{target}' (category {cat!r})"
                else:
                    reason = f"a {target} record (only {table} is ingested)"
                for ln, it in zip(lines.filter(sel).to_pylist(), items.filter(sel).to_pylist(),
                                  strict=True):
                    rejects.append((ln, it, reason))
                continue
            yield formats.Chunk(target, seqs.filter(sel),
                                lines=flat.column("properties").combine_chunks().filter(sel),
                                items=items.filter(sel), at=lines.filter(sel))
        if rejects:
            yield formats.Chunk(None, pa.array([], pa.int64()), rejects=rejects)


@dataclass(frozen=True)
class ScanFile:
    """A file the engine may read itself (:meth:`Ingestion.scan`): NDJSON records of
    ``table``, or (``category`` set) streaming-export envelopes, one per line, whose first
    record is of that category (``table``'s)."""

    path: Path
    table: str
    gzip: bool
    category: str | None = None


def scan_file(backend: Backend, table: str | None, data: Any, fmt: str | None
              ) -> ScanFile | None:
    """``data`` as a file for the engine's own reader, if it is one it can take."""
    if backend.dialect != "duckdb" or not isinstance(data, (str, Path)):
        return None
    path = Path(data)
    if not path.is_file():
        return None
    kind = fmt or formats.detect_format(path)
    category = None
    if kind == "export":
        with formats.open_binary(path) as f:
            first = f.readline()
        try:
            category = json.loads(first)["records"][0]["category"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None  # a record per line, one document, or no records: read in Python
        found = formats.table_from_category(category)
        if found is None or (table is not None and found != table):
            return None
        table = found
    elif kind != "ndjson":
        return None
    table = table or table_from_name(path, backend)
    if table is None or table not in backend.tables():
        return None
    with path.open("rb") as f:
        return ScanFile(path, table, f.read(2) == b"\x1f\x8b", category)


def ingest(backend: Backend, table: str | None, data: Any, *, fmt: str | None = None,
           batch_id: str | None = None, on_error: OnError = "fail",
           engine: Coercer | None = None, scan: bool = True) -> IngestReport:
    """Ingest ``data`` (records, Arrow, or a file path) into ``table`` as one batch.

    ``scan=False`` keeps an NDJSON file away from the engine's own reader (the same rows
    are stored either way; tests and benchmarks compare the two)."""
    engine = engine or coercer()
    if table is not None and table not in backend.tables():
        raise IngestError(f"unknown table '{table}' (create it with create_table first)")
    chunks, source, size = chunks_for(backend, table, data, fmt, engine)
    ing = Ingestion(backend, batch_id, on_error, source, engine)
    ing.report.bytes = size
    return ing.run(prefetch(chunks) if source is not None else chunks,
                   scan_file(backend, table, data, fmt) if scan else None)


__all__ = ["EVENT_KEY", "IngestReport", "Ingestion", "OnError", "Rejection", "TableCounts",
           "event_key", "ingest", "OVERFLOW_COLUMN"]
