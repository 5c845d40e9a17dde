"""Tenants (one database file each, isolated), retention and its background job, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import huntsman
from huntsman.errors import HuntsmanError
from huntsman.store import BackgroundJob, RetentionJob, Store

HUNTSMAN = [sys.executable, "-m", "huntsman.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run([*HUNTSMAN, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_tenant_lifecycle_and_isolation(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a, b = store.tenant("tenant-a"), store.create_tenant("tenant-b")
    assert store.tenant("tenant-a") is a and store.tenants() == ["tenant-a", "tenant-b"]
    a.ingest("DeviceLogonEvents", [{"DeviceName": "a-only", "RemoteIPType": "Public"}])
    b.ingest("DeviceLogonEvents", [{"DeviceName": "b-only"}])
    assert a.query("DeviceLogonEvents | project DeviceName").rows == [("a-only",)]
    assert b.query("union Device* | project DeviceName").rows == [("b-only",)]
    assert (tmp_path / "tenant-a.duckdb").is_file()
    with pytest.raises(HuntsmanError, match="already exists"):
        store.create_tenant("tenant-a")
    assert (tmp_path / ".tmp" / "tenant-a-ingest").is_dir()  # the engine's ingest spool
    store.delete_tenant("tenant-a")
    assert store.tenants() == ["tenant-b"] and not (tmp_path / "tenant-a.duckdb").exists()
    assert not (tmp_path / ".tmp" / "tenant-a-ingest").exists()
    assert not (tmp_path / ".tmp" / "tenant-a").exists()
    assert store.tenant("tenant-a").query("DeviceLogonEvents | count").rows == [(0,)]
    with pytest.raises(HuntsmanError, match="no tenant 'nope'"):
        store.tenant("nope", create=False)
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(HuntsmanError, match="invalid tenant name"):
            store.tenant(bad)
    store.close()
    # reopened from disk, by the public API too
    assert huntsman.connect(tmp_path, tenant="tenant-b").query(
        "DeviceLogonEvents | project DeviceName").rows == [("b-only",)]


def test_data_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUNTSMAN_DATA_DIR", str(tmp_path / "env"))
    assert Store().data_dir == tmp_path / "env"
    monkeypatch.delenv("HUNTSMAN_DATA_DIR")
    assert Store().data_dir == Path("data")


def test_retention_per_tenant_and_table(tmp_path: Path) -> None:
    now = datetime(2024, 6, 30, tzinfo=UTC)
    store = Store(tmp_path)
    db = store.tenant("acme")
    other = store.tenant("other")
    ages = [1, 20, 40, 200]
    rows = [{"Timestamp": (now - timedelta(days=d)).isoformat(), "DeviceName": f"{d}d"}
            for d in ages]
    for t in (db, other):
        t.ingest("DeviceProcessEvents", rows)
        t.ingest("DeviceNetworkEvents", rows)
    assert db.retention_days("DeviceProcessEvents") == 180
    db.set_retention(30)
    db.set_retention(10, "DeviceNetworkEvents")
    assert db.retention()["DeviceProcessEvents"] == 30
    assert (db.retention_days("DeviceNetworkEvents"), other.retention_days()) == (10, 180)
    job = RetentionJob(store)
    deleted = job.run_once(now=now)
    assert deleted == {"acme": {"DeviceProcessEvents": 2, "DeviceNetworkEvents": 3},
                       "other": {"DeviceProcessEvents": 1, "DeviceNetworkEvents": 1}}
    assert db.query("DeviceProcessEvents | project DeviceName | sort by DeviceName asc"
                    ).rows == [("1d",), ("20d",)]
    assert job.run_once(now=now) == {"acme": {}, "other": {}}
    db.set_retention(None, "DeviceNetworkEvents")
    assert db.retention_days("DeviceNetworkEvents") == 30
    with pytest.raises(HuntsmanError, match="whole number of days"):
        db.set_retention(0)
    with pytest.raises(HuntsmanError, match="unknown table"):
        db.set_retention(5, "Nope")


def test_retention_uses_ingestion_time_without_timestamp(db: huntsman.Database) -> None:
    db.ingest("DeviceTvmSoftwareVulnerabilities", [{"CveId": "CVE-2024-1"}])
    r = db.query("DeviceTvmSoftwareVulnerabilities | project t = ingestion_time()")
    assert r.rows[0][0] is not None
    job = RetentionJob(db)
    assert job.run_once() == {"default": {}}
    assert job.run_once(datetime.now(UTC) + timedelta(days=181)) == \
        {"default": {"DeviceTvmSoftwareVulnerabilities": 1}}


def test_ingestion_time_is_recorded_per_row(db: huntsman.Database) -> None:
    db.ingest("DeviceInfo", [{"DeviceName": "a"}], batch_id="one")
    r = db.query("DeviceInfo | extend t = ingestion_time() | where t > ago(1h) | count")
    assert r.rows == [(1,)]


def test_background_job_runs_without_blocking_queries(db: huntsman.Database) -> None:
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    db.ingest("DeviceEvents", [{"Timestamp": old, "ActionType": "Old"}] * 3
              + [{"Timestamp": datetime.now(UTC).isoformat(), "ActionType": "New"}])
    ran = threading.Event()

    class Probe(RetentionJob):
        def run_once(self, now: datetime | None = None) -> dict[str, dict[str, int]]:
            out = super().run_once(now)
            ran.set()
            return out

    bg = BackgroundJob(Probe(db), interval=0.05).start()
    try:
        assert ran.wait(30)
        deadline = time.monotonic() + 30
        while db.query("DeviceEvents | count").rows != [(1,)]:  # queries run meanwhile
            assert time.monotonic() < deadline
        assert bg.runs >= 1
    finally:
        bg.stop()
    assert db.query("DeviceEvents | project ActionType").rows == [("New",)]


def test_cli_tenants_ingest_query_retention(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    f = tmp_path / "portal-export.csv"
    f.write_text("Timestamp,DeviceId,ReportId,DeviceName,RemoteIP,RemoteIPType\n"
                 "2099-01-01T00:00:00Z,d1,1,srv1,198.51.100.23,Public\n"
                 "2099-01-01T00:00:00Z,d2,1,srv2,10.0.0.1,Private\n"
                 "not a date,d3,1,srv3,10.0.0.2,Private\n")
    p = run("ingest", "--data-dir", data, "--tenant", "contoso", "--table", "DeviceLogonEvents",
            str(f))
    assert p.returncode == 0, p.stderr
    assert "2 accepted, 1 rejected" in p.stdout
    assert "line 4: column 'Timestamp' (datetime): 'not a date' is not a datetime" in p.stdout
    p = run("ingest", "--tenant", "contoso", "--table", "DeviceLogonEvents", "--on-error",
            "fail", str(f), env={"HUNTSMAN_DATA_DIR": data})
    assert p.returncode == 1 and "at record 4" in p.stderr
    p = run("ingest", "--data-dir", data, "--tenant", "contoso", "--json", str(f),
            "--table", "DeviceLogonEvents", "--batch-id", "b1")
    rep = json.loads(p.stdout)
    assert (rep["accepted"], rep["duplicates"], rep["rejected"]) == (0, 2, 1)
    p = run("query", "--data-dir", data, "--tenant", "contoso", "--format", "csv",
            "DeviceLogonEvents | where RemoteIPType == 'Public' | take 20 | project DeviceName")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["DeviceName", "srv1"]
    p = run("query", "--data-dir", data, "--tenant", "fabrikam", "DeviceLogonEvents")
    assert p.returncode == 1 and "no tenant 'fabrikam'" in p.stderr
    assert run("tenants", "create", "fabrikam", "--data-dir", data).returncode == 0
    assert run("tenants", "list", "--data-dir", data).stdout.split() == ["contoso", "fabrikam"]
    p = run("retention", "set", "30", "--tenant", "contoso", "--table", "DeviceLogonEvents",
            "--data-dir", data)
    assert p.returncode == 0, p.stderr
    p = run("retention", "show", "--tenant", "contoso", "--data-dir", data)
    assert "DeviceLogonEvents: 30 days" in p.stdout and "DeviceEvents: 180 days" in p.stdout
    p = run("retention", "run", "--data-dir", data)
    assert p.returncode == 0 and "contoso: 0 expired rows deleted" in p.stdout
    assert run("tenants", "delete", "fabrikam", "--yes", "--data-dir", data).returncode == 0
    assert run("tenants", "list", "--data-dir", data).stdout.split() == ["contoso"]


def test_cli_ingest_export_files(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    files = []
    for i in range(2):
        f = tmp_path / f"export-{i}.json"
        f.write_text(json.dumps({"records": [
            {"time": "2024-01-15T10:00:00Z", "tenantId": "t", "operationName": "Publish",
             "category": "AdvancedHunting-DeviceInfo",
             "properties": {"Timestamp": "2024-01-15T10:00:00Z", "DeviceName": f"d{i}",
                            "DeviceId": "x", "ReportId": i}}]}) + "\n")
        files.append(str(f))
    p = run("ingest", "--data-dir", data, "--tenant", "contoso", *files)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(".json: 1 accepted, 0 rejected") == 2
    assert "DeviceInfo: 1 accepted" in p.stdout
