"""Ingestion formats, read into chunks of raw records (Arrow) ready for coercion.

* ``ndjson`` — one JSON object per line in the table's columns, plain or gzip (``.gz`` or gzip
  magic). A file that is one JSON array, or pretty-printed objects, is read too (``json``).
* ``export`` — the Defender streaming-API envelope: ``{"records": [{"time", "tenantId",
  "operationName", "category": "AdvancedHunting-<Table>", "properties": {...}}]}``, one or
  many per file (one per line as Event Hubs capture writes them, or pretty-printed), and the
  storage-account form with one record per line. The table is taken from ``category``.
* ``csv`` — as the Defender portal exports it: a header row with the column names (a ``[UTC]``
  suffix and a byte-order mark are ignored), quoted values, plain or gzip.
* ``parquet`` — any Parquet file whose columns are named like the table's.

Record numbers are the file's line numbers (NDJSON: the line of the record; CSV: the line of
the row when values hold no line breaks; export: the line of the envelope, with the record's
position in its ``records`` list).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from huntsman.errors import IngestError

FORMATS = ("ndjson", "json", "export", "csv", "parquet")
CHUNK_BYTES = 64 << 20
CATEGORY_PREFIX = "AdvancedHunting-"
_CSV_SUFFIX = re.compile(r"\s*\[UTC\]\s*$", re.IGNORECASE)


@dataclass
class Chunk:
    """Raw records of one table (``table`` is None when the caller names it).

    Exactly one of ``lines`` (JSON text per record), ``data`` (Arrow columns) or ``records``
    (Python objects) is set. ``numbers`` are the records' numbers (1-based, increasing);
    ``items`` their position inside an export envelope's ``records`` (0 when not one) and
    ``at`` the file line of each (when the numbers are not lines).
    ``rejects`` are records the reader itself could not take, as (number, item, reason).
    """

    table: str | None
    numbers: pa.Array
    lines: pa.Array | None = None
    data: pa.Table | None = None
    records: list[Any] | None = None
    items: pa.Array | None = None
    at: pa.Array | None = None
    """The file line of each record, when ``numbers`` are not line numbers (export)."""
    rejects: list[tuple[int, int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.numbers)

    def index(self, number: int) -> int:
        """The position of record ``number`` in this chunk."""
        return int(np.searchsorted(self.numbers.to_numpy(zero_copy_only=False), number))

    def line(self, number: int) -> int:
        if self.at is None:
            return number
        return int(self.at[self.index(number)].as_py())

    def item(self, number: int) -> int:
        if self.items is None:
            return 0
        return int(self.items[self.index(number)].as_py())

    def raw(self, number: int) -> Any:
        """The record as Python (a dict, or whatever the JSON held), for per-record checks."""
        i = self.index(number)
        if self.records is not None:
            return self.records[i]
        if self.data is not None:
            return self.data.slice(i, 1).to_pylist()[0]
        assert self.lines is not None
        return json.loads(self.lines[i].as_py())


# ---------------------------------------------------------------- opening and detection

def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (by magic, whatever its name)."""
    f = path.open("rb")
    head = f.read(2)
    f.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def detect_format(path: Path) -> str:
    """``ndjson``, ``json``, ``export``, ``csv`` or ``parquet``, from the name and the content."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return "parquet"
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".parquet"):
        return "parquet"
    with open_binary(path) as f:
        head = f.read(1 << 16)
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if name.endswith(".csv") or (text and text[0] not in "{["):
        return "csv"
    return _sniff_json(text)


def _sniff_json(text: str) -> str:
    first = text.split("\n", 1)[0].strip()
    try:
        value = json.loads(first)
        one_per_line = True
    except ValueError:
        value, one_per_line = _first_value(text), False
    if isinstance(value, list):
        value = value[0] if value else {}
        one_per_line = False
    if isinstance(value, dict) and _is_envelope(value):
        return "export"
    return "ndjson" if one_per_line else "json"


def _first_value(text: str) -> Any:
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except ValueError:
        # the head cut a large value short: look at its first keys only
        m = re.match(r'\s*\[?\s*\{\s*"(records|category)"', text)
        return {m.group(1): [] if m.group(1) == "records" else "AdvancedHunting-"} if m else {}


def _is_envelope(value: dict[str, Any]) -> bool:
    if isinstance(value.get("records"), list):
        return True
    return str(value.get("category", "")).startswith(CATEGORY_PREFIX) and "properties" in value


def table_from_category(category: Any) -> str | None:
    if isinstance(category, str) and category.startswith(CATEGORY_PREFIX):
        return category[len(CATEGORY_PREFIX):]
    return None


# ---------------------------------------------------------------- NDJSON

def _lines_array(block: bytes | memoryview) -> pa.Array:
    """``block`` (whole lines, each ending with a newline) as a string array, zero-copy."""
    buf = np.frombuffer(block, np.uint8)
    ends = np.flatnonzero(buf == 10)
    offsets = np.empty(len(ends) + 1, np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    arr = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets),
                                           pa.py_buffer(block))
    return arr


def _fill(f: IO[bytes], view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; the number of bytes read."""
    total = 0
    while total < len(view):
        n = f.readinto(view[total:])  # type: ignore[attr-defined]
        if not n:
            break
        total += n
    return total


