"""The schema reference: tables, columns, descriptions, ActionTypes with the tenant's counts."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from huntsman.schema import action_types, catalog
from tests.server.conftest import Env


def test_schema_lists_every_table(client: TestClient,
                                  auth: Callable[..., dict[str, str]]) -> None:
    r = client.get("/api/v1/schema", headers=auth())
    assert r.status_code == 200
    tables = {t["name"]: t for t in r.json()["tables"]}
    assert set(catalog().tables) <= set(tables)
    dpe = tables["DeviceProcessEvents"]
    cols = {c["name"]: c for c in dpe["columns"]}
    assert cols["FileName"]["type"] == "string" and "description" in cols["FileName"]
    assert dpe["description"] and dpe["builtin"] is True
    samples = [s["query"] for s in dpe["samples"]]
    assert any("EncodedCommand" in s for s in samples)  # the demo's cradle hunt
    assert client.get("/api/v1/schema").status_code == 401


def test_one_table_and_unknown_tables(client: TestClient,
                                      auth: Callable[..., dict[str, str]]) -> None:
    r = client.get("/api/v1/schema/DeviceLogonEvents", headers=auth())
    assert r.status_code == 200 and r.json()["name"] == "DeviceLogonEvents"
    r = client.get("/api/v1/schema/devicelogonevents", headers=auth())
    assert r.status_code == 404 and "did you mean 'DeviceLogonEvents'" in r.text
    assert client.get("/api/v1/schema/Nope/actiontypes", headers=auth()).status_code == 404


def test_action_types_with_counts(client: TestClient,
                                  auth: Callable[..., dict[str, str]]) -> None:
    r = client.get("/api/v1/schema/DeviceEvents/actiontypes", headers=auth())
    assert r.status_code == 200
    items = {a["name"]: a for a in r.json()["actiontypes"]}
    assert set(action_types()["DeviceEvents"]) <= set(items)
    counts = client.post("/api/advancedqueries/run", headers=auth(), json={
        "Query": "DeviceEvents | summarize n = count() by ActionType"}).json()["Results"]
    assert counts
    for row in counts:
        assert items[row["ActionType"]]["rows"] == row["n"]
    assert items["AntivirusTroubleshootModeEvent"]["rows"] >= 1
    assert sum(a["rows"] for a in items.values()) == sum(r["n"] for r in counts)


def test_custom_tables_belong_to_their_tenant(client: TestClient, env: Env,
                                              auth: Callable[..., dict[str, str]]) -> None:
    db = env.store.tenant("other")
    if not db.has_table("MyLogs"):
        db.create_table("MyLogs", [("Timestamp", "datetime"), ("Msg", "string")])
    theirs = client.get("/api/v1/schema/MyLogs", headers=auth("other"))
    assert theirs.status_code == 200
    assert theirs.json()["builtin"] is False
    assert [c["name"] for c in theirs.json()["columns"]] == ["Timestamp", "Msg"]
    assert client.get("/api/v1/schema/MyLogs", headers=auth("viewer")).status_code == 404
    names = [t["name"] for t in client.get("/api/v1/schema", headers=auth()).json()["tables"]]
    assert "MyLogs" not in names
