"""Query results as JSON, streamed in chunks so that a 100,000-row answer is never held as
one document: the Arrow result is sliced, each slice becomes Python values and then JSON text.

Values follow Kusto's JSON forms: datetimes ``2024-01-15T12:00:00.1234560Z``, timespans
``[d.]hh:mm:ss[.fffffff]``, dynamic values as nested JSON, guids as strings, NaN/±infinity as
the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from fastapi.responses import Response, StreamingResponse

from huntsman.kql.literals import format_datetime_iso, format_timespan

CHUNK_ROWS = 2000
"""Rows converted and encoded per piece of the streamed response."""

DEFENDER_TYPES: dict[str, str] = {
    "string": "String", "long": "Int64", "int": "Int32", "real": "Double", "bool": "Boolean",
    "datetime": "DateTime", "timespan": "TimeSpan", "dynamic": "Object", "guid": "Guid",
    "decimal": "Decimal",
}
"""Kusto types as Defender's advanced-hunting APIs name them in ``Schema``."""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def defender_type(ktype: str) -> str:
    return DEFENDER_TYPES.get(ktype, "String")


def _conv(ktype: str) -> Callable[[Any], Any] | None:
    if ktype == "datetime":
        return lambda v: None if v is None else format_datetime_iso(
            v.replace(tzinfo=None) if isinstance(v, datetime) else v)
    if ktype == "timespan":
        return lambda v: None if v is None else format_timespan(
            (v // timedelta(microseconds=1)) * 10 if isinstance(v, timedelta) else int(v) * 10)
    if ktype == "dynamic":
        return lambda v: None if v is None else json.loads(v)
    if ktype in ("guid", "decimal"):
        return lambda v: None if v is None else str(v)
    if ktype == "real":
        return _real
    return None


def _real(v: Any) -> Any:
    if v is None or math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _raw_columns(result: Any) -> pa.Table:
    """The result as Arrow with datetimes naive UTC and timespans as microsecond integers."""
    table: pa.Table = result.to_arrow()
    arrays = []
    for i, (_, t) in enumerate(result.columns):
        arr = table.column(i)
        if t == "datetime":
            arr = arr.cast(pa.timestamp("us"))
        elif t == "timespan":
            arr = arr.cast(pa.int64())
        arrays.append(arr)
    return pa.table(arrays, names=[f"c{i}" for i in range(len(arrays))])


def row_chunks(result: Any, chunk_rows: int = CHUNK_ROWS) -> Iterator[list[list[Any]]]:
    """The result's rows as JSON-ready lists, ``chunk_rows`` at a time."""
    table = _raw_columns(result)
    convs = [_conv(t) for _, t in result.columns]
    for start in range(0, table.num_rows, chunk_rows):
        piece = table.slice(start, chunk_rows)
        cols = []
        for i, conv in enumerate(convs):
            values = piece.column(i).to_pylist()
            cols.append([conv(v) for v in values] if conv else values)
        yield [list(r) for r in zip(*cols, strict=True)] if cols else []


def stream_object(head: Sequence[tuple[str, Any]], rows_key: str, result: Any,
                  tail: Sequence[tuple[str, Any]] = (), *, as_dicts: bool = True,
                  chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """A JSON object streamed in pieces: the ``head`` members, then ``rows_key`` holding the
    result's rows (objects keyed by column name, or arrays), then the ``tail`` members."""
    parts = [f"{_dumps(k)}:{_dumps(v)}" for k, v in head]
    yield ("{" + ",".join(parts) + ("," if parts else "") + _dumps(rows_key) + ":[").encode()
    names = [n for n, _ in result.columns]
    first = True
    for chunk in row_chunks(result, chunk_rows):
        if not chunk:
            continue
        items = [dict(zip(names, r, strict=True)) for r in chunk] if as_dicts else chunk
        text = _dumps(items)[1:-1]
        yield (text if first else "," + text).encode()
        first = False
    rest = "".join(f",{_dumps(k)}:{_dumps(v)}" for k, v in tail)
    yield ("]" + rest + "}").encode()


def respond(head: Sequence[tuple[str, Any]], rows_key: str, result: Any,
            tail: Sequence[tuple[str, Any]] = (), *, as_dicts: bool = True,
            headers: dict[str, str] | None = None) -> Response:
    """The JSON answer: one body when the result fits in a chunk, else streamed chunk by
    chunk (so a large result is never held as one document)."""
    body = stream_object(head, rows_key, result, tail, as_dicts=as_dicts)
    if len(result) <= CHUNK_ROWS:
        return Response(b"".join(body), media_type="application/json", headers=headers)
    return StreamingResponse(body, media_type="application/json", headers=headers)