def read_ndjson(path: Path, table: str | None, chunk_bytes: int = CHUNK_BYTES
                ) -> Iterator[Chunk]:
    """Chunks of whole lines; a line's number is its line in the file.

    Each block is read into a buffer of its own that the chunk's strings then point into:
    the text is copied once, from the file (only a line cut by the block's end moves again).
    """
    line_no = 1
    rest = b""
    first = True
    with open_binary(path) as f:
        while True:
            buf = bytearray(len(rest) + chunk_bytes)
            buf[:len(rest)] = rest
            size = len(rest) + _fill(f, memoryview(buf)[len(rest):])
            if size == len(rest):
                break
            start = 3 if first and buf.startswith(b"\xef\xbb\xbf") else 0
            first = False
            cut = buf.rfind(b"\n", start, size)
            if cut < 0:
                rest = bytes(buf[start:size])
                continue
            rest = bytes(buf[cut + 1:size])
            chunk = _json_chunk(memoryview(buf)[start:cut + 1], table, line_no)
            line_no += len(chunk)
            yield chunk
    if rest.strip():
        yield _json_chunk(rest + b"\n", table, line_no)


def _json_chunk(block: bytes | memoryview, table: str | None, first_line: int) -> Chunk:
    lines = _lines_array(block)
    numbers = pa.array(np.arange(first_line, first_line + len(lines), dtype=np.int64))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        # not UTF-8 somewhere: decode line by line, rejecting the lines that are not text
        texts: list[str] = []
        rejects = []
        for i, raw in enumerate(bytes(block).split(b"\n")[: len(lines)]):
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                texts.append("")
                rejects.append((first_line + i, 0, f"not UTF-8 text ({e.reason} at byte "
                                                   f"{e.start})"))
        return Chunk(table, numbers, lines=pa.array(texts, pa.large_string()), rejects=rejects)
    return Chunk(table, numbers, lines=lines)


def read_json_values(path: Path, table: str | None) -> Iterator[Chunk]:
    """A JSON array of records, or pretty-printed/concatenated objects (records of ``table``)."""
    for values, numbers in _iter_values(path):
        records: list[Any] = []
        for v in values:
            records.extend(v if isinstance(v, list) else [v])
        if len(records) != len(values):
            numbers = list(range(1, len(records) + 1))
        yield Chunk(table, pa.array(numbers, pa.int64()),
                    lines=pa.array([json.dumps(r, ensure_ascii=False) for r in records],
                                   pa.large_string()))


