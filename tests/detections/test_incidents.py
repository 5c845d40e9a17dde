"""Incidents: correlation of alerts that share an entity, triage, linking hunting results."""

from __future__ import annotations

from datetime import timedelta

import pytest

from huntsman.errors import HuntsmanError
from huntsman.incidents.link import MULTIPLE_STATEMENTS, LinkError, link_rows
from huntsman.incidents.service import Detections
from huntsman.state import State
from huntsman.state.errors import StateError
from huntsman.store import Store
from tests.detections.conftest import EVIL, NOW, TENANT, proc

ODD = {"name": "odd", "frequency": "1h", "severity": "Low",
       "query": 'DeviceProcessEvents | where FileName == "odd.exe"'}


def _run_both(det: Detections, now: object = NOW) -> None:
    for name in ("evil", "odd"):
        det.service.run_rule(TENANT, name, now)  # type: ignore[arg-type]


def test_alerts_sharing_a_device_become_one_incident(det: Detections, store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        proc(30, 1, AccountSid="S-1-5-21-9-9-9-1"),
        proc(20, 2, file="odd.exe", AccountSid="S-1-5-21-9-9-9-2"),
        proc(10, 3, device="dev2", file="odd.exe", AccountSid="S-1-5-21-9-9-9-3")])
    det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    det.service.create_rule(TENANT, "alice", ODD, now=NOW)
    _run_both(det)
    page = det.incidents.db.list_incidents(TENANT)
    assert page.total == 2
    by_size = sorted(page.items, key=lambda i: len(i.alert_ids))
    dev2, dev1 = by_size
    assert len(dev1.alert_ids) == 2 and dev1.severity == "High"   # max of High and Low
    assert len(dev2.alert_ids) == 1 and dev2.severity == "Low"
    timeline = det.incidents.timeline(TENANT, dev1.id)
    assert [e["type"] for e in timeline].count("evidence") == 2


@pytest.mark.parametrize("column, value", [
    ("AccountSid", "S-1-5-21-7-7-7-1001"), ("SHA256", "ab" * 32),
    ("AccountUpn", "bob@contoso.com")])
def test_other_shared_entities_correlate(det: Detections, store: Store, column: str,
                                         value: str) -> None:
    base = {"AccountSid": "", "SHA256": "", "AccountUpn": ""}
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        proc(30, 1, device="a", **{**base, column: value}),
        proc(20, 2, device="b", file="odd.exe", **{**base, column: value})])
    det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    det.service.create_rule(TENANT, "alice", ODD, now=NOW)
    _run_both(det)
    assert det.incidents.db.list_incidents(TENANT).total == 1


def test_a_shared_remote_ip_correlates(det: Detections, store: Store) -> None:
    rows = [{"Timestamp": NOW - timedelta(minutes=m), "DeviceId": d, "RemoteIP": "45.77.65.211",
             "RemotePort": port, "ReportId": m} for m, d, port in ((30, "a", 80), (20, "b", 443))]
    store.tenant(TENANT).ingest("DeviceNetworkEvents", rows)
    for port in (80, 443):
        det.service.create_rule(TENANT, "alice", {
            "name": f"port {port}", "frequency": "1h",
            "query": f"DeviceNetworkEvents | where RemotePort == {port}"}, now=NOW)
        det.service.run_rule(TENANT, f"port {port}", NOW)
    assert det.incidents.db.list_incidents(TENANT).total == 1


def test_well_known_accounts_do_not_correlate(det: Detections, store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        proc(30, 1, device="a", AccountSid="S-1-5-18"),
        proc(20, 2, device="b", file="odd.exe", AccountSid="S-1-5-18")])
    det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    det.service.create_rule(TENANT, "alice", ODD, now=NOW)
    _run_both(det)
    assert det.incidents.db.list_incidents(TENANT).total == 2


def test_correlation_window_and_resolved_incidents(store: Store, state: State) -> None:
    det = Detections(store, state, correlation_window=timedelta(hours=2))
    try:
        db = store.tenant(TENANT)
        det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
        db.ingest("DeviceProcessEvents", [proc(60, 1)])
        det.service.run_rule(TENANT, "evil", NOW)
        db.ingest("DeviceProcessEvents", [proc(-180, 2)])          # 4 h later, same device
        det.service.run_rule(TENANT, "evil", NOW + timedelta(hours=3, minutes=30))
        assert det.incidents.db.list_incidents(TENANT).total == 2    # outside the window
        first = det.incidents.db.list_incidents(TENANT).items[0]
        det.incidents.db.update_incident(TENANT, first.id, "alice", status="Resolved")
        db.ingest("DeviceProcessEvents", [proc(-200, 3)])
        det.service.run_rule(TENANT, "evil", NOW + timedelta(hours=4))
        assert det.incidents.db.list_incidents(TENANT).total == 3    # resolved: a new one
    finally:
        det.close()


