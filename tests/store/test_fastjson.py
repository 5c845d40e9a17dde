"""The streaming NDJSON path (huntsman.store.fastjson) stores, rejects and reports exactly what
the block-by-block path (Coercer.json_lines over formats.read_ndjson) does."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import huntsman
from huntsman.errors import IngestError
from huntsman.store import fastjson, formats
from huntsman.store import ingest as ingest_module
from huntsman.store.coerce import MAX_KEY_LISTS, coercer

WITH_OVERFLOW = [("Timestamp", "datetime"), ("DeviceId", "string"), ("ReportId", "long"),
                 ("N", "int"), ("R", "real"), ("B", "bool"), ("D", "dynamic"),
                 ("G", "guid"), ("Took", "timespan"), ("AdditionalFields", "string")]
WITHOUT_OVERFLOW = [c for c in WITH_OVERFLOW if c[0] != "AdditionalFields"]


@contextmanager
def block_bytes(size: int) -> Iterator[None]:
    """Files read ``size`` bytes at a time (so that a small file spans several blocks)."""
    saved = formats.read_ndjson.__defaults__
    formats.read_ndjson.__defaults__ = (size,)
    try:
        yield
    finally:
        formats.read_ndjson.__defaults__ = saved


def fresh(columns: list[tuple[str, str]]) -> huntsman.Database:
    db = huntsman.connect()
    db.create_table("T", columns)
    return db


def stored(db: huntsman.Database, columns: list[tuple[str, str]]) -> list[str]:
    names = ", ".join(f'"{c}"' for c, _ in columns)
    rows = db.backend.execute(f'SELECT {names} FROM "T"').to_pylist()
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)


def outcome(db: huntsman.Database, columns: list[tuple[str, str]],
            rep: ingest_module.IngestReport) -> dict[str, Any]:
    counts = rep.tables.get("T", ingest_module.TableCounts())
    return {"accepted": rep.accepted, "rejected": rep.rejected, "duplicates": rep.duplicates,
            "overflow": counts.overflow,
            "rejections": [(r.line, r.item, r.reason) for r in rep.rejections],
            "rows": stored(db, columns)}


def both_paths(path: Path, columns: list[tuple[str, str]], on_error: str = "skip"
               ) -> tuple[Any, Any]:
    """(streaming path, block-by-block path): the outcome of each, or the IngestError raised."""
    results = []
    for fast in (True, False):
        db = fresh(columns)
        try:
            if fast:
                rep = db.ingest("T", path, format="ndjson",
                               on_error=on_error)  # type: ignore[arg-type]
            else:
                ing = ingest_module.Ingestion(db.backend, None, on_error,  # type: ignore[arg-type]
                                              str(path))
                rep = ing.run(formats.read_ndjson(path, "T"))
            results.append(outcome(db, columns, rep))
        except IngestError as e:
            results.append(("IngestError", str(e)))
    return results[0], results[1]


# ---------------------------------------------------------------- generated records

TIMES = st.one_of(
    st.sampled_from(["2024-01-15T10:00:00Z", "2024-01-15T10:00:00.1234567Z",
                     "2024-01-15T10:00:00.0000005Z", "2024-01-15 10:00", "2024-01-15",
                     "2024-01-15T12:00:00+02:00", "1/15/2024 10:00:00 AM",
                     "Mon, 15 Jan 2024 10:00:00 GMT", "1705312800", "yesterday", "", " ",
                     "1969-12-31T23:59:59.9999995Z"]),
    st.integers(0, 2**33), st.floats(0, 2e9, allow_nan=False), st.none(), st.booleans())
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12),
                    st.sampled_from(["12", " 7 ", "2.0", "2.5", "1e3", "true", "True", "0",
                                     "nan", "-inf", "1.5:00:00", "00:00:30", "3d",
                                     "6f1e0c4b-6c1a-4f7e-9f57-3d2f9b7e8a10", "{\"a\": 1}",
                                     "[1, 2]"]))
SPANS = SCALARS.filter(lambda v: not isinstance(v, int | float) or abs(v) < 2**62)
"""(A number of ticks past the range of a long fails both paths alike, with OverflowError.)"""
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)


@st.composite
def record_lines(draw: st.DrawFn) -> str:
    """One line of a file: mostly records (known keys, some unknown ones, some the alias
    TimeGenerated), sometimes something else."""
    kind = draw(st.sampled_from(["record"] * 8 + ["blank", "junk", "array", "scalar"]))
    if kind == "blank":
        return draw(st.sampled_from(["", "  ", "\t", " \r"]))
    if kind == "junk":
        return draw(st.sampled_from(["{bad", "not json", "{\"a\": 1} x", "}", "[", "\x0b"]))
    if kind == "array":
        return json.dumps(draw(st.lists(SCALARS, max_size=3)))
    if kind == "scalar":
        return json.dumps(draw(SCALARS))
    rec: dict[str, Any] = {}
    if draw(st.booleans()):
        rec["TimeGenerated" if draw(st.integers(0, 5)) == 0 else "Timestamp"] = draw(TIMES)
    for name, _ in WITH_OVERFLOW[1:]:
        if draw(st.integers(0, 2)):
            rec[name] = (draw(VALUES) if name in ("D", "AdditionalFields") else
                         draw(SPANS) if name == "Took" else draw(SCALARS))
    if draw(st.integers(0, 4)) == 0:
        rec[draw(st.sampled_from(["Extra", "Other", "timestamp"]))] = draw(SCALARS)
    if "ReportId" in rec and draw(st.booleans()):
        rec["ReportId"] = draw(st.integers(1, 3))  # some repeated events
        rec["Timestamp"] = "2024-01-15T10:00:00Z"
        rec["DeviceId"] = "dev1"
    return json.dumps(rec, ensure_ascii=draw(st.booleans()))


@settings(max_examples=35, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=st.lists(record_lines(), min_size=1, max_size=40), overflow=st.booleans(),
       bad_bytes=st.booleans(), final_newline=st.booleans(), block=st.sampled_from([200, 1 << 20]))
def test_streaming_and_block_paths_agree(tmp_path: Path, lines: list[str], overflow: bool,
                                         bad_bytes: bool, final_newline: bool, block: int) -> None:
    columns = WITH_OVERFLOW if overflow else WITHOUT_OVERFLOW
    data = "\n".join(lines).encode()
    if bad_bytes:
        data += b"\n{\"DeviceId\": \"\xff\xfe\"}"
    if final_newline:
        data += b"\n"
    path = tmp_path / "t.ndjson"
    path.write_bytes(data)
    with block_bytes(block):
        fast, slow = both_paths(path, columns, "skip")
        assert fast == slow
        fast, slow = both_paths(path, columns, "fail")
        assert fast == slow


# ---------------------------------------------------------------- particular cases

def write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n"
                              for x in lines))
    return path


def test_the_streaming_path_is_the_one_used(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ndjson", [json.dumps({"DeviceId": f"d{i}"}) for i in range(50)])
    db = fresh(WITH_OVERFLOW)
    chunks, _, _ = ingest_module.chunks_for(db.backend, "T", path, None, coercer())
    parts = list(chunks)
    assert parts and all(isinstance(c, fastjson.CoercedChunk) for c in parts)
    assert sum(c.coerced.table.num_rows for c in parts  # type: ignore[union-attr]
               if isinstance(c, fastjson.CoercedChunk)) == 50


def test_line_numbers_across_blocks_blank_lines_and_bad_text(tmp_path: Path) -> None:
    ok = json.dumps({"DeviceId": "a", "N": 1})
    lines: list[str | bytes] = [ok] * 30 + ["", "   "] + [ok] * 30
    lines += [b'{"DeviceId": "\xff"}', json.dumps({"N": "seven"}), "[1]", "{oops"]
    lines += [ok] * 30 + [json.dumps({"N": 2, "Bogus": None})]
    path = write(tmp_path / "t.ndjson", lines)
    with block_bytes(300):
        assert len(list(formats.read_ndjson(path, None))) > 5
        rep = fresh(WITHOUT_OVERFLOW).ingest("T", path, on_error="skip")
        fast, slow = both_paths(path, WITHOUT_OVERFLOW)
    assert fast == slow
    assert rep.accepted == 90
    expected = [
        (63, "not UTF-8 text"),
        (64, "column 'N' (int): 'seven' is not a whole number"),
        (65, "a record must be a JSON object, not an array"),
        (66, "invalid JSON: Expecting property name enclosed in double quotes"),
        (97, "unknown column(s) 'Bogus': T has no such column and no AdditionalFields to "
             "keep them in")]
    assert len(rep.rejections) == len(expected)
    for r, (line, reason) in zip(rep.rejections, expected, strict=True):
        assert r.line == line and r.reason.startswith(reason), r


def test_unknown_keys_next_to_nulls_and_the_alias(tmp_path: Path) -> None:
    """Records whose key count differs from their non-null columns have their keys checked."""
    lines = [json.dumps({"DeviceId": None, "N": None, "X": None}),  # unknown, with nulls
             json.dumps({"DeviceId": None, "N": 3}),  # nulls only: fine
             json.dumps({"TimeGenerated": "2024-01-15T10:00:00Z", "N": 4}),  # the alias
             json.dumps({"Timestamp": None, "TimeGenerated": "2024-01-15T10:00:00Z"}),
             '{"N": 5, "N": 6}',  # a repeated key
             json.dumps({"DeviceId": "z", "Extra": {"k": [1]}})]
    path = write(tmp_path / "t.ndjson", lines)
    fast, slow = both_paths(path, WITHOUT_OVERFLOW)
    assert fast == slow
    assert fast["rejections"] == [
        (1, 0, "unknown column(s) 'X': T has no such column and no AdditionalFields to keep "
               "them in"),
        (6, 0, "unknown column(s) 'Extra': T has no such column and no AdditionalFields to "
               "keep them in")]
    fast, slow = both_paths(path, WITH_OVERFLOW)
    assert fast == slow
    assert fast["accepted"] == 6 and fast["overflow"] == ["X", "Extra"]
    kept = [json.loads(row)["AdditionalFields"] for row in fast["rows"]]
    assert '{"Extra":{"k":[1]}}' in kept and '{"X":null}' in kept


def test_many_record_shapes_with_nulls(tmp_path: Path) -> None:
    """Past MAX_KEY_LISTS new key lists in a block, the block's records are checked in SQL."""
    names = [c for c, _ in WITHOUT_OVERFLOW]
    lines = []
    for i in range(MAX_KEY_LISTS + 40):
        rec = {c: None for j, c in enumerate(names) if (i >> j) & 1}
        lines.append(json.dumps(rec | {"DeviceId": f"d{i}"}))
    lines[77] = json.dumps({"DeviceId": "bad", "N": None, "Spent": None})
    path = write(tmp_path / "t.ndjson", lines)  # type: ignore[arg-type]
    fast, slow = both_paths(path, WITHOUT_OVERFLOW)
    assert fast == slow
    assert fast["accepted"] == len(lines) - 1
    assert [r[0] for r in fast["rejections"]] == [78]


