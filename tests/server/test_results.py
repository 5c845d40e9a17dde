"""Column-wise JSON encoding of query results: the same values as the row-by-row reference
(Python values through ``json``), datetimes and timespans formatted whole columns at a time,
dynamic JSON text passed through verbatim."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import huntsman
from huntsman.kql.literals import format_datetime_iso, format_timespan
from huntsman.server.results import (
    datetime_texts,
    json_chunks,
    row_chunks,
    stream_object,
    timespan_texts,
)

ALL_TYPES = (
    "datatable(d:datetime, t:timespan, g:guid, r:real, s:string, l:long, b:bool, m:decimal)["
    "datetime(2024-01-15 12:30:00.5), time(1.02:00:03), guid(74be27de-1e4e-49d9-b579-fe0b331d3642), "
    "0.5, 'é \"q\" \\n tab\\t', 42, true, 1.25,"
    "datetime(1601-01-01), -1s, guid(00000000-0000-0000-0000-000000000000), 1e20, '', -7, "
    "false, 0.1,"
    "datetime(null), timespan(null), guid(null), real(null), '', long(null), bool(null), "
    "decimal(null)]"
    "| extend x = pack('a', r, 'b', s, 'c', pack_array(l, 1.5, 'z')), n = real(nan), "
    "pi = real(+inf), ni = real(-inf), dn = pack('v', real(nan), 'w', real(-inf)), "
    "e = dynamic(null), when = pack_array(d, t)"
)


def _reference(value: Any, ktype: str) -> Any:
    """A value as the row-by-row encoder wrote it before (the JSON form Kusto uses)."""
    if value is None:
        return None
    if ktype == "datetime":
        return format_datetime_iso(value.astimezone(UTC).replace(tzinfo=None))
    if ktype == "timespan":
        return format_timespan((value // timedelta(microseconds=1)) * 10)
    if ktype in ("guid", "decimal"):
        return str(value)
    if ktype == "real" and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if ktype == "dynamic":
        return json.loads(json.dumps(value, default=str),
                          parse_constant=lambda c: c)  # NaN inside → "NaN"
    return value


def _dynamic_nan_as_text(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_dynamic_nan_as_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _dynamic_nan_as_text(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def result() -> Any:
    return huntsman.connect().query(ALL_TYPES)


def test_rows_as_objects_match_the_row_by_row_reference(result: Any) -> None:
    body = b"[" + b",".join(json_chunks(result, chunk_rows=2)) + b"]"
    got = json.loads(body)
    names = [n for n, _ in result.columns]
    expected = [{n: _dynamic_nan_as_text(_reference(v, t))
                 for n, (_, t), v in zip(names, result.columns, row, strict=True)}
                for row in result.rows]
    assert got == expected
    assert got[0]["d"] == "2024-01-15T12:30:00.5000000Z" and got[0]["t"] == "1.02:00:03"
    assert got[1]["t"] == "-00:00:01" and got[1]["d"] == "1601-01-01T00:00:00.0000000Z"
    assert (got[0]["n"], got[0]["pi"], got[0]["ni"]) == ("NaN", "Infinity", "-Infinity")
    assert got[0]["dn"] == {"v": "NaN", "w": "-Infinity"}
    assert got[0]["x"] == {"a": 0.5, "b": 'é "q" \n tab\t', "c": [42, 1.5, "z"]}
    assert got[0]["when"] == ["2024-01-15T12:30:00.5000000Z", "1.02:00:03"]
    assert got[2]["d"] is None and got[2]["t"] is None and got[2]["e"] is None


def test_row_chunks_give_python_values_for_the_kusto_writer(result: Any) -> None:
    rows = [r for chunk in row_chunks(result, chunk_rows=2) for r in chunk]
    assert len(rows) == 3
    arrays = json.loads(b"[" + b",".join(json_chunks(result, as_dicts=False)) + b"]")
    assert json.loads(json.dumps(rows, allow_nan=False)) == arrays
    assert rows[0][result.columns.index(("dn", "dynamic"))] == {"v": "NaN", "w": "-Infinity"}


def test_dynamic_text_goes_out_verbatim() -> None:
    db = huntsman.connect()
    db.create_table("Docs", [("Id", "long"), ("Doc", "dynamic")])
    text = '{"b":  [1, 2.50],   "a" : "x"}'  # the spacing and 2.50 would not survive a re-encode
    db.ingest("Docs", [{"Id": 1, "Doc": text}, {"Id": 2, "Doc": None}])
    r = db.query("Docs | order by Id asc")
    body = b"".join(stream_object([("Schema", [])], "Results", r))
    assert text.encode() in body
    assert json.loads(body)["Results"] == [{"Id": 1, "Doc": {"b": [1, 2.5], "a": "x"}},
                                           {"Id": 2, "Doc": None}]


def test_streamed_in_pieces_is_one_valid_document() -> None:
    r = huntsman.connect().query("range x from 1 to 25 step 1 | extend At = datetime(2024-01-01)"
                                 " + x * 1s, D = pack('x', x)")
    pieces = list(stream_object([("Schema", [{"Name": "x"}])], "Results", r,
                                [("Stats", {"Truncated": False})], chunk_rows=4))
    assert len(pieces) == 2 + 7  # head, 7 pieces of at most 4 rows, tail
    doc = json.loads(b"".join(pieces))
    assert [row["x"] for row in doc["Results"]] == list(range(1, 26))
    assert doc["Results"][24] == {"x": 25, "At": "2024-01-01T00:00:25.0000000Z", "D": {"x": 25}}
    assert doc["Stats"] == {"Truncated": False} and doc["Schema"] == [{"Name": "x"}]
    empty = huntsman.connect().query("print x = 1 | where x > 1")
    assert json.loads(b"".join(stream_object([], "rows", empty, as_dicts=False))) == {"rows": []}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.datetimes(min_value=datetime(1, 1, 1),
                                                   max_value=datetime(9999, 12, 31)))))
def test_datetime_column_formatting(values: list[datetime | None]) -> None:
    got = datetime_texts(pa.array(values, pa.timestamp("us"))).to_pylist()
    # ISO 8601 with four-digit years, as the row-by-row formatter writes them
    assert got == [None if v is None else v.isoformat(timespec="microseconds") + "0Z"
                   for v in values]
    assert got == [None if v is None else format_datetime_iso(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(10**15), 10**15))))
def test_timespan_column_formatting(micros: list[int | None]) -> None:
    got = timespan_texts(pa.array(micros, pa.int64())).to_pylist()
    assert got == [None if v is None else format_timespan(v * 10) for v in micros]
