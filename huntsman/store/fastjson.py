"""NDJSON files coerced by one streaming DuckDB query: the fast path of ``huntsman ingest``.

:func:`read_ndjson` yields the same blocks as :func:`formats.read_ndjson` (same line numbers,
same records rejected as not UTF-8), each already coerced: its accepted rows as Arrow in the
table's schema, and its *suspects* (with their text) for :class:`~huntsman.store.ingest.Ingestion`
to hand to the exact per-record rules, which accept a rarer form or say exactly why not. The
rules are those of :class:`~huntsman.store.coerce.Coercer` (the same SQL); what differs is the
cost:

* one query for the whole file instead of one per block: the blocks stream into DuckDB as Arrow
  record batches and come out coerced, so the large query is planned once;
* unknown keys without hashing key lists: ``len(json_keys(line))`` equals the number of known
  columns that came out non-null exactly when every key is a known column (and none repeats),
  so only records with JSON nulls (or unknown or repeated keys) have their key list looked at
  (one hash each, each distinct list checked once).

The DuckDB connection is the locked, in-memory one of the :class:`Coercer`: it reads nothing but
the Arrow batches handed to it (Python reads and decompresses the file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from huntsman.store import formats
from huntsman.store.coerce import (
    ALIASES,
    ARROW_TYPES,
    MAX_KEY_LISTS,
    Coerced,
    Coercer,
    _qi,
    _sql_str,
    _two_level,
    json_column_rules,
    scanned_rules,
)

BATCH_ROWS = 4096
"""Lines per Arrow batch streamed into DuckDB (its threads take batches in turn)."""
OUT_ROWS = 16_384
"""Coerced rows per Arrow batch read back."""
_LINES = pa.schema([("line", pa.large_string()), ("__n", pa.int64())])
BLANK = "blank"
"""``__err`` of a blank line (skipped, as on the block path)."""


@dataclass
class CoercedChunk(formats.Chunk):
    """A block of a file, already coerced: ``coerced`` holds its accepted rows and suspects;
    ``numbers`` and ``lines`` hold only the suspects (for the per-record rules)."""

    coerced: Coerced | None = None


def coerce_sql(columns: Sequence[tuple[str, str]]) -> str:
    """The query coercing ``__raw`` (``line``, ``__n``) to ``columns``: ``__n``, the columns,
    ``__err`` (why a row is a suspect) and ``__keys`` (the hash of the key list of a record
    whose keys are not plainly the known, non-null columns)."""
    fields, struct, raws = json_column_rules(columns)
    is_object = "(starts_with(line, '{') OR starts_with(ltrim(line), '{'))"
    # blank lines come out too (marked, as the block path skips them): every line gives one
    # row, so that a block is known to be complete when its count of rows is reached
    blank = "NOT (starts_with(line, '{') OR NOT regexp_full_match(line, '\\s*'))"
    pre = (f"CASE WHEN blank THEN '{BLANK}' WHEN s IS NULL THEN 'json' "
           f"WHEN NOT {is_object} THEN 'object' END")
    present = " + ".join(f"(s.{_qi(c)} IS NOT NULL)::INTEGER" for c in fields)
    keys = f"CASE WHEN len(k) <> {present} THEN hash(k) END"
    parsed = (f"(SELECT __n, line, blank, CASE WHEN NOT blank THEN "
              f"try(json_transform(line, {struct})) END AS s "
              f"FROM (SELECT __n, line, {blank} AS blank FROM __raw))")
    source = (f"(SELECT __n, line, blank, s, CASE WHEN s IS NOT NULL AND {is_object} "
              f"THEN json_keys(line) END AS k FROM {parsed})")
    return _two_level(source, raws, pre, {"__keys": keys})


SCAN_OPTIONS = ("format = 'newline_delimited', maximum_depth = 2, sample_size = 8192, "
                "dateformat = 'no date: huntsman', timestampformat = 'no time: huntsman'")
"""DuckDB's JSON reader as :func:`typed_select` uses it: it detects the keys and the types of
the top-level values (from a sample of records), parses no text as a date (so that the text
rules see it), and fails on a key it did not detect, a repeated key, a value not of its
column's type, a record that is no object, or text that is no JSON."""


def _compression(gzip: bool) -> str:
    return "compression = 'gzip'" if gzip else "compression = 'none'"


def scan_sql(name: str, gzip: bool) -> str:
    """DuckDB's JSON reader over the file ``name``, as :data:`SCAN_OPTIONS` describes."""
    return f"SELECT * FROM read_json({_sql_str(name)}, {SCAN_OPTIONS}, {_compression(gzip)})"