def test_gzip_and_on_error_fail(tmp_path: Path) -> None:
    recs = [json.dumps({"DeviceId": f"d{i}", "ReportId": i}) for i in range(100)]
    recs[41] = json.dumps({"DeviceId": "x", "ReportId": "4.5"})
    path = tmp_path / "t.ndjson.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(recs) + "\n")
    db = fresh(WITHOUT_OVERFLOW)
    with pytest.raises(IngestError) as err:
        db.ingest("T", path)
    assert err.value.record == 42 and "'4.5' is not a whole number" in str(err.value)
    assert db.query("T | count").rows[0][0] == 0
    rep = db.ingest("T", path, on_error="skip")
    assert (rep.accepted, rep.rejected) == (99, 1)
    fast, slow = both_paths(path, WITHOUT_OVERFLOW)
    assert fast == slow


def test_a_broken_file_raises_the_readers_own_error(tmp_path: Path) -> None:
    """A truncated gzip file fails as it does on the block path, with nothing written."""
    data = gzip.compress(b"".join(json.dumps({"DeviceId": f"d{i}"}).encode() + b"\n"
                                  for i in range(5000)))
    path = tmp_path / "t.ndjson.gz"
    path.write_bytes(data[: len(data) // 2])
    db = fresh(WITHOUT_OVERFLOW)
    with block_bytes(4096), pytest.raises(EOFError):
        db.ingest("T", path)
    assert db.query("T | count").rows[0][0] == 0


def test_defender_rows_agree(tmp_path: Path) -> None:
    """Demo DeviceProcessEvents rows as Defender writes them: the same rows either way."""
    from huntsman.store import demo

    tbl = demo.generate(seed=3, devices=3, days=1)["DeviceProcessEvents"].slice(0, 300)
    lines = []
    for r in tbl.to_pylist():
        lines.append(json.dumps({k: (v.isoformat() + "Z" if hasattr(v, "isoformat") else v)
                                 for k, v in r.items()}, default=str))
    path = write(tmp_path / "DeviceProcessEvents.ndjson", lines)  # type: ignore[arg-type]
    fast_db, slow_db = huntsman.connect(), huntsman.connect()
    fast = fast_db.ingest(None, path)
    slow = ingest_module.Ingestion(slow_db.backend, None, "fail", str(path)).run(
        formats.read_ndjson(path, "DeviceProcessEvents"))
    assert fast.accepted == slow.accepted == 300
    q = "DeviceProcessEvents | order by ReportId asc, Timestamp asc, DeviceId asc"
    assert fast_db.query(q).rows == slow_db.query(q).rows
