"""Idempotent batches (batch ids, event keys) and crash recovery with a real kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import huntsman
from huntsman.store import Store


def events(n: int, start: int = 0, device: str = "dev1") -> list[dict[str, object]]:
    return [{"Timestamp": f"2024-01-15T10:{r // 60 % 60:02d}:{r % 60:02d}Z", "DeviceId": device,
             "ReportId": r, "DeviceName": "ws1"} for r in range(start, start + n)]


def count(db: huntsman.Database, table: str = "DeviceProcessEvents") -> int:
    return int(db.query(f"{table} | count").rows[0][0])


def test_same_batch_id_is_written_once(db: huntsman.Database) -> None:
    first = db.ingest("DeviceProcessEvents", events(10), batch_id="agent-7:000042")
    again = db.ingest("DeviceProcessEvents", events(10), batch_id="agent-7:000042")
    assert (first.accepted, first.duplicate_batch) == (10, False)
    assert (again.accepted, again.duplicate_batch, again.duplicates) == (0, True, 10)
    assert "already committed" in again.summary()
    assert count(db) == 10 and "agent-7:000042" in db.batches()


def test_same_rows_in_a_new_batch_are_duplicates(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "e.ndjson"
    f.write_text("\n".join(json.dumps(e) for e in events(50)) + "\n")
    assert db.ingest("DeviceProcessEvents", f).accepted == 50
    rep = db.ingest("DeviceProcessEvents", f)  # re-sent without a batch id
    assert (rep.accepted, rep.duplicates) == (0, 50)
    # overlapping: 25 old + 25 new; another device's same ReportIds are not duplicates
    rep = db.ingest("DeviceProcessEvents", events(50, start=25) + events(5, device="dev2"))
    assert (rep.accepted, rep.duplicates) == (30, 25)
    assert count(db) == 80


def test_rows_without_a_key_are_never_dropped(db: huntsman.Database) -> None:
    db.ingest("DeviceProcessEvents", [{"DeviceName": "a"}])
    db.ingest("DeviceProcessEvents", [{"DeviceName": "a"}])
    db.ingest("DeviceTvmSoftwareVulnerabilities", [{"CveId": "CVE-1"}])  # no ReportId at all
    db.ingest("DeviceTvmSoftwareVulnerabilities", [{"CveId": "CVE-1"}])
    assert count(db) == 2 and count(db, "DeviceTvmSoftwareVulnerabilities") == 2


def test_email_keys_without_device(db: huntsman.Database) -> None:
    rec = {"Timestamp": "2024-01-15T10:00:00Z", "ReportId": "r-1", "Subject": "hi"}
    db.ingest("EmailEvents", [rec])
    assert db.ingest("EmailEvents", [rec]).duplicates == 1
    db.ingest("EmailEvents", [{**rec, "ReportId": ""}, {**rec, "ReportId": ""}])
    assert count(db, "EmailEvents") == 3  # an empty ReportId is no key


def test_a_failed_batch_writes_nothing(db: huntsman.Database, tmp_path: Path) -> None:
    f = tmp_path / "e.ndjson"
    f.write_text("\n".join(json.dumps(e) for e in events(300)) + "\n{bad\n")
    with pytest.raises(huntsman.IngestError, match="invalid JSON"):
        db.ingest("DeviceProcessEvents", f, batch_id="b1")
    assert count(db) == 0 and "b1" not in db.batches()
    assert db.ingest("DeviceProcessEvents", f, batch_id="b1", on_error="skip").accepted == 300


CHILD = textwrap.dedent("""
    import sys
    from huntsman.store import Store
    db = Store(sys.argv[1]).tenant("acme")
    rows = 2000
    for b in range(10_000):
        recs = [{"Timestamp": "2024-01-15T10:00:00Z", "DeviceId": f"b{b}", "ReportId": i,
                 "DeviceName": f"b{b}", "ProcessCommandLine": "x" * 200} for i in range(rows)]
        rep = db.ingest("DeviceProcessEvents", recs, batch_id=f"b{b}")
        print(f"ack b{b} {rep.accepted}", flush=True)
""")


def test_kill_9_during_ingest_keeps_every_acknowledged_batch(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acked: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        _, batch, n = line.split()
        assert n == "2000"
        acked.append(batch)
        if len(acked) == 6:
            break
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through the next batch
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Store(data) as store:
        db = store.tenant("acme", create=False)
        stored = db.batches()
        assert set(acked) <= set(stored)
        per_batch = dict(db.query("DeviceProcessEvents | summarize count() by DeviceName").rows)
        for b in acked:
            assert per_batch[b] == 2000
        # the batch in flight is all there (committed, not yet acknowledged) or not at all
        assert set(per_batch.values()) == {2000} and set(per_batch) == set(stored)
        # and the store takes more
        assert db.ingest("DeviceProcessEvents", events(3)).accepted == 3