def unknown_keys(scanned: Sequence[tuple[str, str]], columns: Sequence[tuple[str, str]]
                 ) -> bool:
    """Whether the reader found a key that is no column (nor an alias of one)."""
    names = {c for c, _ in columns}
    return any(k not in names and ALIASES.get(k) not in names for k, _ in scanned)


def _checked(source: str, raws: Sequence[tuple[str, str, str, str | None]], keys: Sequence[str],
             columns: Sequence[tuple[str, str]]) -> str:
    """The coerced rows of ``source`` (alias ``s``), failing (DuckDB's ``error()``) on the
    first one the rules flag. A line ``null`` reads as a record of nulls: such a row (every
    key null) fails too, as does ``{}``, which the exact rules then accept."""
    empty = " AND ".join(f"s.{_qi(k)} IS NULL" for k in keys)
    coerced = _two_level(f"(SELECT 0 AS __n, * FROM ({source})) AS s", raws,
                         f"CASE WHEN {empty} THEN 'empty' END")
    names = ", ".join(_qi(c) for c, _ in columns)
    return (f"SELECT {names} FROM ({coerced}) WHERE CASE WHEN __err IS NULL THEN true ELSE "
            f"error('a record needs the exact rules: ' || __err) END")


def typed_select(name: str, gzip: bool, scanned: Sequence[tuple[str, str]],
                 columns: Sequence[tuple[str, str]]) -> str | None:
    """The file's records coerced to ``columns`` from the types the reader detected
    (``scanned``: DESCRIBE of :func:`scan_sql`), which also makes it check every key; None
    when a type keeps no column's text (:func:`~huntsman.store.coerce.scanned_rules`)."""
    raws = scanned_rules(columns, dict(scanned))
    if raws is None or not scanned:
        return None
    return _checked(scan_sql(name, gzip), raws, [k for k, _ in scanned], columns)


def text_select(name: str, gzip: bool, columns: Sequence[tuple[str, str]]) -> str:
    """The file's records coerced to ``columns`` from every key read as text (nested values
    as their JSON), as :func:`coerce_sql` does. The reader checks repeated keys, records that
    are no objects and JSON, but not unknown keys: :func:`key_lists_sql` looks at those."""
    fields, _, raws = json_column_rules(columns)
    spec = ", ".join(f"{_sql_str(f)}: 'VARCHAR'" for f in fields)
    source = (f"SELECT * FROM read_json({_sql_str(name)}, format = 'newline_delimited', "
              f"columns = {{{spec}}}, {_compression(gzip)})")
    return _checked(source, raws, fields, columns)


EXPORT_LINE_BYTES = 4 << 20
"""The longest envelope line the engine reads (Event Hubs messages are at most 1 MB; a longer
line fails the statement and the file is read in Python). Its read buffers are twice this:
small buffers spread the lines over every thread (1.6 s instead of 2.3 for 677 MB)."""


def export_select(name: str, gzip: bool, category: str, columns: Sequence[tuple[str, str]]
                  ) -> str:
    """The records of a streaming-export file of envelopes (``{"records": [...]}``, one per
    line) whose ``category`` is ``category``, their ``properties`` coerced to ``columns``.

    DuckDB's JSON reader types nested records slowly, so the lines are read as text and each
    envelope parsed once into its records' category and properties (JSON), and those once more.
    A line that is no envelope, a record of another category, properties that are no object
    and the key checks of :func:`coerce_sql` (unknown or repeated keys: a key count that is
    not the count of columns found, then the exact check) fail the statement."""
    fields, struct, raws = json_column_rules(columns)
    names = {c for c, _ in columns}
    known = "[" + ", ".join(_sql_str(k) for k in fields if k in names or ALIASES.get(k) in names)
    known += "]"
    envelope = _sql_str('{"records": [{"category": "VARCHAR", "properties": "JSON"}]}')
    lines = (f"read_csv({_sql_str(name)}, columns = {{'line': 'VARCHAR'}}, delim = '\x01', "
             f"quote = '', escape = '', header = false, auto_detect = false, "
             f"max_line_size = {EXPORT_LINE_BYTES}, buffer_size = {2 * EXPORT_LINE_BYTES}, "
             f"{_compression(gzip)})")
    envelopes = (f"SELECT CASE WHEN e.records IS NULL AND trim(line) <> '' THEN "
                 f"error('a line is no envelope') END AS bad, e.records AS records FROM "
                 f"(SELECT line, json_transform(line, {envelope}) AS e FROM {lines})")
    records = (f"SELECT bad, r.category AS category, CAST(r.properties AS VARCHAR) AS p FROM "
               f"(SELECT bad, unnest(records) AS r FROM ({envelopes}))")
    present = " + ".join(f"(s.{_qi(c)} IS NOT NULL)::INTEGER" for c in fields)
    source = (f"SELECT __n, s.*, CASE WHEN bad IS NOT NULL THEN 'envelope' "
              f"WHEN category IS DISTINCT FROM {_sql_str(category)} THEN 'category' "
              f"WHEN s IS NULL OR NOT starts_with(p, '{{') THEN 'properties' "
              f"WHEN len(k) <> {present} AND NOT (list_has_all({known}, k) "
              f"AND len(k) = len(list_distinct(k))) THEN 'keys' END AS __pre FROM "
              f"(SELECT 0 AS __n, bad, category, p, json_keys(p) AS k, "
              f"json_transform(p, {struct}) AS s FROM ({records}))")
    coerced = _two_level(f"({source}) AS s", raws, "__pre")
    out = ", ".join(_qi(c) for c, _ in columns)
    return (f"SELECT {out} FROM ({coerced}) WHERE CASE WHEN __err IS NULL THEN true ELSE "
            f"error('a record needs the exact rules: ' || __err) END")


