"""Every ingestion format, detected and named: NDJSON (plain, gzip), JSON arrays, the Defender
streaming-API export (one or many envelopes per file, one per line or pretty-printed, and
the storage-account form), CSV as the portal exports it, Parquet, Arrow and Python records."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import huntsman
from huntsman.errors import IngestError
from huntsman.store.formats import detect_format

T0 = "2024-01-15T10:00:00Z"


def rows(db: huntsman.Database, kql: str) -> list[tuple[object, ...]]:
    return db.query(kql).rows


def envelope(*records: tuple[str, dict[str, object]]) -> dict[str, object]:
    return {"records": [{"time": T0, "tenantId": "7a1f9d3e-0000-4000-8000-000000000001",
                         "operationName": "Publish", "category": f"AdvancedHunting-{table}",
                         "properties": props} for table, props in records]}


def test_ndjson_plain_and_gzip(db: huntsman.Database, tmp_path: Path) -> None:
    lines = [json.dumps({"Timestamp": T0, "DeviceName": f"d{i}", "ProcessId": i})
             for i in range(3)]
    plain = tmp_path / "events.ndjson"
    plain.write_text("\n".join(lines) + "\n")
    gz = tmp_path / "events.ndjson.gz"
    gz.write_bytes(gzip.compress(("\n".join(lines)).encode()))  # no final newline
    odd = tmp_path / "events.data"  # gzip detected by its magic, whatever the name
    odd.write_bytes(gzip.compress(lines[0].encode()))
    assert detect_format(plain) == detect_format(gz) == "ndjson"
    assert db.ingest("DeviceProcessEvents", plain).accepted == 3
    assert db.ingest("DeviceProcessEvents", gz).accepted == 3
    assert db.ingest("DeviceProcessEvents", odd).accepted == 1
    assert rows(db, "DeviceProcessEvents | summarize count(), sum(ProcessId)") == [(7, 6)]


def test_ndjson_crlf_bom_and_blank_lines(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "win.ndjson"
    f.write_bytes(b"\xef\xbb\xbf" + b'{"DeviceName":"a"}\r\n\r\n   \r\n{"DeviceName":"b"}\r\n')
    rep = db.ingest("DeviceInfo", f, on_error="skip")
    assert (rep.accepted, rep.rejected) == (2, 0)
    assert rows(db, "DeviceInfo | project DeviceName | sort by DeviceName asc") == [("a",), ("b",)]


def test_table_from_the_file_name(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "DeviceLogonEvents.jsonl.gz"
    f.write_bytes(gzip.compress(b'{"AccountName":"x"}\n'))
    assert db.ingest(None, f).tables["DeviceLogonEvents"].accepted == 1
    with pytest.raises(IngestError, match="no table named"):
        db.ingest(None, tmp_path.joinpath("x.ndjson").write_text("{}\n") and
                  tmp_path / "x.ndjson")


def test_json_array_and_pretty_printed_records(db: huntsman.Database, tmp_path: Path) -> None:
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"DeviceName": "a"}, {"DeviceName": "b"}], indent=2))
    pretty = tmp_path / "b.json"
    pretty.write_text(json.dumps({"DeviceName": "c"}, indent=2) + "\n"
                      + json.dumps({"DeviceName": "d"}, indent=2))
    assert detect_format(arr) == detect_format(pretty) == "json"
    assert db.ingest("DeviceInfo", arr).accepted == 2
    assert db.ingest("DeviceInfo", pretty).accepted == 2
    assert db.ingest("DeviceInfo", pretty, format="json").accepted == 2


def test_streaming_export_one_envelope_per_line(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "export.json"
    f.write_text("\n".join(json.dumps(e) for e in [
        envelope(("DeviceProcessEvents", {"Timestamp": T0, "DeviceName": "ws1",
                                          "FileName": "cmd.exe", "ProcessId": 4}),
                 ("DeviceNetworkEvents", {"Timestamp": T0, "DeviceName": "ws1",
                                          "RemotePort": 443})),
        envelope(("DeviceProcessEvents", {"Timestamp": T0, "DeviceName": "ws2",
                                          "FileName": "powershell.exe"})),
    ]) + "\n")
    assert detect_format(f) == "export"
    rep = db.ingest(None, f)
    assert {k: v.accepted for k, v in rep.tables.items()} == \
        {"DeviceProcessEvents": 2, "DeviceNetworkEvents": 1}
    assert rows(db, "DeviceProcessEvents | project DeviceName, FileName | sort by DeviceName asc"
                ) == [("ws1", "cmd.exe"), ("ws2", "powershell.exe")]
    assert rows(db, "DeviceNetworkEvents | project RemotePort") == [(443,)]


def test_streaming_export_pretty_and_storage_form(db: huntsman.Database, tmp_path: Path) -> None:
    pretty = tmp_path / "capture.json"
    pretty.write_text(json.dumps(envelope(("DeviceInfo", {"DeviceName": "a"})), indent=2) + "\n"
                      + json.dumps(envelope(("DeviceInfo", {"DeviceName": "b"})), indent=4))
    assert detect_format(pretty) == "export"
    assert db.ingest(None, pretty).accepted == 2
    # the storage-account form: one record per line, no "records" list
    blob = tmp_path / "PT1H.json"
    recs = envelope(("DeviceInfo", {"DeviceName": "c"}), ("EmailEvents", {"Subject": "hi"}))
    blob.write_text("\n".join(json.dumps(r) for r in recs["records"]))  # type: ignore[union-attr,attr-defined]
    assert detect_format(blob) == "export"
    rep = db.ingest(None, blob, format="export")
    assert rep.accepted == 2
    assert rows(db, "DeviceInfo | count") == [(3,)]
    assert rows(db, "EmailEvents | project Subject") == [("hi",)]


def test_export_with_a_table_named_keeps_only_that_table(db: huntsman.Database,
                                                         tmp_path: Path) -> None:
    f = tmp_path / "export.json"
    f.write_text(json.dumps(envelope(("DeviceInfo", {"DeviceName": "a"}),
                                     ("DeviceEvents", {"ActionType": "X"}))))
    rep = db.ingest("DeviceInfo", f, on_error="skip")
    assert rep.accepted == 1 and rep.rejected == 1
    assert rep.rejections[0].line == 1 and rep.rejections[0].item == 2
    assert "a DeviceEvents record (only DeviceInfo is ingested)" in rep.rejections[0].reason


def test_csv_as_the_portal_exports_it(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "portal-export.csv"
    f.write_text('\ufeffTimestamp [UTC],DeviceName,RemoteIP,RemoteIPType,RemotePort,IsLocalAdmin,'
                 'AdditionalFields\n'
                 '"2024-01-15T10:00:00.1234567Z",srv-01,198.51.100.23,Public,3389,True,'
                 '"{""IsLocalLogon"":false}"\n'
                 '1/15/2024 11:00:00,"ws, 02",10.0.0.5,Private,,false,\n', encoding="utf-8")
    assert detect_format(f) == "csv"
    rep = db.ingest("DeviceLogonEvents", f)
    assert rep.accepted == 2
    assert rows(db, "DeviceLogonEvents | project Timestamp, DeviceName, RemotePort, IsLocalAdmin, "
                    "AdditionalFields | sort by Timestamp asc") == [
        (datetime(2024, 1, 15, 10, 0, 0, 123457, tzinfo=UTC), "srv-01", 3389, True,
         '{"IsLocalLogon":false}'),
        (datetime(2024, 1, 15, 11, tzinfo=UTC), "ws, 02", None, False, ""),
    ]


def test_csv_gzip_and_multiline_values(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "x.csv.gz"
    f.write_bytes(gzip.compress(b'FileName,ProcessCommandLine\nps.exe,"line one\nline two"\n'))
    assert db.ingest("DeviceProcessEvents", f).accepted == 1
    assert rows(db, "DeviceProcessEvents | project ProcessCommandLine") == \
        [("line one\nline two",)]


def test_parquet_and_arrow(db: huntsman.Database, tmp_path: Path) -> None:
    tbl = pa.table({
        "Timestamp": pa.array([datetime(2024, 1, 15, 12, tzinfo=UTC)], pa.timestamp("ms", "UTC")),
        "DeviceName": ["p"], "RemotePort": pa.array([22], pa.int16()),
        "AdditionalFields": pa.array([{"a": 1}]),
    })
    f = tmp_path / "events.parquet"
    pq.write_table(tbl, f)
    assert detect_format(f) == "parquet"
    assert db.ingest("DeviceNetworkEvents", f).accepted == 1
    assert db.ingest("DeviceNetworkEvents", tbl).accepted == 1
    assert db.ingest("DeviceNetworkEvents", tbl.to_batches()[0]).accepted == 1
    assert rows(db, "DeviceNetworkEvents | distinct Timestamp, DeviceName, RemotePort, "
                    "AdditionalFields") == [(datetime(2024, 1, 15, 12, tzinfo=UTC), "p", 22,
                                             '{"a":1}')]


def test_python_records_mixed_types_fall_back_per_record(db: huntsman.Database) -> None:
    recs = [{"DeviceName": "a", "ProcessId": 1}, {"DeviceName": "b", "ProcessId": "2"},
            {"DeviceName": "c", "AdditionalFields": {"k": [1, 2]}}]
    assert db.ingest("DeviceProcessEvents", recs).accepted == 3
    assert db.ingest("DeviceProcessEvents", {"DeviceName": "single"}).accepted == 1
    assert rows(db, "DeviceProcessEvents | project DeviceName, ProcessId, AdditionalFields "
                    "| sort by DeviceName asc") == [
        ("a", 1, ""), ("b", 2, ""), ("c", None, '{"k":[1,2]}'), ("single", None, "")]


def test_named_format_and_unknown_format(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "events.txt"
    f.write_text('{"DeviceName":"a"}\n')
    assert db.ingest("DeviceInfo", f, format="ndjson").accepted == 1
    with pytest.raises(IngestError, match="unknown format 'xml'"):
        db.ingest("DeviceInfo", f, format="xml")
    with pytest.raises(IngestError, match="no such file"):
        db.ingest("DeviceInfo", tmp_path / "missing.ndjson")
