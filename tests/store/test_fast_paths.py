"""The fast paths of ingestion give exactly what the exact rules give, and duplicates within
one batch are dropped and counted like duplicates of stored rows."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import huntsman
from huntsman.store import formats
from huntsman.store import ingest as ingest_module
from huntsman.store.coerce import MAX_KEY_LISTS, coerce_value, coercer

COLS = [("Timestamp", "datetime"), ("N", "long"), ("I", "int"), ("B", "bool")]


def coerced(column: str, values: list[Any]) -> tuple[list[Any], list[int]]:
    """The values through the vectorized pass: stored values and the suspect positions."""
    lines = pa.array([json.dumps({column: v}) for v in values], pa.large_string())
    res = coercer().json_lines(lines, pa.array(range(1, len(values) + 1), pa.int64()), COLS)
    return res.table.column(column).to_pylist(), [n - 1 for n, _ in res.suspects]


def agree(column: str, ktype: str, values: list[Any]) -> None:
    stored, suspects = coerced(column, values)
    accepted = [v for i, v in enumerate(values) if i not in suspects]
    for value, got in zip(accepted, stored, strict=True):
        assert got == coerce_value(value, ktype), value
    # the suspects are handed to the per-record rules, which decide alone


ISO = st.builds(
    lambda dt, digits, frac, zone: (dt.strftime("%Y-%m-%dT%H:%M:%S")
                                    + (f".{frac % 10 ** digits:0{digits}d}" if digits else "")
                                    + zone),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2999, 12, 31)),
    st.integers(0, 9), st.integers(0, 10**9 - 1), st.sampled_from(["Z", "", "+00:00", "-05:30"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ISO, min_size=1, max_size=40))
def test_iso_datetimes_fast_and_exact_paths_agree(values: list[str]) -> None:
    agree("Timestamp", "datetime", values)


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-15T10:00:00.0000005Z", datetime(2024, 1, 15, 10)),  # half-even: 0 is even
    ("2024-01-15T10:00:00.0000015Z", datetime(2024, 1, 15, 10, 0, 0, 2)),
    ("2024-01-15T10:00:00.0000016Z", datetime(2024, 1, 15, 10, 0, 0, 2)),
    ("2024-01-15T23:59:59.9999995Z", datetime(2024, 1, 16)),  # carries into the next day
    ("2024-01-15T10:00:00.5637270Z", datetime(2024, 1, 15, 10, 0, 0, 563727)),
    ("2024-01-15T10:00:00.563727Z", datetime(2024, 1, 15, 10, 0, 0, 563727)),
    ("2024-01-15T10:00:00Z", datetime(2024, 1, 15, 10)),
])
def test_defender_timestamps(text: str, expected: datetime) -> None:
    assert coerced("Timestamp", [text]) == ([expected], [])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-10**20, 10**20),
                          st.from_regex(r"\A[ +-]?0*[0-9]{1,20}(\.0*)?[ ]?\Z")),
                min_size=1, max_size=40))
def test_whole_numbers_fast_and_exact_paths_agree(values: list[Any]) -> None:
    agree("N", "long", values)
    agree("I", "int", values)


def test_bools() -> None:
    values = [True, False, "true", "false", "True", " FALSE ", 1, 0, "1", "yes"]
    agree("B", "bool", values)
    assert coerced("B", values)[1] == [9]


def events(keys: list[tuple[int, str]], device: str = "dev1") -> list[dict[str, object]]:
    return [{"Timestamp": ts, "DeviceId": device, "ReportId": r, "DeviceName": "ws1"}
            for r, ts in keys]


def count(db: huntsman.Database) -> int:
    return int(db.query("DeviceProcessEvents | count").rows[0][0])


def test_duplicates_within_one_batch_are_dropped_and_counted(db: huntsman.Database) -> None:
    t = "2024-01-15T10:00:00Z"
    recs = events([(1, t), (2, t), (1, t), (3, t), (2, t), (1, t)])
    recs += events([(1, t)], device="dev2")  # another device: not a duplicate
    recs += events([(1, "2024-01-15T10:00:01Z")])  # another time: not a duplicate
    rep = db.ingest("DeviceProcessEvents", recs)
    assert (rep.accepted, rep.duplicates, rep.rejected) == (5, 3, 0)
    assert rep.tables["DeviceProcessEvents"].duplicates == 3
    assert "3 duplicates skipped" in rep.summary()
    assert count(db) == 5
    # the first of the repeated rows is the one kept
    rows = db.query("DeviceProcessEvents | where ReportId == 1 and DeviceId == 'dev1' "
                    "| project Timestamp").rows
    assert len(rows) == 2
    # rows without a key are never duplicates, even within a batch
    rep = db.ingest("DeviceProcessEvents", [{"DeviceName": "a"}, {"DeviceName": "a"}])
    assert (rep.accepted, rep.duplicates) == (2, 0)


def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files read a few lines at a time, written a few rows at a time (as large ones are)."""
    monkeypatch.setattr(formats.read_ndjson, "__defaults__", (300,))
    monkeypatch.setattr(ingest_module, "FLUSH_ROWS", 7)