def key_lists_sql(name: str, gzip: bool) -> str:
    """The distinct key lists of the file's records (each with its count)."""
    return (f"SELECT any_value(k), count(*) FROM (SELECT json_keys(json) AS k FROM "
            f"read_json_objects({_sql_str(name)}, format = 'newline_delimited', "
            f"{_compression(gzip)})) GROUP BY hash(k)")


def keys_known(lists: Sequence[tuple[object, ...]], columns: Sequence[tuple[str, str]]) -> bool:
    """Whether every key list (of :func:`key_lists_sql`) names columns only, each once;
    past ``MAX_KEY_LISTS`` shapes of record the exact way is the cheaper one."""
    if len(lists) > MAX_KEY_LISTS:
        return False
    names = {c for c, _ in columns} | {a for a, t in ALIASES.items() if t in {c for c, _ in columns}}
    for keys, _ in lists:
        if not isinstance(keys, list) or len(set(keys)) != len(keys) or not names.issuperset(keys):
            return False
    return True


def read_ndjson(path: Path, table: str, columns: Sequence[tuple[str, str]], engine: Coercer
                ) -> Iterator[formats.Chunk]:
    """The blocks of an NDJSON file (plain or gzip), coerced to ``columns`` by one query."""
    blocks: list[formats.Chunk] = []
    starts: list[int] = []
    failure: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for block in formats.read_ndjson(path, table):
                assert block.lines is not None
                if len(block) == 0:  # (the reader yields none, and no line means no reject)
                    continue
                starts.append(int(block.numbers[0].as_py()))
                blocks.append(block)  # before its rows can come out of the query
                lines = pa.table({"line": block.lines, "__n": block.numbers}, schema=_LINES)
                yield from lines.to_batches(max_chunksize=BATCH_ROWS)
        except BaseException as e:  # raised again as itself, not as DuckDB's wrapping of it
            failure.append(e)
            raise

    checker = _KeyLists(columns, engine)
    with engine._lock:
        cur = engine.con.cursor()
    try:
        cur.register("__raw", pa.RecordBatchReader.from_batches(_LINES, batches()))
        stream = cur.sql(coerce_sql(columns)).to_arrow_reader(OUT_ROWS)
        # DuckDB's threads may hand rows back out of order: rows are gathered per block, and
        # the blocks are finished in order, each once all of its lines have come out
        parts: dict[int, list[pa.RecordBatch]] = {}
        seen: dict[int, int] = {}
        done = 0
        for batch in stream:
            which = np.searchsorted(np.array(starts), batch.column("__n").to_numpy(),
                                    side="right") - 1
            present = np.unique(which).tolist()
            for b in present:
                part = batch if len(present) == 1 else batch.filter(pa.array(which == b))
                parts.setdefault(b, []).append(part)
                seen[b] = seen.get(b, 0) + part.num_rows
            while done < len(blocks) and seen.get(done, 0) == len(blocks[done]):
                yield _finish(blocks[done], parts.pop(done, []), stream.schema, columns, checker)
                blocks[done] = formats.Chunk(None, blocks[done].numbers[:0])  # free its text
                done += 1
        if failure:
            raise failure[0]
        if done < len(blocks):  # every line gives a row: this would be a bug, not bad input
            raise RuntimeError(f"{path}: the coercion query returned {seen.get(done, 0)} of "
                               f"the {len(blocks[done])} lines from line {starts[done]}")
    except (duckdb.Error, pa.ArrowException):
        if failure:
            raise failure[0] from None
        raise
    finally:
        cur.close()


