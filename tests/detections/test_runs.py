"""Running rules: alerts with evidence, dedup across runs, grouping, the cap, rule health."""

from __future__ import annotations

from datetime import timedelta

from huntsman.incidents.service import Detections
from huntsman.state import State
from huntsman.store import Store
from tests.detections.conftest import EVIL, NOW, TENANT, proc


def test_alert_carries_evidence_entities_and_rendered_title(det: Detections,
                                                           store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents", [proc(10, 1)])
    rule = det.service.create_rule(TENANT, "alice", {
        **EVIL, "description": "{{FileName}} ran", "custom_details": {"File": "FileName"},
        "mitre_techniques": ["T1204"], "recommended_actions": "Isolate it",
        "actions": [{"type": "isolate_device", "column": "DeviceId"}]}, now=NOW)
    result = det.service.run_rule(TENANT, rule.id, NOW)
    assert result.error is None and result.rows == 1
    [alert] = result.alerts
    assert alert.title == "evil.exe on dev1.contoso.local"
    assert alert.description == "evil.exe ran" and alert.severity == "High"
    assert alert.custom_details == {"File": "evil.exe"}
    assert alert.mitre_techniques == ["T1204"] and alert.machine_id == "dev1"
    assert alert.actions == [{"type": "isolate_device", "column": "DeviceId",
                              "status": "Recorded", "targets": ["dev1"]}]
    assert alert.evidence[0]["ReportId"] == 1 and alert.evidence[0]["FileName"] == "evil.exe"
    assert {"kind": "device", "value": "dev1", "column": "DeviceId"} in alert.entities
    stored = det.service.db.get_alert(TENANT, alert.id)
    assert stored.evidence == alert.evidence and stored.rule_id == rule.id


def test_evidence_outlives_the_events(det: Detections, store: Store) -> None:
    db = store.tenant(TENANT)
    db.ingest("DeviceProcessEvents", [proc(10, 1)])
    rule = det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    [alert] = det.service.run_rule(TENANT, rule.id, NOW).alerts
    db.set_retention(1)
    from huntsman.store import RetentionJob
    RetentionJob(db).run_once(NOW + timedelta(days=3))
    assert db.query("DeviceProcessEvents | count").rows == [(0,)]
    assert det.service.db.get_alert(TENANT, alert.id).evidence[0]["ReportId"] == 1


def test_the_same_event_never_raises_a_second_alert(det: Detections, store: Store) -> None:
    db = store.tenant(TENANT)
    db.ingest("DeviceProcessEvents", [proc(30, 1)])
    rule = det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    first = det.service.run_rule(TENANT, rule.id, NOW)
    assert len(first.alerts) == 1
    # the next run's lookback (4 h) still covers the event: no second alert
    second = det.service.run_rule(TENANT, rule.id, NOW + timedelta(hours=1))
    assert second.rows == 1 and second.alerts == [] and second.skipped_duplicates == 1
    # a new event on the same device does raise one
    db.ingest("DeviceProcessEvents", [proc(-70, 2)])
    third = det.service.run_rule(TENANT, rule.id, NOW + timedelta(hours=2))
    assert [a.evidence[0]["ReportId"] for a in third.alerts] == [2]
    assert det.service.db.list_alerts(TENANT).total == 2


def test_rows_sharing_entities_and_details_are_one_alert(det: Detections,
                                                         store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        proc(10, 1), proc(9, 2), proc(8, 3, device="dev2"),
        proc(7, 4, ProcessCommandLine="evil.exe --other")])
    rule = det.service.create_rule(TENANT, "alice", {
        **EVIL, "entities": {"device": "DeviceId"},
        "custom_details": {"Cmd": "ProcessCommandLine"}}, now=NOW)
    alerts = det.service.run_rule(TENANT, rule.id, NOW).alerts
    groups = sorted((a.machine_id, a.custom_details["Cmd"], len(a.evidence)) for a in alerts)
    assert groups == [("dev1", "evil.exe", 2), ("dev1", "evil.exe --other", 1),
                      ("dev2", "evil.exe", 1)]


def test_cap_per_run_raises_a_truncated_health_alert(store: Store, state: State) -> None:
    det = Detections(store, state, max_alerts_per_run=3)
    try:
        store.tenant(TENANT).ingest("DeviceProcessEvents",
                                    [proc(50 - i, i, device=f"dev{i}") for i in range(5)])
        rule = det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
        result = det.service.run_rule(TENANT, rule.id, NOW)
        assert result.truncated and len(result.alerts) == 3
        assert result.health_alert is not None
        assert result.health_alert.kind == "health"
        assert "truncated" in result.health_alert.title
        assert "5 alerts; only 3" in result.health_alert.description
        # the events left out are raised by the next run, not dropped
        later = det.service.run_rule(TENANT, rule.id, NOW + timedelta(hours=1))
        assert len(later.alerts) == 2 and not later.truncated
    finally:
        det.close()


def test_three_failures_mark_the_rule_failing_with_a_health_alert(det: Detections,
                                                                  store: Store) -> None:
    db = store.tenant(TENANT)
    db.create_table("MyLogs", [("Timestamp", "datetime"), ("ReportId", "long"),
                               ("DeviceId", "string"), ("Text", "string")])
    rule = det.service.create_rule(TENANT, "alice", {
        "name": "custom", "frequency": "1h",
        "query": "MyLogs | extend n = toint(Text) | where n > 0"}, now=NOW)
    db.ingest("MyLogs", [{"Timestamp": NOW - timedelta(minutes=5), "ReportId": 1,
                          "DeviceId": "d", "Text": "1"}])
    assert det.service.run_rule(TENANT, rule.id, NOW).error is None
    db.backend.drop_table("MyLogs")  # the table the rule reads is gone: every run fails
    results = [det.service.run_rule(TENANT, rule.id, NOW + timedelta(hours=h))
               for h in (1, 2, 3, 4)]
    assert all(r.error and "MyLogs" in r.error for r in results)
    assert [r.health_alert is not None for r in results] == [False, False, True, False]
    health = det.service.get_rule(TENANT, rule.id)
    assert health.health.status == "Failing" and health.enabled
    assert health.health.consecutive_failures == 4 and "MyLogs" in health.health.last_error
    assert "failed on 3 consecutive runs" in results[2].health_alert.description  # type: ignore[union-attr]


def test_health_records_each_run(det: Detections, store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents", [proc(10, 1), proc(11, 2, file="ok.exe")])
    rule = det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    assert det.service.get_rule(TENANT, rule.id).health.status == "NotRun"
    det.service.run_rule(TENANT, rule.id, NOW)
    h = det.service.get_rule(TENANT, rule.id).health
    assert (h.status, h.last_run_at, h.last_rows, h.last_alerts, h.runs) == ("Ok", NOW, 1, 1, 1)
    assert h.next_run_at == NOW + timedelta(hours=1) and h.last_duration is not None


def test_backtest_raises_nothing(det: Detections, store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents",
                                [proc(60 * 24 * 40, 1), proc(60 * 24 * 80, 2, device="dev2"),
                                 proc(60 * 24 * 100, 3, device="dev3")])
    from huntsman.detections.model import rule_from_dict
    result = det.service.backtest(TENANT, rule_from_dict(EVIL), timedelta(days=90), NOW)
    assert sorted(d.alert.machine_id for d in result.drafts) == ["dev1", "dev2"]
    assert det.service.db.list_alerts(TENANT).total == 0
