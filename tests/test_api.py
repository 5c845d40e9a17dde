"""The public Python API of DESIGN.md, end to end on a real DuckDB store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import huntsman
from huntsman.errors import HuntsmanError, IngestError, KqlSemanticError, KqlSyntaxError


@pytest.fixture
def db() -> huntsman.Database:
    return huntsman.connect()


def test_connect_has_every_advanced_hunting_table(db: huntsman.Database) -> None:
    tables = db.tables()
    assert "DeviceProcessEvents" in tables and "EmailEvents" in tables
    assert len(tables) == 23
    assert ("Timestamp", "datetime") in tables["DeviceProcessEvents"]
    assert db.has_table("AlertInfo") and not db.has_table("NoSuchTable")


def test_ingest_rows_and_query_with_kusto_types(db: huntsman.Database) -> None:
    n = db.ingest("DeviceProcessEvents", [
        {"Timestamp": "2024-01-01T10:00:00Z", "DeviceName": "ws1", "FileName": "PowerShell.exe",
         "ProcessId": "42"},
        {"Timestamp": "2024-01-01T11:00:00Z", "DeviceName": "ws2", "FileName": "cmd.exe"},
    ])
    assert n == 2
    r = db.query("DeviceProcessEvents | where FileName =~ 'powershell.exe' "
                 "| project Timestamp, DeviceName, ProcessId, AccountName")
    assert r.columns == [("Timestamp", "datetime"), ("DeviceName", "string"),
                         ("ProcessId", "long"), ("AccountName", "string")]
    assert r.rows == [(datetime(2024, 1, 1, 10, tzinfo=UTC), "ws1", 42, "")]
    assert r.stats.rows == 1 and "SELECT" in r.stats.sql


def test_timegenerated_is_an_alias_of_timestamp(db: huntsman.Database) -> None:
    db.ingest("DeviceLogonEvents", [{"TimeGenerated": "2024-01-01T00:00:00Z", "DeviceName": "a"}])
    r = db.query("DeviceLogonEvents | where TimeGenerated > datetime(2023-12-31) "
                 "| project TimeGenerated, DeviceName")
    assert r.rows == [(datetime(2024, 1, 1, tzinfo=UTC), "a")]


def test_custom_table_roundtrip(db: huntsman.Database) -> None:
    db.create_table("MyLogs", [("Timestamp", "datetime"), ("Msg", "string"),
                               ("Took", "timespan"), ("Extra", "dynamic")])
    assert db.has_table("MyLogs")
    db.ingest("MyLogs", [{"Timestamp": "2024-01-01", "Msg": "hi", "Took": "00:00:01.5",
                          "Extra": {"a": [1, 2]}}])
    r = db.query("MyLogs | extend First = Extra.a[0]")
    assert r.rows == [(datetime(2024, 1, 1, tzinfo=UTC), "hi", timedelta(seconds=1.5),
                       {"a": [1, 2]}, 1)]
    with pytest.raises(HuntsmanError, match="unique"):
        db.create_table("Bad", [("a", "string"), ("A", "long")])
    with pytest.raises(HuntsmanError, match="unknown Kusto type"):
        db.create_table("Bad", [("a", "varchar")])


def test_ingest_arrow_and_files(db: huntsman.Database, tmp_path: Path) -> None:
    tbl = pa.table({"DeviceName": ["a", "b"], "RemotePort": [443, 80]})
    assert db.ingest("DeviceNetworkEvents", tbl) == 2
    nd = tmp_path / "events.ndjson"
    nd.write_text(json.dumps({"DeviceName": "c", "RemotePort": 22}) + "\n")
    assert db.ingest("DeviceNetworkEvents", nd) == 1
    csv = tmp_path / "events.csv"
    csv.write_text("DeviceName,RemotePort\nd,8080\n")
    assert db.ingest("DeviceNetworkEvents", csv) == 1
    r = db.query("DeviceNetworkEvents | summarize ports = make_set(RemotePort) "
                 "| extend n = array_length(ports)")
    assert r.rows[0][1] == 4


def test_ingest_errors_name_the_record(db: huntsman.Database, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="record 2") as info:
        db.ingest("DeviceNetworkEvents", [{"RemotePort": 1}, {"RemotePort": "x"}])
    assert "RemotePort" in str(info.value)
    with pytest.raises(IngestError, match="unknown column"):
        db.ingest("EmailUrlInfo", [{"NoSuchColumn": 1}])  # no AdditionalFields to keep it in
    with pytest.raises(IngestError, match="no such file"):
        db.ingest("DeviceNetworkEvents", tmp_path / "missing.ndjson")
    with pytest.raises(IngestError, match="unknown table"):
        db.ingest("Nope", [])
    assert db.query("DeviceNetworkEvents | count").rows == [(0,)]


def test_self_contained_queries(db: huntsman.Database) -> None:
    assert db.query("print x = 1, y = 'a'").rows == [(1, "a")]
    assert db.query("range i from 1 to 3 step 1").rows == [(1,), (2,), (3,)]
    assert db.query("datatable(a:long)[1, 2] | summarize sum(a)").rows == [(3,)]


def test_render_is_returned_with_the_data(db: huntsman.Database) -> None:
    r = db.query("range x from 1 to 3 step 1 | render timechart with (title='T')")
    assert r.render == {"visualization": "timechart", "title": "T"}
    assert len(r.rows) == 3


def test_errors_carry_positions(db: huntsman.Database) -> None:
    with pytest.raises(KqlSemanticError) as info:
        db.query("DeviceProcessEvents\n| where Foo == 1")
    assert info.value.line == 2 and info.value.column == 9
    assert "Failed to resolve column or scalar expression named 'Foo'" in info.value.message
    with pytest.raises(KqlSyntaxError) as s:
        db.query("DeviceProcessEvents | where (a == 1")
    assert s.value.line == 1


def test_to_sql_and_arrow_pandas(db: huntsman.Database) -> None:
    sql = huntsman.to_sql("DeviceProcessEvents | take 1", dialect="duckdb")
    assert sql.startswith("WITH") and "LIMIT" in sql
    r = db.query("print t = datetime(2024-01-01), d = 1h")
    arrow = r.to_arrow()
    assert arrow.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert arrow.schema.field("d").type == pa.duration("us")
    assert r.to_pandas().shape == (1, 2)


def test_on_disk_store_persists(tmp_path: Path) -> None:
    db = huntsman.connect(tmp_path / "store")
    db.create_table("Notes", [("Msg", "string")])
    db.ingest("Notes", [{"Msg": "kept"}])
    db.close()
    again = huntsman.connect(tmp_path / "store")
    assert again.query("Notes").rows == [("kept",)]


def test_demo_environment_stories_are_findable(db: huntsman.Database) -> None:
    from huntsman.store import demo
    demo.load(db, seed=3, devices=5, days=2)
    recent = db.query("DeviceLogonEvents | where Timestamp > ago(1d) and RemoteIPType == 'Public' "
                      "and ActionType == 'LogonSuccess'")
    assert len(recent) == 1
    cradle = db.query("DeviceProcessEvents | where ProcessCommandLine has 'EncodedCommand' "
                      "and InitiatingProcessFileName =~ 'winword.exe'")
    assert len(cradle) == 1
    public = db.query("DeviceLogonEvents | where RemoteIPType == 'Public'")
    assert len(public) == 13  # a password-guessing burst, then a success
    ts = db.query("DeviceEvents | where ActionType == 'AntivirusTroubleshootModeEvent'")
    assert len(ts) == 1
    end = datetime(2024, 1, 1)
    assert demo.generate(seed=3, devices=5, days=2, end=end) == \
        demo.generate(seed=3, devices=5, days=2, end=end)
