"""The REST API: /api/v1/detectionrules, /api/alerts, /api/incidents (in-process server over
a real DuckDB store and SQLite state)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from huntsman.server.app import create_app
from huntsman.server.settings import ServerSettings
from huntsman.state import State
from huntsman.store import Store
from tests.detections.conftest import EVIL, TENANT, proc
from tests.server.conftest import Auth, api_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TestClient, Auth, Store]]:
    with api_server(tmp_path, [("viewer", TENANT, "viewer"), ("analyst", TENANT, "analyst"),
                               ("other", "other", "admin")]) as (client, auth, store, _):
        yield client, auth, store


def test_rule_lifecycle(server: tuple[TestClient, Auth, Store]) -> None:
    client, auth, store = server
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        {**proc(0, 1), "Timestamp": datetime.now(UTC) - timedelta(minutes=5)}])
    assert client.post("/api/v1/detectionrules", json=EVIL,
                       headers=auth("viewer")).status_code == 403
    r = client.post("/api/v1/detectionrules", json=EVIL, headers=auth("analyst"))
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["displayName"] == "evil" and rule["schedule"]["period"] == "1h"
    assert rule["detectionAction"]["alertTemplate"]["severity"] == "High"
    assert rule["lastRunDetails"]["status"] == "NotRun"
    listed = client.get("/api/v1/detectionrules", headers=auth("viewer")).json()["value"]
    assert [x["id"] for x in listed] == [rule["id"]]
    # run it now: one alert
    run = client.post(f"/api/v1/detectionrules/{rule['id']}/run", headers=auth("analyst"))
    assert run.status_code == 200 and len(run.json()["alerts"]) == 1
    got = client.get(f"/api/v1/detectionrules/{rule['id']}", headers=auth("viewer")).json()
    assert got["lastRunDetails"]["status"] == "Ok" and got["lastRunDetails"]["alerts"] == 1
    # change: stale version → 409, current → 200
    stale = client.patch(f"/api/v1/detectionrules/{rule['id']}",
                         json={"version": 99, "isEnabled": False}, headers=auth("analyst"))
    assert stale.status_code == 409
    ok = client.patch(f"/api/v1/detectionrules/{rule['id']}",
                      json={"version": got["version"], "isEnabled": False, "severity": "Low"},
                      headers=auth("analyst"))
    assert ok.status_code == 200 and ok.json()["isEnabled"] is False
    assert ok.json()["lastRunDetails"]["status"] == "Disabled"
    assert client.delete(f"/api/v1/detectionrules/{rule['id']}",
                         headers=auth("analyst")).status_code == 204
    assert client.get(f"/api/v1/detectionrules/{rule['id']}",
                      headers=auth("viewer")).status_code == 404
    # the alert outlives its rule
    assert client.get("/api/alerts", headers=auth("viewer")).json()["@odata.count"] == 1
    # another tenant sees none of it
    assert client.get("/api/alerts", headers=auth("other")).json()["value"] == []


def test_invalid_rules_say_what_to_change(server: tuple[TestClient, Auth, Store]) -> None:
    client, auth, _ = server
    bad = {**EVIL, "query": "DeviceProcessEvents | project Timestamp, DeviceId"}
    r = client.post("/api/v1/detectionrules", json=bad, headers=auth("analyst"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidRule"
    assert "no ReportId column" in r.json()["error"]["message"]
    r = client.post("/api/v1/detectionrules", json={**EVIL, "frequency": "NRT",
                                                     "query": "DeviceProcessEvents | take 1"},
                    headers=auth("analyst"))
    assert r.status_code == 400 and "cannot use 'take'" in r.json()["error"]["message"]
    assert r.json()["error"]["line"] == 1
    r = client.post("/api/v1/detectionrules", json={"yaml": "name: y\nquery: |\n  "
                                                    "DeviceProcessEvents\nfrequency: 3h\n"},
                    headers=auth("analyst"))
    assert r.status_code == 201 and r.json()["schedule"]["period"] == "3h"
    r = client.post("/api/v1/detectionrules", json={"yaml": "name: y\nquery: T\n"},
                    headers=auth("analyst"))
    assert r.status_code == 400


def test_alerts_and_incidents_api(server: tuple[TestClient, Auth, Store]) -> None:
    client, auth, store = server
    now = datetime.now(UTC)
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        {**proc(0, i, device=f"dev{i}"), "Timestamp": now - timedelta(minutes=i)}
        for i in range(1, 4)])
    rule = client.post("/api/v1/detectionrules", json=EVIL, headers=auth("analyst")).json()
    client.post(f"/api/v1/detectionrules/{rule['id']}/run", headers=auth("analyst"))
    page = client.get("/api/alerts", params={"$top": 2}, headers=auth("viewer")).json()
    assert page["@odata.count"] == 3 and len(page["value"]) == 2
    rest = client.get("/api/alerts", params={"$top": 2, "$skip": 2},
                      headers=auth("viewer")).json()["value"]
    assert len(rest) == 1
    one = rest[0]
    assert one["detectorId"] == rule["id"] and one["status"] == "New"
    assert "evidence" not in one
    full = client.get(f"/api/alerts/{one['id']}", headers=auth("viewer")).json()
    assert full["evidence"][0]["FileName"] == "evil.exe"
    r = client.patch(f"/api/alerts/{one['id']}", json={
        "status": "Resolved", "assignedTo": "bob@contoso.com",
        "classification": "FalsePositive", "determination": "Clean", "comment": "test box"},
        headers=auth("analyst"))
    assert r.status_code == 200 and r.json()["resolvedTime"] is not None
    assert client.patch(f"/api/alerts/{one['id']}", json={"status": "x"},
                        headers=auth("viewer")).status_code == 403
    f = client.get("/api/alerts", params={"$filter": "status eq 'Resolved' and "
                                          f"machineId eq '{one['machineId']}'"},
                   headers=auth("viewer")).json()
    assert [a["id"] for a in f["value"]] == [one["id"]]
    f = client.get("/api/alerts", params={"$filter": "status ne 'Resolved' and "
                                          f"alertCreationTime gt {(now - timedelta(hours=1)).isoformat().replace('+00:00', 'Z')}"},
                   headers=auth("viewer")).json()
    assert f["@odata.count"] == 2
    bad = client.get("/api/alerts", params={"$filter": "colour eq 'red'"},
                     headers=auth("viewer"))
    assert bad.status_code == 400 and "unknown field 'colour'" in bad.json()["error"]["message"]
    bad = client.get("/api/alerts", params={"$filter": "status eq 'New' or status eq 'x'"},
                     headers=auth("viewer"))
    assert bad.status_code == 400 and "expected 'and'" in bad.json()["error"]["message"]
    # three devices, one account: the alerts share a user, so one incident
    incidents = client.get("/api/incidents", headers=auth("viewer")).json()
    assert incidents["@odata.count"] == 1
    inc = incidents["value"][0]
    assert inc["severity"] == "High" and len(inc["alerts"]) == 3
    r = client.patch(f"/api/incidents/{inc['incidentId']}", json={
        "status": "InProgress", "assignedTo": "bob", "tags": ["triage"], "comment": "on it"},
        headers=auth("analyst"))
    assert r.status_code == 200 and r.json()["tags"] == ["triage"]
    assert r.json()["comments"][0]["comment"] == "on it"
    f = client.get("/api/incidents", params={"$filter": "status eq 'InProgress'"},
                   headers=auth("viewer")).json()
    assert [i["incidentId"] for i in f["value"]] == [inc["incidentId"]]
    tl = client.get(f"/api/incidents/{inc['incidentId']}/timeline",
                    headers=auth("viewer")).json()["value"]
    assert sorted(e["type"] for e in tl) == ["alert"] * 3 + ["comment"] + ["evidence"] * 3
    assert tl[-1]["type"] == "comment"      # oldest first: the comment came last


def test_link_hunting_results(server: tuple[TestClient, Auth, Store]) -> None:
    client, auth, _ = server
    row = {"Timestamp": "2026-11-01T10:00:00Z", "ReportId": 5, "DeviceId": "dev1",
           "DeviceName": "pc1"}
    body = {"query": "DeviceProcessEvents | take 1", "rows": [row], "title": "Hunted",
            "severity": "High", "impactedEntities": {"device": "DeviceId"}}
    r = client.post("/api/incidents/link", json=body, headers=auth("analyst"))
    assert r.status_code == 201, r.text
    incident = r.json()["incident"]
    assert incident["incidentName"] == "Hunted" and incident["alerts"][0]["kind"] == "manual"
    again = client.post("/api/incidents/link", json={
        **body, "title": "More", "incidentId": incident["incidentId"],
        "rows": [{**row, "ReportId": 6}]}, headers=auth("analyst"))
    assert len(again.json()["incident"]["alertIds"]) == 2
    missing = client.post("/api/incidents/link", json={
        **body, "rows": [{"Timestamp": row["Timestamp"], "DeviceId": "d"}]},
        headers=auth("analyst"))
    assert missing.status_code == 400
    assert "no ReportId column" in missing.json()["error"]["message"]
    several = client.post("/api/incidents/link", json={
        **body, "query": "DeviceEvents | take 1; DeviceProcessEvents | take 1"},
        headers=auth("analyst"))
    assert several.status_code == 400 and "multiple statements" in several.json()["error"][
        "message"]


def test_continuous_rule_through_the_api(server: tuple[TestClient, Auth, Store]) -> None:
    client, auth, store = server
    r = client.post("/api/v1/detectionrules", json={**EVIL, "frequency": "NRT"},
                    headers=auth("analyst"))
    assert r.status_code == 201 and r.json()["schedule"]["period"] == "NRT"
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        {**proc(0, 1), "Timestamp": datetime.now(UTC)}])
    # the server evaluates continuous rules on a worker thread right after the ingest call
    assert client.app.state.detections.continuous.flush(30)   # type: ignore[attr-defined]
    alerts = client.get("/api/alerts", headers=auth("viewer")).json()["value"]
    assert [a["title"] for a in alerts] == ["evil.exe on dev1.contoso.local"]


def test_backtest_api(server: tuple[TestClient, Auth, Store]) -> None:
    client, auth, store = server
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        {**proc(0, 1), "Timestamp": datetime.now(UTC) - timedelta(days=50)}])
    rule = client.post("/api/v1/detectionrules", json={**EVIL, "enabled": False},
                       headers=auth("analyst")).json()
    r = client.post(f"/api/v1/detectionrules/{rule['id']}/backtest", json={"since": "90d"},
                    headers=auth("analyst"))
    assert r.status_code == 200 and len(r.json()["alerts"]) == 1
    assert client.get("/api/alerts", headers=auth("viewer")).json()["value"] == []


def test_the_servers_lifespan_runs_the_scheduler(tmp_path: Path) -> None:
    import time

    from huntsman.incidents.service import Detections
    store, state = Store(tmp_path), State(data_dir=tmp_path)
    state.create_tenant(TENANT)
    info, secret = state.create_app(TENANT, "a", ["analyst"])
    app = create_app(ServerSettings(data_dir=tmp_path, store=store, state=state,
                                    cookie_secure=False))
    app.state.detections = det = Detections(store, state, scheduler_interval=0.05)
    with TestClient(app) as client:            # the lifespan starts the scheduler
        token = client.post("/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": info.client_id,
            "client_secret": secret}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        rule = client.post("/api/v1/detectionrules", json=EVIL, headers=headers).json()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and client.get(
                f"/api/v1/detectionrules/{rule['id']}",
                headers=headers).json()["lastRunDetails"]["status"] == "NotRun":
            time.sleep(0.05)
        got = client.get(f"/api/v1/detectionrules/{rule['id']}", headers=headers).json()
        assert got["lastRunDetails"]["status"] == "Ok"
    assert not det.loop.running                 # stopped with the server
    store.close()
    state.close()
