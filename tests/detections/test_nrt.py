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
