"""Continuous rules run over the candidate rows of a batch only: the alerts must be those of
each rule's query run over the whole batch (proposed for tests/detections/)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from huntsman.incidents.service import Detections
from huntsman.state import State
from huntsman.store import Database, Store

TENANT = "t"
RULES = {
    "by-name": 'DeviceProcessEvents | where FileName =~ "evil.exe"',
    "by-term": 'DeviceProcessEvents | where ProcessCommandLine has "bad-marker" '
               '| extend Tag = strcat(FileName, "!") | where Tag endswith "!"',
    "by-json": 'DeviceProcessEvents | where tostring(parse_json(AdditionalFields).k) == "v"',
    "by-id": 'DeviceProcessEvents | where ProcessId > 900 and FileName !~ "evil.exe"',
    "nothing": 'DeviceProcessEvents | where FileName == "never.exe"',
}


def _rows(n: int) -> list[dict[str, object]]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, object]] = []
    for i in range(n):
        rows.append({
            "Timestamp": now, "DeviceId": f"dev{i}", "DeviceName": f"ws-{i}",
            "FileName": "EVIL.EXE" if i % 97 == 3 else "svchost.exe",
            "ProcessCommandLine": "run bad-marker now" if i % 89 == 5 else f"svchost -k {i}",
            "AdditionalFields": '{"k": "v"}' if i == 42 else "",
            "ProcessId": i, "ReportId": i + 1})
    return rows


def test_alerts_are_those_of_each_rule_over_the_whole_batch(tmp_path: Path) -> None:
    rows = _rows(1000)
    oracle = Database()
    oracle.ingest("DeviceProcessEvents", rows)
    want = {name: sorted(r["ReportId"] for r in oracle.query(q).to_dicts())
            for name, q in RULES.items()}
    assert all(want[n] for n in RULES if n != "nothing")   # each rule matches some rows

    store, state = Store(tmp_path), State("sqlite://")
    state.create_tenant(TENANT)
    det = Detections(store, state, max_alerts_per_run=10_000).start(scheduler=False)
    try:
        for name, query in RULES.items():
            det.service.create_rule(TENANT, "alice", {"name": name, "frequency": "NRT",
                                                      "title": name, "query": query})
        store.tenant(TENANT).ingest("DeviceProcessEvents", rows)
        got: dict[str, list[int]] = {name: [] for name in RULES}
        for alert in det.service.db.list_alerts(TENANT).items:
            if alert.kind == "rule":
                got[alert.title].extend(int(r["ReportId"]) for r in alert.evidence)
        assert {n: sorted(v) for n, v in got.items()} == want
    finally:
        det.close()
        store.close()
