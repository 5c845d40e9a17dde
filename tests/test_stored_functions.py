"""Stored functions (``functions=``) and the time window (``window=``) of the compiler, run on a
real DuckDB store through ``Database.compile`` and the backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import huntsman
from huntsman.compiler.compiler import compile_kql
from huntsman.errors import KqlSemanticError, KqlSyntaxError
from huntsman.kql.stored import StoredFunction

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def run(db: huntsman.Database, kql: str, **kw: Any) -> list[dict[str, Any]]:
    """Rows of a query compiled with ``functions``/``window``, keyed by Kusto column name."""
    compiled = db.compile(kql, **kw)
    table = db.backend.run(compiled)
    names = [n for n, _ in compiled.columns]
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


@pytest.fixture
def db() -> huntsman.Database:
    d = huntsman.connect()
    d.ingest("DeviceProcessEvents", [
        {"Timestamp": T0 + timedelta(days=i), "DeviceName": f"ws{i}", "FileName": f"p{i}.exe",
         "ProcessId": i}
        for i in range(5)])
    d.ingest("DeviceNetworkEvents", [
        {"Timestamp": T0 + timedelta(days=i), "DeviceName": f"ws{i}", "RemoteIP": f"10.0.0.{i}"}
        for i in range(5)])
    d.create_table("Assets", [("DeviceName", "string"), ("Owner", "string")])
    d.ingest("Assets", [{"DeviceName": f"ws{i}", "Owner": f"o{i}"} for i in range(5)])
    return d


# ---------------------------------------------------------------- stored functions

SCALE = StoredFunction("Scale", "x * factor", (("x", "long", None), ("factor", "long", "10")))
RECENT = StoredFunction("RecentProcs", "DeviceProcessEvents | where Timestamp >= since",
                        (("since", "datetime", None),))
ALL_PROCS = StoredFunction("AllProcs", "DeviceProcessEvents | project DeviceName, ProcessId")
TAG = StoredFunction("Tag", "T | extend Tag = strcat(prefix, DeviceName)",
                     (("T", "table", None), ("prefix", "string", "'dev-'")))
TYPED = StoredFunction("Doubled", "T | extend y = x * 2", (("T", "(x:long)", None),))
CALLER = StoredFunction("Caller", "AllProcs | where ProcessId > Scale(0, 1)")


def test_scalar_stored_function_with_default(db: huntsman.Database) -> None:
    rows = run(db, "print a = Scale(2), b = Scale(2, 3)", functions=[SCALE])
    assert rows == [{"a": 20, "b": 6}]


def test_scalar_stored_function_over_rows(db: huntsman.Database) -> None:
    rows = run(db, "DeviceProcessEvents | where ProcessId < 2 | project v = Scale(ProcessId)",
               functions=[SCALE])
    assert sorted(r["v"] for r in rows) == [0, 10]


def test_tabular_stored_function_by_name_and_call(db: huntsman.Database) -> None:
    by_name = run(db, "AllProcs | count", functions=[ALL_PROCS])
    by_call = run(db, "AllProcs() | count", functions=[ALL_PROCS])
    assert by_name == by_call == [{"Count": 5}]
    rows = run(db, "RecentProcs(datetime(2024-01-04)) | project DeviceName",
               functions=[RECENT])
    assert sorted(r["DeviceName"] for r in rows) == ["ws3", "ws4"]


def test_invoke_stored_function_with_table_parameter(db: huntsman.Database) -> None:
    rows = run(db, "Assets | where Owner == 'o1' | invoke Tag()", functions=[TAG])
    assert rows == [{"DeviceName": "ws1", "Owner": "o1", "Tag": "dev-ws1"}]
    rows = run(db, "Assets | where Owner == 'o1' | invoke Tag('x-') | project Tag",
               functions=[TAG])
    assert rows == [{"Tag": "x-ws1"}]
    rows = run(db, "range x from 1 to 2 step 1 | invoke Doubled()", functions=[TYPED])
    assert rows == [{"x": 1, "y": 2}, {"x": 2, "y": 4}]


def test_stored_function_calls_another(db: huntsman.Database) -> None:
    rows = run(db, "Caller | count", functions=[CALLER, ALL_PROCS, SCALE])
    assert rows == [{"Count": 4}]


def test_query_let_shadows_stored_function(db: huntsman.Database) -> None:
    rows = run(db, "let Scale = (x:long) { x + 1 }; print v = Scale(1)", functions=[SCALE])
    assert rows == [{"v": 2}]
    # the stored body still sees the stored Scale, not the query's
    rows = run(db, "let Scale = (x:long, f:long = 0) { -1 }; Caller | count",
               functions=[CALLER, ALL_PROCS, SCALE])
    assert rows == [{"Count": 4}]


def test_unknown_name_is_still_an_error(db: huntsman.Database) -> None:
    with pytest.raises(KqlSemanticError, match="Unknown function: 'Nope'"):
        db.compile("print Nope(1)", functions=[SCALE])


def test_semantic_error_inside_stored_body_points_into_the_body(db: huntsman.Database) -> None:
    bad = StoredFunction("Bad", "DeviceProcessEvents\n| where NoSuchColumn == 1")
    with pytest.raises(KqlSemanticError) as err:
        db.compile("print 1 | extend x = 2;\nBad | take 1", functions=[bad])
    e = err.value
    assert "in function 'Bad'" in e.message and "NoSuchColumn" in e.message
    assert (e.line, e.column) == (2, 9)
    assert e.context() == "| where NoSuchColumn == 1\n        ^"


def test_error_in_an_argument_default_of_a_stored_function(db: huntsman.Database) -> None:
    bad = StoredFunction("BadDefault", "x", (("x", "long", "nope"),))
    with pytest.raises(KqlSemanticError, match="in function 'BadDefault'") as err:
        db.compile("print BadDefault()", functions=[bad])
    assert err.value.line == 1 and err.value.column > 1


def test_syntax_error_inside_stored_body(db: huntsman.Database) -> None:
    bad = StoredFunction("Broken", "DeviceProcessEvents\n| where (1")
    with pytest.raises(KqlSyntaxError) as err:
        db.compile("Broken", functions=[bad])
    assert err.value.message.startswith("in function 'Broken': ")
    assert err.value.line == 2


def test_query_errors_keep_their_positions(db: huntsman.Database) -> None:
    with pytest.raises(KqlSemanticError) as err:
        db.compile("AllProcs\n| where Nope > 1", functions=[ALL_PROCS, SCALE])
    assert "in function" not in err.value.message
    assert (err.value.line, err.value.column) == (2, 9)


def test_broken_stored_function_does_not_break_other_queries(db: huntsman.Database) -> None:
    broken = StoredFunction("Broken", "this is not KQL (")
    assert run(db, "print v = Scale(1)", functions=[broken, SCALE]) == [{"v": 10}]


def test_declaration_round_trips_through_the_parser() -> None:
    f = StoredFunction("F", "T | take n", (("T", "(x:long)", None), ("n", "long", "1")))
    assert f.declaration() == "let F = (T:(x:long), n:long=1) { T | take n };"
    out = compile_kql("range x from 1 to 5 step 1 | invoke F(2)", functions=[f])
    assert out.columns == [("x", "long")]


# ---------------------------------------------------------------- time window

WINDOW = (T0 + timedelta(days=1), T0 + timedelta(days=3))


def test_window_filters_stored_tables(db: huntsman.Database) -> None:
    rows = run(db, "DeviceProcessEvents | project DeviceName", window=WINDOW)
    assert sorted(r["DeviceName"] for r in rows) == ["ws1", "ws2"]


def test_window_open_ends_and_aware_bounds(db: huntsman.Database) -> None:
    rows = run(db, "DeviceProcessEvents | count", window=(None, T0 + timedelta(days=2)))
    assert rows == [{"Count": 2}]
    rows = run(db, "DeviceProcessEvents | count", window=(T0 + timedelta(days=3), None))
    assert rows == [{"Count": 2}]
    plus2 = timezone(timedelta(hours=2))
    start = datetime(2024, 1, 5, 1, 0, tzinfo=plus2)  # 2024-01-04 23:00 UTC
    rows = run(db, "DeviceProcessEvents | count", window=(start, None))
    assert rows == [{"Count": 1}]
    assert run(db, "DeviceProcessEvents | count", window=(None, None)) == [{"Count": 5}]


def test_window_under_joins_unions_find_and_search(db: huntsman.Database) -> None:
    q = ("DeviceProcessEvents | join kind=inner (DeviceNetworkEvents) on DeviceName "
         "| project DeviceName")
    assert sorted(r["DeviceName"] for r in run(db, q, window=WINDOW)) == ["ws1", "ws2"]
    q = "union withsource=T DeviceProcessEvents, DeviceNetworkEvents | summarize n = count() by T"
    assert sorted((r["T"], r["n"]) for r in run(db, q, window=WINDOW)) == [
        ("DeviceNetworkEvents", 2), ("DeviceProcessEvents", 2)]
    q = "find in (DeviceProcessEvents, DeviceNetworkEvents) where DeviceName == 'ws0'"
    assert run(db, q, window=WINDOW) == []
    assert len(run(db, q)) == 2
    q = "search in (DeviceProcessEvents) 'ws2' | project DeviceName, $table"
    assert run(db, q, window=WINDOW) == [{"DeviceName": "ws2", "$table": "DeviceProcessEvents"}]
    q = "let m = materialize(DeviceNetworkEvents); m | count"
    assert run(db, q, window=WINDOW) == [{"Count": 2}]


def test_window_applies_inside_stored_functions(db: huntsman.Database) -> None:
    assert run(db, "AllProcs | count", functions=[ALL_PROCS], window=WINDOW) == [{"Count": 2}]


def test_window_leaves_inline_data_and_tables_without_timestamp(db: huntsman.Database) -> None:
    q = "datatable(Timestamp:datetime)[datetime(2000-01-01)] | count"
    assert run(db, q, window=WINDOW) == [{"Count": 1}]
    assert run(db, "print x = 1", window=WINDOW) == [{"x": 1}]
    assert run(db, "range i from 1 to 3 step 1 | count", window=WINDOW) == [{"Count": 3}]
    assert run(db, "Assets | count", window=WINDOW) == [{"Count": 5}]


def test_window_filter_reaches_the_table_scan(db: huntsman.Database) -> None:
    """The bounds land on the scan itself (DuckDB pushes them into the scan's filters, where
    zone maps prune row groups), even under a projection and an aggregation."""
    compiled = db.compile("DeviceProcessEvents | summarize count() by DeviceName",
                          window=WINDOW)
    plan = db.backend.execute("EXPLAIN " + compiled.sql)
    text = "\n".join(str(v) for v in plan.column(plan.num_columns - 1).to_pylist())
    scan = text[text.index("Seq Scan"):].replace(" ", "")
    assert "Filters:" in scan and "Timestamp>=" in scan and "Timestamp<" in scan


def test_window_rejects_wrong_bounds(db: huntsman.Database) -> None:
    with pytest.raises(TypeError):
        db.compile("DeviceProcessEvents", window=("2024-01-01", None))  # type: ignore[arg-type]


# ---------------------------------------------------------------- with Defender's functions

def _ips(ip: str) -> str:
    return f'[{{"IPAddress": "{ip}", "SubnetPrefix": 24, "AddressType": "Private"}}]'


def test_window_applies_to_the_tables_defender_functions_read(db: huntsman.Database) -> None:
    db.ingest("DeviceNetworkInfo", [
        {"Timestamp": T0, "DeviceId": "d1", "DeviceName": "ws1", "NetworkAdapterName": "eth0",
         "IPAddresses": _ips("10.0.0.1")},
        {"Timestamp": T0 + timedelta(days=3), "DeviceId": "d1", "DeviceName": "ws1",
         "NetworkAdapterName": "eth0", "IPAddresses": _ips("10.0.0.2")}])
    q = "AssignedIPAddresses('ws1') | project IPAddress"
    assert run(db, q) == [{"IPAddress": "10.0.0.2"}]
    # inside the window the later report does not exist: the earlier one is the latest
    assert run(db, q, window=(None, T0 + timedelta(days=1))) == [{"IPAddress": "10.0.0.1"}]


def test_stored_function_shadows_a_defender_function(db: huntsman.Database) -> None:
    mine = StoredFunction("FileProfile", "T | extend Mine = true", (("T", "table", None),))
    rows = run(db, "print SHA1 = 'x' | invoke FileProfile()", functions=[mine])
    assert rows == [{"SHA1": "x", "Mine": True}]
    rows = run(db, "print SHA1 = 'x' | invoke FileProfile() | project ProfileAvailability")
    assert rows == [{"ProfileAvailability": "Missing"}]


def test_fileprofile_threat_name_from_antivirus_detections(db: huntsman.Database) -> None:
    sha1 = "0123456789abcdef0123456789abcdef01234567"
    db.ingest("DeviceFileEvents", [
        {"Timestamp": T0, "DeviceId": "d1", "FileName": "bad.exe", "SHA1": sha1}])
    db.ingest("DeviceEvents", [
        {"Timestamp": T0 + timedelta(hours=1), "DeviceId": "d1", "ActionType":
         "AntivirusDetection", "SHA1": sha1,
         "AdditionalFields": '{"ThreatName": "Trojan:Win32/Test", "WasRemediated": true}'}])
    rows = run(db, "print SHA1 = toupper('" + sha1 + "') | invoke FileProfile() "
               "| project ThreatName, IsExecutable, GlobalPrevalence, ProfileAvailability")
    assert rows == [{"ThreatName": "Trojan:Win32/Test", "IsExecutable": True,
                     "GlobalPrevalence": 1, "ProfileAvailability": "Available"}]
