"""Continuous (NRT) rules: evaluated on each committed batch of their table, that batch only."""

from __future__ import annotations

from datetime import UTC, datetime

from huntsman.incidents.service import Detections
from huntsman.store import Store
from tests.detections.conftest import EVIL, TENANT, proc

NRT = {**EVIL, "name": "evil-nrt", "frequency": "NRT"}


def _alerts(det: Detections) -> list[str]:
    return sorted(str(a.evidence[0]["ReportId"]) for a in
                  det.service.db.list_alerts(TENANT).items if a.kind == "rule")


def test_an_ingested_event_is_an_alert_when_ingest_returns(det: Detections,
                                                          store: Store) -> None:
    det.service.create_rule(TENANT, "alice", NRT)
    now = datetime.now(UTC)
    report = store.tenant(TENANT).ingest("DeviceProcessEvents", [
        {**proc(0, 1), "Timestamp": now}, {**proc(0, 2, file="fine.exe"), "Timestamp": now}])
    assert report.accepted == 2
    [alert] = det.service.db.list_alerts(TENANT).items
    assert alert.title == "evil.exe on dev1.contoso.local" and alert.evidence[0]["ReportId"] == 1
    rule = det.service.get_rule(TENANT, "evil-nrt")
    assert rule.health.last_alerts == 1 and rule.health.status == "Ok"
    assert alert.incident_id is not None      # correlated like any alert


def test_only_the_new_batch_is_evaluated(det: Detections, store: Store) -> None:
    db = store.tenant(TENANT)
    db.ingest("DeviceProcessEvents", [proc(5, 1)])            # before the rule existed
    det.service.create_rule(TENANT, "alice", NRT)
    db.ingest("DeviceProcessEvents", [proc(1, 2, file="fine.exe")])
    assert _alerts(det) == []
    db.ingest("DeviceProcessEvents", [proc(0, 3)])
    assert _alerts(det) == ["3"]
    # another table's batch does not run the rule
    db.ingest("DeviceEvents", [{"Timestamp": datetime.now(UTC), "DeviceId": "dev1",
                                "FileName": "evil.exe", "ReportId": 4}])
    assert _alerts(det) == ["3"]


def test_a_resent_event_raises_no_second_alert(det: Detections, store: Store) -> None:
    det.service.create_rule(TENANT, "alice", NRT)
    db = store.tenant(TENANT)
    db.ingest("DeviceProcessEvents", [proc(0, 1)], batch_id="b1")
    db.ingest("DeviceProcessEvents", [proc(0, 1)], batch_id="b1")   # the same batch again
    db.ingest("DeviceProcessEvents", [proc(0, 1)], batch_id="b2")   # the same event again
    assert _alerts(det) == ["1"]


def test_disabled_or_deleted_rules_stop(det: Detections, store: Store) -> None:
    rule = det.service.create_rule(TENANT, "alice", NRT)
    db = store.tenant(TENANT)
    det.service.update_rule(TENANT, "alice", rule.id, {"enabled": False})
    db.ingest("DeviceProcessEvents", [proc(0, 1)])
    assert _alerts(det) == []
    det.service.update_rule(TENANT, "alice", rule.id, {"enabled": True})
    db.ingest("DeviceProcessEvents", [proc(0, 2)])
    assert _alerts(det) == ["2"]
    det.service.delete_rule(TENANT, "alice", rule.id)
    db.ingest("DeviceProcessEvents", [proc(0, 3)])
    assert _alerts(det) == ["2"]


def test_rules_attach_at_start(store: Store, state: object) -> None:
    """A server restarting with continuous rules in its state evaluates them again."""
    from huntsman.state import State
    assert isinstance(state, State)
    first = Detections(store, state)
    first.service.create_rule(TENANT, "alice", NRT)
    first.close()
    store.close()   # a new process: the store's databases are opened afresh
    second = Detections(store, state).start(scheduler=False)
    try:
        store.tenant(TENANT).ingest("DeviceProcessEvents", [proc(0, 9)])
        assert _alerts(second) == ["9"]
    finally:
        second.close()


