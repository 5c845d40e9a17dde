"""``POST /api/ingest``: files pushed into a running server's tenant store (in-process server
over a real DuckDB store and SQLite state)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from huntsman.state import State
from huntsman.store import Store
from tests.detections.conftest import EVIL
from tests.server.conftest import Auth, api_server

TENANT = "contoso"
RUN = "/api/advancedqueries/run"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TestClient, Auth, Store, State]]:
    with api_server(tmp_path, [("viewer", TENANT, "viewer"), ("analyst", TENANT, "analyst"),
                               ("collector", TENANT, "responder"), ("other", "other", "admin")],
                    max_ingest_bytes=200_000) as found:
        yield found


def events(n: int, start: int = 1, **extra: Any) -> list[dict[str, Any]]:
    now = datetime.now(UTC) - timedelta(minutes=5)
    return [{"Timestamp": (now + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
             "DeviceId": "dev1", "DeviceName": "dev1.contoso.local", "FileName": "cmd.exe",
             "ReportId": start + i, "ProcessId": 100 + i, **extra} for i in range(n)]


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def count(client: TestClient, auth: Auth, table: str = "DeviceProcessEvents") -> int:
    r = client.post(RUN, json={"Query": f"{table} | count"}, headers=auth("viewer"))
    assert r.status_code == 200, r.text
    return int(r.json()["Results"][0]["Count"])


def test_an_ndjson_file_is_stored_and_queryable(server: Any) -> None:
    client, auth, store, state = server
    r = client.post("/api/ingest?table=DeviceProcessEvents", content=ndjson(events(50)),
                    headers={**auth("collector"), "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (50, 0, 0)
    assert body["engine_read"] is True  # spooled next to the store: DuckDB read it itself
    assert body["source"] == "upload" and body["tables"]["DeviceProcessEvents"]["accepted"] == 50
    assert count(client, auth) == 50
    assert list((Path(store.data_dir) / ".tmp" / "uploads").iterdir()) == []
    log = state.audit_log(TENANT)
    assert any(e.action == "telemetry.ingest" and e.detail["accepted"] == 50 for e in log)


def test_gzip_export_csv_and_a_json_array(server: Any) -> None:
    client, auth, _, _ = server
    h = auth("collector")
    r = client.post("/api/ingest?table=DeviceProcessEvents",
                    content=gzip.compress(ndjson(events(10))), headers=h)
    assert r.status_code == 200 and r.json()["accepted"] == 10, r.text
    envelope = {"records": [{"time": e["Timestamp"], "category": "AdvancedHunting-DeviceEvents",
                             "operationName": "Publish", "properties": e}
                            for e in events(5, start=100)]}
    r = client.post("/api/ingest", content=json.dumps(envelope).encode(), headers=h)
    assert r.status_code == 200 and r.json()["tables"]["DeviceEvents"]["accepted"] == 5, r.text
    buf = io.StringIO()
    rows = events(3, start=200)
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    r = client.post("/api/ingest?table=DeviceProcessEvents", content=buf.getvalue().encode(),
                    headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    r = client.post("/api/ingest?table=DeviceProcessEvents",
                    content=json.dumps(events(2, start=300)).encode(),
                    headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    assert count(client, auth) == 15 and count(client, auth, "DeviceEvents") == 5


def test_bad_records_skip_or_fail(server: Any) -> None:
    client, auth, _, _ = server
    body = ndjson(events(3)) + b'{"ReportId": "x"}\n' + ndjson(events(2, start=10))
    r = client.post("/api/ingest?table=DeviceProcessEvents&on_error=fail", content=body,
                    headers=auth("collector"))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "IngestError" and err["line"] == 4
    assert "'x' is not a whole number" in err["message"] and ".upload" not in err["message"]
    assert count(client, auth) == 0
    r = client.post("/api/ingest?table=DeviceProcessEvents", content=body,
                    headers=auth("collector"))
    assert r.status_code == 200
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (5, 1)
    assert out["rejections"][0]["line"] == 4 and "whole number" in out["rejections"][0]["reason"]


def test_a_batch_sent_twice_is_stored_once(server: Any) -> None:
    client, auth, _, _ = server
    url = "/api/ingest?table=DeviceProcessEvents&batch_id=part-0001"
    body = ndjson(events(20))
    first = client.post(url, content=body, headers=auth("collector")).json()
    again = client.post(url, content=body, headers=auth("collector")).json()
    assert first["accepted"] == 20 and not first["duplicate_batch"]
    assert again["accepted"] == 0 and again["duplicate_batch"] and again["duplicates"] == 20
    # the same events under another batch id: duplicates of stored rows
    other = client.post("/api/ingest?table=DeviceProcessEvents", content=body,
                        headers=auth("collector")).json()
    assert (other["accepted"], other["duplicates"]) == (0, 20)
    assert count(client, auth) == 20


@pytest.mark.parametrize("who, status", [("viewer", 403), ("analyst", 403), (None, 401)])
def test_only_responders_may_ingest(server: Any, who: str | None, status: int) -> None:
    client, auth, _, _ = server
    headers = auth(who) if who else {}
    r = client.post("/api/ingest?table=DeviceProcessEvents", content=ndjson(events(1)),
                    headers=headers)
    assert r.status_code == status, r.text
    assert count(client, auth) == 0


def test_requests_the_server_refuses(server: Any) -> None:
    client, auth, store, _ = server
    h = auth("collector")
    cases = [
        ("/api/ingest?table=NoSuchTable", ndjson(events(1)), 400, "UnknownTable"),
        ("/api/ingest?table=DeviceProcessEvents&format=xml", ndjson(events(1)), 400,
         "UnknownFormat"),
        ("/api/ingest?table=DeviceProcessEvents", b"", 400, "EmptyBody"),
        ("/api/ingest?table=DeviceProcessEvents&on_error=maybe", ndjson(events(1)), 422,
         "InvalidRequest"),
        ("/api/ingest?table=DeviceProcessEvents", ndjson(events(3000)), 413, "TooLarge"),
        ("/api/ingest", ndjson(events(1)), 400, "IngestError"),  # no table named
    ]
    for url, body, status, code in cases:
        r = client.post(url, content=body, headers=h)
        assert (r.status_code, r.json().get("error", {}).get("code")) == (status, code), (url, r.text)
    # a body larger than the limit without a Content-Length is cut off as it streams
    r = client.post("/api/ingest?table=DeviceProcessEvents", headers=h,
                    content=iter([ndjson(events(800))] * 2))
    assert r.status_code == 413
    assert list((Path(store.data_dir) / ".tmp" / "uploads").iterdir()) == []
    assert count(client, auth) == 0


def test_each_caller_ingests_into_its_own_tenant(server: Any) -> None:
    client, auth, store, _ = server
    r = client.post("/api/ingest?table=DeviceProcessEvents", content=ndjson(events(4)),
                    headers=auth("other"))
    assert r.status_code == 200 and r.json()["accepted"] == 4
    assert count(client, auth) == 0
    assert store.tenant("other").query("DeviceProcessEvents | count").rows[0][0] == 4


def test_continuous_rules_see_ingested_files(server: Any) -> None:
    client, auth, _, _ = server
    r = client.post("/api/v1/detectionrules", json={**EVIL, "frequency": "NRT"},
                    headers=auth("analyst"))
    assert r.status_code == 201, r.text
    r = client.post("/api/ingest?table=DeviceProcessEvents",
                    content=ndjson(events(3) + events(1, start=50, FileName="evil.exe")),
                    headers=auth("collector"))
    assert r.status_code == 200 and r.json()["accepted"] == 4
    assert client.app.state.detections.continuous.flush(30)  # type: ignore[attr-defined]
    alerts = client.get("/api/alerts", headers=auth("viewer")).json()["value"]
    assert [a["title"] for a in alerts] == ["evil.exe on dev1.contoso.local"]