def _iter_values(path: Path) -> Iterator[tuple[list[Any], list[int]]]:
    """Top-level JSON values of the file with the line each starts on (the whole file)."""
    with open_binary(path) as f:
        raw = f.read()
    text = raw.decode("utf-8-sig")
    dec = json.JSONDecoder()
    pos, line = 0, 1
    values: list[Any] = []
    numbers: list[int] = []
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            if text[pos] == "\n":
                line += 1
            pos += 1
        if pos >= n:
            break
        try:
            value, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise IngestError(f"invalid JSON: {e.msg} (line {line + text.count(chr(10), pos, e.pos)}"
                              f", column {e.colno})", line, str(path)) from None
        values.append(value)
        numbers.append(line)
        line += text.count("\n", pos, end)
        pos = end
    yield values, numbers


# ---------------------------------------------------------------- Defender streaming export

def read_export(path: Path, one_per_line: bool) -> Iterator[tuple[pa.Array, pa.Array]]:
    """The export's envelopes as JSON text, one per element, with their line numbers."""
    if one_per_line:
        for chunk in read_ndjson(path, None):
            if chunk.rejects:
                raise IngestError(chunk.rejects[0][2], chunk.rejects[0][0], str(path))
            assert chunk.lines is not None
            yield chunk.lines, chunk.numbers
        return
    for values, numbers in _iter_values(path):
        flat: list[str] = []
        nums: list[int] = []
        for v, num in zip(values, numbers, strict=True):
            for item in (v if isinstance(v, list) else [v]):
                flat.append(json.dumps(item, ensure_ascii=False))
                nums.append(num)
        yield pa.array(flat, pa.large_string()), pa.array(nums, pa.int64())


# ---------------------------------------------------------------- CSV

def read_csv(path: Path, table: str | None, batch_rows: int = 65_536) -> Iterator[Chunk]:
    """Chunks of CSV rows, every value as text; the header names the columns."""
    import pyarrow.csv as pcsv

    with open_binary(path) as f:
        header_line = f.readline().decode("utf-8-sig", "replace")
    import csv
    try:
        header = next(csv.reader([header_line]))
    except StopIteration:
        return
    names = [_CSV_SUFFIX.sub("", h.strip()) for h in header]
    if len(set(names)) != len(names):
        raise IngestError("the CSV header repeats a column name", 1, str(path))
    read = pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=8 << 20,
                            encoding="utf8")
    parse = pcsv.ParseOptions(newlines_in_values=True)
    convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                  strings_can_be_null=False, quoted_strings_can_be_null=False)
    row = 2
    with open_binary(path) as f:
        try:
            reader = pcsv.open_csv(f, read_options=read, parse_options=parse,
                                   convert_options=convert)
            for batch in reader:
                data = pa.Table.from_batches([batch])
                for start in range(0, data.num_rows, batch_rows):
                    part = data.slice(start, batch_rows)
                    numbers = pa.array(np.arange(row, row + part.num_rows, dtype=np.int64))
                    row += part.num_rows
                    yield Chunk(table, numbers, data=part)
        except pa.ArrowInvalid as e:
            raise IngestError(f"malformed CSV: {e}", None, str(path)) from None


# ---------------------------------------------------------------- Parquet

def read_parquet(path: Path, table: str | None, batch_rows: int = 131_072) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise IngestError(f"not a readable Parquet file: {e}", None, str(path)) from None
    row = 1
    for batch in pf.iter_batches(batch_size=batch_rows):
        data = pa.Table.from_batches([batch])
        numbers = pa.array(np.arange(row, row + data.num_rows, dtype=np.int64))
        row += data.num_rows
        yield Chunk(table, numbers, data=data)


def arrow_chunks(data: pa.Table, table: str | None, batch_rows: int = 262_144
                 ) -> Iterator[Chunk]:
    for start in range(0, max(data.num_rows, 1), batch_rows):
        part = data.slice(start, batch_rows)
        yield Chunk(table, pa.array(np.arange(start + 1, start + 1 + part.num_rows,
                                              dtype=np.int64)), data=part)


def record_chunks(records: Sequence[Any], table: str | None, batch_rows: int = 100_000
                  ) -> Iterator[Chunk]:
    for start in range(0, max(len(records), 1), batch_rows):
        part = list(records[start:start + batch_rows])
        yield Chunk(table, pa.array(np.arange(start + 1, start + 1 + len(part),
                                              dtype=np.int64)), records=part)