def test_many_rules_share_one_filter_scan(det: Detections, store: Store) -> None:
    """With several continuous rules, each rule's first filter is checked in one scan and only
    the rules with a candidate row run; the results are the same as running each."""
    for i in range(6):
        det.service.create_rule(TENANT, "alice", {
            "name": f"r{i}", "frequency": "NRT", "title": f"r{i}",
            "query": f'DeviceProcessEvents | where FileName == "evil{i}.exe" '
                     f'| extend Tag = "t{i}" | where Tag == "t{i}"'})
    det.service.create_rule(TENANT, "alice", {   # first step is not a filter: always runs
        "name": "ext", "frequency": "NRT", "title": "ext",
        "query": 'DeviceProcessEvents | extend Lower = tolower(FileName) '
                 '| where Lower == "evil4.exe"'})
    db = store.tenant(TENANT)
    db.ingest("DeviceProcessEvents", [proc(0, 1, file="evil2.exe"), proc(0, 2, file="a.exe"),
                                      proc(0, 3, file="EVIL4.EXE"), proc(0, 4, file="evil4.exe")])
    titles = sorted(a.title for a in det.service.db.list_alerts(TENANT).items)
    assert titles == ["ext", "r2", "r4"]     # ext's two rows share their entities: one alert
    by_rule = {a.title: a for a in det.service.db.list_alerts(TENANT).items}
    assert by_rule["r4"].evidence[0]["ReportId"] == 4
    assert sorted(r["ReportId"] for a in det.service.db.list_alerts(TENANT).items
                  if a.title == "ext" for r in a.evidence) == [3, 4]


def test_the_shared_filter_scan_keeps_each_rules_rows() -> None:
    """The one-scan check rewrites a rule's first filter (AND/OR as lazy CASE, regexes
    reached through AND/OR as TRUE): every row the rule's own filter passes must pass it,
    NULLs included; without regexes it is exact."""
    from huntsman.detections.nrt import _first_filter
    from huntsman.store import Database
    db = Database()
    db.ingest("DeviceProcessEvents", [
        {"Timestamp": datetime(2026, 1, 1, tzinfo=UTC), "DeviceId": d, "FileName": f,
         "ProcessCommandLine": c, "ProcessId": pid, "ReportId": i}
        for i, (d, f, c, pid) in enumerate([
            ("a", "x.exe", "run y now", 1), ("b", "X.EXE", "", None), ("c", "z.exe", "y", 5),
            ("d", "", "nothing", None), ("e", "y.exe", "x y z", 7)])])
    filters = [
        'FileName =~ "x.exe" or ProcessCommandLine has "y"',
        'FileName =~ "x.exe" and ProcessId > 0',
        'not(FileName == "z.exe" and ProcessId > 1) or ProcessId == 7',
        '(ProcessId > 2 or FileName startswith "x") and not(ProcessCommandLine has "z")',
        'ProcessId < 3 or (ProcessId > 4 and FileName !~ "y.exe")',
    ]
    for f in filters:
        compiled = db.compile(f"DeviceProcessEvents | where {f} | project ReportId")
        want = sorted(r[0] for r in db.query(f"DeviceProcessEvents | where {f} "
                                             f"| project ReportId").rows)
        pred = _first_filter(compiled, "DeviceProcessEvents")
        assert pred is not None
        got = sorted(r["ReportId"] for r in db.backend.execute(
            f'SELECT "ReportId" FROM "DeviceProcessEvents" WHERE {pred}').to_pylist())
        if "REGEXP" in pred.upper() or "has" not in f:
            assert got == want, f
        else:
            assert set(want) <= set(got), f


def test_a_rule_using_the_clock(det: Detections, store: Store) -> None:
    det.service.create_rule(TENANT, "alice", {
        **NRT, "query": 'DeviceProcessEvents | where FileName == "evil.exe" '
                        'and Timestamp > ago(1h)'})
    now = datetime.now(UTC)
    db = store.tenant(TENANT)
    db.ingest("DeviceProcessEvents", [{**proc(0, 1), "Timestamp": now.replace(year=2020)}])
    db.ingest("DeviceProcessEvents", [{**proc(0, 2), "Timestamp": now}])
    assert _alerts(det) == ["2"]


def test_background_mode_evaluates_right_after_ingest(store: Store, state: object) -> None:
    from huntsman.state import State
    assert isinstance(state, State)
    det = Detections(store, state, nrt_background=True)
    try:
        det.service.create_rule(TENANT, "alice", NRT)
        db = store.tenant(TENANT)
        for i in range(5):   # batches queued while the worker is busy are evaluated together
            db.ingest("DeviceProcessEvents", [proc(0, i, device=f"d{i}")])
        assert det.continuous.flush(30)
        assert _alerts(det) == ["0", "1", "2", "3", "4"]
    finally:
        det.close()