def test_duplicates_across_the_parts_of_one_batch(db: huntsman.Database, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A large batch is written in parts; a row repeating one of an earlier part is dropped."""
    small_parts(monkeypatch)
    t = "2024-01-15T10:00:00Z"
    keys = [(r % 20, t) for r in range(50)]  # 20 distinct rows, each two or three times
    f = tmp_path / "e.ndjson"
    f.write_text("".join(json.dumps(e) + "\n" for e in events(keys)))
    rep = db.ingest("DeviceProcessEvents", f, batch_id="parts")
    assert (rep.accepted, rep.duplicates) == (20, 30)
    assert count(db) == 20
    again = db.ingest("DeviceProcessEvents", f)
    assert (again.accepted, again.duplicates) == (0, 50)
    assert len(list(formats.read_ndjson(f, None))) > 5  # it was read in several parts


def test_cli_summary_shows_duplicates_within_a_file(tmp_path: Path) -> None:
    f = tmp_path / "DeviceProcessEvents.ndjson"
    t = "2024-01-15T10:00:00Z"
    f.write_text("".join(json.dumps(e) + "\n" for e in events([(1, t), (1, t), (2, t)])))
    p = subprocess.run([sys.executable, "-m", "huntsman.cli", "ingest", "--data-dir",
                        str(tmp_path / "data"), str(f)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "2 accepted, 0 rejected, 1 duplicates skipped" in p.stdout
    assert "DeviceProcessEvents: 2 accepted, 0 rejected, 1 duplicates" in p.stdout


def test_unknown_keys_among_many_record_shapes(db: huntsman.Database, tmp_path: Path) -> None:
    """Past MAX_KEY_LISTS distinct key lists in a chunk, every record is checked in SQL."""
    cols = [c for c, t in db.tables()["DeviceFileCertificateInfo"] if t == "string"][:9]
    lines = []
    for i in range(MAX_KEY_LISTS + 50):
        rec = {c: "x" for j, c in enumerate(cols) if (i >> j) & 1} | {"DeviceName": f"d{i}"}
        lines.append(json.dumps(dict(reversed(list(rec.items()))) if i % 3 else rec))
    lines[200] = json.dumps({"DeviceName": "bad", "AmountSpent": 3})
    f = tmp_path / "certs.ndjson"
    f.write_text("\n".join(lines) + "\n")
    rep = db.ingest("DeviceFileCertificateInfo", f, on_error="skip")
    assert (rep.accepted, rep.rejected) == (len(lines) - 1, 1)
    assert rep.rejections[0].line == 201
    assert "unknown column(s) 'AmountSpent'" in rep.rejections[0].reason


def test_a_failed_insert_rolls_the_whole_batch_back(db: huntsman.Database, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts are written on a thread of their own: its failure still fails the batch."""
    from huntsman.backends.duckdb import DuckDBBackend
    from huntsman.errors import HuntsmanError

    small_parts(monkeypatch)
    monkeypatch.setattr("huntsman.store.ingest.scan_file", lambda *a: None)  # Arrow parts
    real = DuckDBBackend._insert
    calls = []

    def failing(self: DuckDBBackend, *args: Any) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise HuntsmanError("disk full (injected)")
        return real(self, *args)

    monkeypatch.setattr(DuckDBBackend, "_insert", failing)
    f = tmp_path / "e.ndjson"
    f.write_text("".join(json.dumps(e) + "\n" for e in events(
        [(r, "2024-01-15T10:00:00Z") for r in range(40)])))
    with pytest.raises(HuntsmanError, match="disk full"):
        db.ingest("DeviceProcessEvents", f, batch_id="b1")
    assert len(calls) == 3  # two parts written, the third failed
    assert count(db) == 0 and "b1" not in db.batches()
    monkeypatch.setattr(DuckDBBackend, "_insert", real)
    assert db.ingest("DeviceProcessEvents", f, batch_id="b1").accepted == 40


def test_records_with_different_keys_keep_every_value() -> None:
    """A key missing from the first record is still read from the others (Arrow's from_pylist
    would infer the columns from the first record alone and drop the value silently)."""
    import huntsman
    db = huntsman.connect()
    ts = "2026-01-01T00:00:00Z"
    report = db.ingest("DeviceProcessEvents", [
        {"Timestamp": ts, "DeviceId": "a", "ReportId": 1},
        {"Timestamp": ts, "DeviceId": "b", "ReportId": 2, "ProcessCommandLine": "whoami /all"},
        {"Timestamp": ts, "DeviceId": "c", "ReportId": 3, "FileSize": 42},
    ])
    assert report.accepted == 3
    rows = db.query("DeviceProcessEvents | order by DeviceId asc "
                    "| project DeviceId, ProcessCommandLine, FileSize").rows
    assert rows == [("a", "", None), ("b", "whoami /all", None), ("c", "", 42)]


@pytest.mark.parametrize("values, column, expected", [
    (pa.array([1705312800, None]), "Timestamp", [datetime(2024, 1, 15, 10, tzinfo=UTC), None]),
    (pa.array([1.5]), "Timestamp", [datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)]),
    (pa.array([1, 0]), "B", [True, False]),
    (pa.array([True, False]), "N", None),  # a bool is no whole number: rejected
])
def test_typed_arrow_columns_through_their_text(values: pa.Array, column: str,
                                                expected: list[Any] | None) -> None:
    """Numbers (and bools) of a Parquet or Arrow column whose type has no direct rule are
    read through their text, by the text rules (this once failed to bind: trim(BIGINT))."""
    db = huntsman.connect()
    db.create_table("T", COLS)
    rep = db.ingest("T", pa.table({column: values}), on_error="skip")
    if expected is None:
        assert rep.rejected == len(values)
        return
    assert rep.accepted == len(values)
    assert [r[0] for r in db.query(f"T | project {column}").rows] == expected