def test_triage_of_alerts_and_incidents(det: Detections, store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents", [proc(30, 1)])
    det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    [alert] = det.service.run_rule(TENANT, "evil", NOW).alerts
    db = det.incidents.db
    a = db.update_alert(TENANT, alert.id, "bob", status="inprogress", assigned_to="bob",
                        classification="TruePositive", determination="Malware",
                        comment="looking")
    assert (a.status, a.assigned_to, a.classification, a.determination) == (
        "InProgress", "bob", "TruePositive", "Malware")
    assert a.comments[0]["comment"] == "looking" and a.comments[0]["createdBy"] == "bob"
    with pytest.raises(StateError, match="invalid determination for FalsePositive 'Malware'"):
        db.update_alert(TENANT, alert.id, "bob", classification="FalsePositive",
                        determination="Malware")
    with pytest.raises(StateError, match="invalid status 'Done'"):
        db.update_alert(TENANT, alert.id, "bob", status="Done")
    inc = db.get_incident(TENANT, a.incident_id)  # type: ignore[arg-type]
    inc = db.update_incident(TENANT, inc.id, "bob", status="Resolved", tags=["apt", "apt"],
                             classification="TruePositive", determination="MultiStagedAttack",
                             comment="done")
    assert inc.status == "Resolved" and inc.resolved_at is not None and inc.tags == ["apt"]


def test_link_hunting_results_to_a_new_and_an_existing_incident(det: Detections) -> None:
    rows = [{"Timestamp": "2026-11-01T10:00:00Z", "ReportId": 7, "DeviceId": "dev1",
             "DeviceName": "pc1", "FileName": "x.exe"}]
    query = "DeviceProcessEvents | where FileName == 'x.exe'"
    alert, incident = link_rows(det.incidents.db, TENANT, "alice", query, rows,
                                title="Found while hunting", severity="High",
                                impacted={"device": "DeviceId"})
    assert alert.kind == "manual" and alert.detection_source == "Manual"
    assert alert.evidence == rows and incident.alert_ids == [alert.id]
    assert incident.severity == "High" and incident.name == "Found while hunting"
    more = [{**rows[0], "ReportId": 8}]
    alert2, same = link_rows(det.incidents.db, TENANT, "alice", query, more, title="More",
                             severity="Low", incident_id=incident.id)
    assert same.id == incident.id and same.alert_ids == [alert.id, alert2.id]
    assert same.severity == "High"


@pytest.mark.parametrize("rows, message", [
    ([{"ReportId": 1, "DeviceId": "d"}], "row 1 has no Timestamp column"),
    ([{"Timestamp": "2026-11-01T00:00:00Z", "DeviceId": "d"}], "row 1 has no ReportId column"),
    ([{"Timestamp": "2026-11-01T00:00:00Z", "ReportId": 1, "FileName": "x"}],
     "row 1 has no entity id column"),
    ([], "select at least one row"),
])
def test_link_requires_defenders_columns(det: Detections, rows: list[dict[str, object]],
                                         message: str) -> None:
    with pytest.raises(LinkError, match=message):
        link_rows(det.incidents.db, TENANT, "alice", "T", rows, title="t")


def test_link_refuses_several_statements(det: Detections) -> None:
    rows = [{"Timestamp": "2026-11-01T00:00:00Z", "ReportId": 1, "DeviceId": "d"}]
    with pytest.raises(LinkError) as e:
        link_rows(det.incidents.db, TENANT, "alice",
                  "DeviceEvents | take 1; DeviceProcessEvents | take 1", rows, title="t")
    assert str(e.value) == MULTIPLE_STATEMENTS
    # let statements before one query are fine
    link_rows(det.incidents.db, TENANT, "alice", "let x = 1; DeviceEvents | take x", rows,
              title="t")


def test_link_into_an_unknown_incident(det: Detections) -> None:
    rows = [{"Timestamp": "2026-11-01T00:00:00Z", "ReportId": 1, "DeviceId": "d"}]
    with pytest.raises(HuntsmanError, match="no incident 999"):
        link_rows(det.incidents.db, TENANT, "alice", "T", rows, title="t", incident_id=999)
