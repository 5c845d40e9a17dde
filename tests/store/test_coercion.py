"""Coercion to the schema, the same on the vectorized path (DuckDB over Arrow) and the
per-record path (Python), and every rejection with its message and line number."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import huntsman
from huntsman.errors import IngestError
from huntsman.store.coerce import coerce_record, coercer

COLS = [("Timestamp", "datetime"), ("N", "long"), ("I", "int"), ("R", "real"), ("B", "bool"),
        ("S", "string"), ("D", "dynamic"), ("G", "guid"), ("Took", "timespan")]


def vectorized(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    lines = pa.array([json.dumps(r) for r in records], pa.large_string())
    res = coercer().json_lines(lines, pa.array(range(1, len(records) + 1), pa.int64()), COLS)
    return res.table.to_pylist(), [n for n, _ in res.suspects]


def one(value: Any, column: str) -> Any:
    """The value as stored, by both paths (which must agree)."""
    rows, suspects = vectorized([{column: value}])
    py = coerce_record({column: value}, COLS)[0][column]
    if suspects:  # the vectorized pass hands rare forms to the per-record rules
        return py
    assert rows[0][column] == py, (value, rows[0][column], py)
    return py


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-15T10:00:00Z", datetime(2024, 1, 15, 10)),
    ("2024-01-15T10:00:00", datetime(2024, 1, 15, 10)),
    ("2024-01-15 10:00", datetime(2024, 1, 15, 10)),
    ("2024-01-15", datetime(2024, 1, 15)),
    ("2024-01-15T10:00:00.5Z", datetime(2024, 1, 15, 10, 0, 0, 500000)),
    ("2024-01-15T10:00:00.1234567Z", datetime(2024, 1, 15, 10, 0, 0, 123457)),  # rounded
    ("2024-01-15T10:00:00.1234565Z", datetime(2024, 1, 15, 10, 0, 0, 123456)),  # half-even
    ("2024-01-15T10:00:00.1234575Z", datetime(2024, 1, 15, 10, 0, 0, 123458)),
    ("2024-01-15T10:00:00.123456789Z", datetime(2024, 1, 15, 10, 0, 0, 123457)),
    ("2024-01-15T12:00:00+02:00", datetime(2024, 1, 15, 10)),
    ("2024-01-15T05:00:00.25-05:00", datetime(2024, 1, 15, 10, 0, 0, 250000)),
    ("2024-01-15T10:00:00 +00:00", datetime(2024, 1, 15, 10)),
    ("1/15/2024 10:00:00", datetime(2024, 1, 15, 10)),
    ("Mon, 15 Jan 2024 10:00:00 GMT", datetime(2024, 1, 15, 10)),
    ("15 Jan 2024 10:00", datetime(2024, 1, 15, 10)),
    ("1/15/2024 10:00:00 AM", datetime(2024, 1, 15, 10)),
    ("1/15/2024, 3:04:05.123 PM", datetime(2024, 1, 15, 15, 4, 5, 123000)),
    ("Jan 15, 2024 10:00:00 PM", datetime(2024, 1, 15, 22)),
    (1705312800, datetime(2024, 1, 15, 10)),
    (1705312800.5, datetime(2024, 1, 15, 10, 0, 0, 500000)),
    ("1705312800", datetime(2024, 1, 15, 10)),
    ("", None), (None, None),
])
def test_datetime_forms_become_utc(text: Any, expected: datetime | None) -> None:
    assert one(text, "Timestamp") == expected


def test_ingested_datetimes_equal_kql_literals(tmp_path: Path) -> None:
    db = huntsman.connect()
    stamp = "2023-05-02T13:32:18.0796149Z"
    db.ingest("DeviceEvents", [{"Timestamp": stamp}])
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps({"Timestamp": stamp}) + "\n")
    db.ingest("DeviceEvents", path)
    assert db.query(f"DeviceEvents | where Timestamp == datetime({stamp}) | count").rows == [(2,)]


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("N", "42", 42), ("N", " -7 ", -7), ("N", 2.0, 2), ("N", "2.0", 2), ("N", 9007199254740993,
                                                                          9007199254740993),
    ("I", "123", 123), ("I", -5, -5), ("R", "1.5", 1.5), ("R", "1e3", 1000.0), ("R", 3, 3.0),
    ("B", True, True), ("B", "True", True), ("B", "false", False), ("B", "1", True), ("B", 0, False),
    ("S", None, ""), ("S", 5, "5"), ("S", True, "true"), ("S", {"a": [1, "x"]}, '{"a":[1,"x"]}'),
    ("D", {"a": 1}, '{"a":1}'), ("D", [1, 2], "[1,2]"), ("D", '{"a":1}', '{"a":1}'),
    ("D", "plain", '"plain"'), ("D", 5, "5"), ("D", None, None),
    ("G", "6F9619FF-8B86-D011-B42D-00C04FC964FF", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
    ("Took", 1500000, 1500000), ("Took", "00:00:01.5", 1500000),
])
def test_values_are_coerced_to_the_column_type(column: str, value: Any, expected: Any) -> None:
    assert one(value, column) == expected


def test_additional_fields_kept_as_defender_types_them(db: huntsman.Database) -> None:
    # string in Device* tables (JSON text), dynamic in Identity*/CloudAppEvents
    db.ingest("DeviceEvents", [{"AdditionalFields": {"Command": "Get-Process"}},
                               {"AdditionalFields": '{"Command":"dir"}'}])
    db.ingest("CloudAppEvents", [{"AdditionalFields": {"k": [1, 2]}}])
    r = db.query("DeviceEvents | extend c = tostring(parse_json(AdditionalFields).Command) "
                 "| project AdditionalFields, c")
    assert sorted(r.rows) == [('{"Command":"Get-Process"}', "Get-Process"),
                              ('{"Command":"dir"}', "dir")]
    assert db.tables()["CloudAppEvents"][30] == ("AdditionalFields", "dynamic")
    assert db.query("CloudAppEvents | project x = AdditionalFields.k[1]").rows == [(2,)]


def test_missing_strings_are_empty_and_other_types_null(db: huntsman.Database) -> None:
    db.ingest("DeviceLogonEvents", [{"DeviceName": "a"}])
    r = db.query("DeviceLogonEvents | project AccountName, RemotePort, IsLocalAdmin, Timestamp")
    assert r.rows == [("", None, None, None)]


def test_unknown_columns_go_to_additional_fields_when_the_table_has_it(
        db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "e.ndjson"
    f.write_text(json.dumps({"DeviceName": "a", "TenantId": "t1", "SourceSystem": "x",
                             "AdditionalFields": '{"Orig":1}'}) + "\n"
                 + json.dumps({"DeviceName": "b"}) + "\n")
    rep = db.ingest("DeviceNetworkEvents", f)
    assert rep.accepted == 2
    assert rep.tables["DeviceNetworkEvents"].overflow == ["TenantId", "SourceSystem"]
    r = db.query("DeviceNetworkEvents | project DeviceName, AdditionalFields | sort by DeviceName")
    assert r.rows == [("b", ""), ("a", '{"Orig":1,"TenantId":"t1","SourceSystem":"x"}')]


def test_timegenerated_alias(db: huntsman.Database) -> None:
    db.ingest("DeviceInfo", [{"TimeGenerated": "2024-01-15T10:00:00Z"}])
    assert db.query("DeviceInfo | project Timestamp").rows == [(datetime(2024, 1, 15, 10,
                                                                         tzinfo=UTC),)]


# ---------------------------------------------------------------- rejections

BAD: list[tuple[str, str, str]] = [
    ('{"ProcessId": "x"}', "DeviceProcessEvents",
     "column 'ProcessId' (long): 'x' is not a whole number"),
    ('{"ProcessId": 1.5}', "DeviceProcessEvents",
     "column 'ProcessId' (long): 1.5 is not a whole number"),
    ('{"ProcessId": true}', "DeviceProcessEvents", "column 'ProcessId' (long): true is not a number"),
    ('{"RemotePort": 4294967296}', "DeviceNetworkEvents",
     "column 'RemotePort' (int): 4294967296 is out of the range of int"),
    ('{"ProcessId": 99999999999999999999}', "DeviceProcessEvents",
     "is out of the range of long"),
    ('{"IsLocalAdmin": "maybe"}', "DeviceLogonEvents",
     'column \'IsLocalAdmin\' (bool): "maybe" is not a bool (true/false)'),
    ('{"Timestamp": "yesterday"}', "DeviceInfo",
     "column 'Timestamp' (datetime): 'yesterday' is not a datetime (use ISO 8601"),
    ('{"Timestamp": "2024-13-45T10:00:00Z"}', "DeviceInfo", "is not a datetime"),
    ('{"AmountSpent": "x"}', "DeviceFileCertificateInfo",
     "unknown column(s) 'AmountSpent': DeviceFileCertificateInfo has no such column and no "
     "AdditionalFields"),
    ('{"DeviceName": "a", ', "DeviceInfo", "invalid JSON"),
    ('[1, 2]', "DeviceInfo", "a record must be a JSON object, not an array"),
    ('"text"', "DeviceInfo", "a record must be a JSON object, not a string"),
]


@pytest.mark.parametrize(("line", "table", "message"), BAD)
def test_each_rejection_names_the_line_and_the_reason(line: str, table: str, message: str,
                                                      tmp_path: Path) -> None:
    db = huntsman.connect()
    f = tmp_path / "in.ndjson"
    f.write_text('{"DeviceName": "ok1"}\n\n' + line + '\n{"DeviceName": "ok2"}\n')
    rep = db.ingest(table, f, on_error="skip")
    assert (rep.accepted, rep.rejected) == (2, 1)
    [rej] = rep.rejections
    assert rej.line == 3 and rej.table == table and message in rej.reason, rej
    assert str(rej).startswith(f"{f}: line 3: ")
    with pytest.raises(IngestError) as info:
        db.ingest(table, f, on_error="fail")
    assert info.value.record == 3 and message in info.value.message
    assert db.query(f"{table} | count").rows == [(2,)]  # the failed batch wrote nothing


def test_a_bad_record_never_poisons_the_batch(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "mixed.ndjson"
    good = [json.dumps({"DeviceName": f"d{i}", "RemotePort": i}) for i in range(1000)]
    good[10] = '{"DeviceName": "bad", "RemotePort": "https"}'
    good[500] = "not json"
    f.write_text("\n".join(good) + "\n")
    rep = db.ingest("DeviceNetworkEvents", f, on_error="skip")
    assert (rep.accepted, rep.rejected) == (998, 2)
    assert [(r.line, r.reason.split(":")[0]) for r in rep.rejections] == \
        [(11, "column 'RemotePort' (int)"), (501, "invalid JSON")]
    assert db.query("DeviceNetworkEvents | count").rows == [(998,)]


def test_not_utf8_lines_are_rejected(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "latin1.ndjson"
    f.write_bytes(b'{"DeviceName": "ok"}\n{"DeviceName": "caf\xe9"}\n')
    rep = db.ingest("DeviceInfo", f, on_error="skip")
    assert rep.accepted == 1 and rep.rejections[0].line == 2
    assert "not UTF-8" in rep.rejections[0].reason


def test_export_rejections(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "export.json"
    f.write_text("\n".join([
        json.dumps({"records": [
            {"category": "AdvancedHunting-DeviceInfo", "properties": {"DeviceName": "a"}},
            {"category": "AdvancedHunting-NoSuchTable", "properties": {}},
            {"category": "SignInLogs", "properties": {}},
            {"category": "AdvancedHunting-DeviceInfo", "properties": {"OSBuild": "x"}},
            {"category": "AdvancedHunting-DeviceInfo"}]}),
        "{broken",
    ]) + "\n")
    rep = db.ingest(None, f, format="export", on_error="skip")
    assert rep.accepted == 1
    got = sorted((r.line, r.item, r.reason) for r in rep.rejections)
    assert got == [
        (1, 2, "unknown table 'NoSuchTable' (category 'AdvancedHunting-NoSuchTable')"),
        (1, 3, "category 'SignInLogs' is not an Advanced Hunting table"),
        (1, 4, "column 'OSBuild' (long): 'x' is not a whole number"),
        (1, 5, "not a streaming-export record (expected an object with 'category' and "
               "'properties')"),
        (2, 0, "invalid JSON"),
    ]


def test_records_and_arrow_rejections(db: huntsman.Database) -> None:
    rep = db.ingest("DeviceNetworkEvents", [{"RemotePort": 1}, {"RemotePort": "x"}],
                    on_error="skip")
    assert rep.accepted == 1 and rep.rejections[0].line == 2
    tbl = pa.table({"RemotePort": pa.array([1.0, 2.5]), "Extra": ["", ""]})
    rep = db.ingest("EmailUrlInfo", pa.table({"Url": ["u"], "Bogus": ["v"]}), on_error="skip")
    assert rep.rejected == 1 and "unknown column(s) 'Bogus'" in rep.rejections[0].reason
    rep = db.ingest("DeviceNetworkEvents", tbl, on_error="skip")
    assert rep.accepted == 1 and "2.5 is not a whole number" in rep.rejections[0].reason
    with pytest.raises(IngestError, match="on_error must be"):
        db.ingest("DeviceNetworkEvents", [], on_error="ignore")  # type: ignore[arg-type]


def test_many_rejections_are_counted_and_listed(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "bad.ndjson"
    f.write_text("\n".join('{"RemotePort": "no"}' for _ in range(300)) + "\n")
    rep = db.ingest("DeviceNetworkEvents", f, on_error="skip")
    assert rep.rejected == 300 and len(rep.rejections) == 300
    assert rep.to_dict()["rejections"][299]["line"] == 300


def test_unix_epoch_arithmetic_is_exact() -> None:
    assert one(0, "Timestamp") == datetime(1970, 1, 1)
    assert one(-1.5, "Timestamp") == datetime(1970, 1, 1) - timedelta(seconds=1.5)


def test_the_machine_time_zone_changes_nothing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    code = (
        "import huntsman\n"
        f"db = huntsman.connect({str(tmp_path / 'tz')!r})\n"
        "db.ingest('DeviceInfo', [{'Timestamp': '2024-01-15T12:00:00+02:00'}, "
        "{'Timestamp': '2024-01-15T10:00:00.1234567Z'}])\n"
        "again = huntsman.connect(" + repr(str(tmp_path / 'tz')) + ")\n"
        "print(again.query('DeviceInfo | extend d = datetime_diff(\"second\", now(), "
        "ingestion_time()) | project Timestamp, ok = abs(d) < 600 | sort by Timestamp asc')"
        ".rows)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TZ": "America/New_York"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "[(datetime.datetime(2024, 1, 15, 10, 0, tzinfo=datetime.timezone.utc), True), "
        "(datetime.datetime(2024, 1, 15, 10, 0, 0, 123457, tzinfo=datetime.timezone.utc), True)]")


@pytest.mark.parametrize("value", [10**30, -(10**30), "1e30", float("inf")])
def test_a_timespan_out_of_range_is_rejected_not_a_crash(value: Any) -> None:
    db = huntsman.connect()
    db.create_table("Spans", [("Timestamp", "datetime"), ("Took", "timespan")])
    rep = db.ingest("Spans", [{"Timestamp": "2024-01-01", "Took": value},
                              {"Timestamp": "2024-01-01", "Took": 5}], on_error="skip")
    assert (rep.accepted, rep.rejected) == (1, 1)
    assert rep.rejections[0].line == 1 and "column 'Took' (timespan)" in rep.rejections[0].reason