def _finish(block: formats.Chunk, parts: list[pa.RecordBatch], schema: pa.Schema,
            columns: Sequence[tuple[str, str]], checker: _KeyLists) -> CoercedChunk:
    """One block's coerced rows → its accepted rows and its suspects (with their text)."""
    out = pa.Table.from_batches(parts, schema=schema).combine_chunks()
    order = np.argsort(out.column("__n").to_numpy(), kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        out = out.take(pa.array(order))
    blank = pc.equal(out.column("__err"), BLANK).combine_chunks()
    if blank.true_count:
        out = out.filter(pc.invert(pc.fill_null(blank, False)))
    err = out.column("__err")
    keys = out.column("__keys")
    if keys.null_count < len(keys):
        unknown = checker.unknown(keys, out.column("__n"), block)
        if unknown is not None:
            err = pc.if_else(pc.and_(unknown, pc.is_null(err)), "unknown", err)
    numbers = out.column("__n")
    target = pa.schema([(c, ARROW_TYPES[t]) for c, t in columns])
    names = [c for c, _ in columns]
    if err.null_count == len(err):
        good = out.select(names).cast(target)
        return CoercedChunk(block.table, pa.array([], pa.int64()), rejects=block.rejects,
                            lines=pa.array([], pa.large_string()),
                            coerced=Coerced(good, numbers.combine_chunks()))
    ok = pc.is_null(err)
    good = out.filter(ok).select(names).cast(target)
    bad = pc.invert(ok)
    bad_numbers = numbers.filter(bad).combine_chunks()
    suspects = list(zip(bad_numbers.to_pylist(), err.filter(bad).to_pylist(), strict=True))
    assert block.lines is not None
    at = np.searchsorted(block.numbers.to_numpy(zero_copy_only=False),
                         bad_numbers.to_numpy(zero_copy_only=False))
    return CoercedChunk(block.table, bad_numbers, lines=block.lines.take(pa.array(at)),
                        rejects=block.rejects,
                        coerced=Coerced(good, numbers.filter(ok).combine_chunks(), suspects))


class _KeyLists:
    """Which records have a key that is no column, from the hashes of their key lists: each
    distinct list is looked at once per file (by one record of it); past ``MAX_KEY_LISTS`` new
    ones in a block, the block's records are checked in SQL one by one."""

    def __init__(self, columns: Sequence[tuple[str, str]], engine: Coercer):
        names = [c for c, _ in columns]
        self.known = set(names) | {a for a, t in ALIASES.items() if t in names}
        self.known_sql = "[" + ", ".join(_sql_str(k) for k in sorted(self.known)) + "]"
        self.engine = engine
        self.verdicts: dict[int, bool] = {}
        """Key-list hash → whether the list has an unknown key."""

    def unknown(self, keys: pa.Array, numbers: pa.Array, block: formats.Chunk
                ) -> pa.Array | None:
        assert block.lines is not None
        flagged = pc.is_valid(keys)
        distinct = pc.unique(keys.filter(flagged)).to_pylist()
        new = [h for h in distinct if h not in self.verdicts]
        first = block.numbers[0].as_py()
        if len(new) > MAX_KEY_LISTS:
            # many shapes of record: the exact check in SQL, on every flagged record
            at = pc.subtract(numbers.filter(flagged), first)
            raw = pa.table({"line": block.lines.take(at), "__n": numbers.filter(flagged)})
            found = self.engine._run({"__raw": raw}, f"""
                SELECT __n FROM __raw
                WHERE NOT list_has_all({self.known_sql}, json_keys(line))""")
            if found.num_rows == 0:
                return None
            return pc.is_in(numbers, value_set=found.column("__n").combine_chunks())
        for h in new:
            n = numbers[pc.index(keys, h).as_py()].as_py()
            try:
                rec = json.loads(block.lines[n - first].as_py())
                self.verdicts[h] = not (isinstance(rec, dict) and self.known.issuperset(rec))
            except ValueError:  # JSON that DuckDB reads and Python does not: Python decides
                self.verdicts[h] = True
        bad = [h for h in distinct if self.verdicts[h]]
        if not bad:
            return None
        return pc.fill_null(pc.is_in(keys, value_set=pa.array(bad, keys.type)), False)


__all__ = ["BATCH_ROWS", "CoercedChunk", "OUT_ROWS", "coerce_sql", "read_ndjson"]
