"""The scheduler with a controllable clock: first run, frequencies, lookbacks, catch-up."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from huntsman.incidents.service import Detections
from huntsman.store import Store
from tests.detections.conftest import EVIL, NOW, TENANT, proc

H = timedelta(hours=1)


def test_new_rule_runs_at_once_over_30_days(det: Detections, store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents",
                                [proc(60 * 24 * 20, 1), proc(60 * 24 * 40, 2, device="old")])
    det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    [run] = det.scheduler.run_once(NOW)
    assert run.window == (NOW - timedelta(days=30), NOW)
    assert [a.machine_id for a in run.alerts] == ["dev1"]   # 20 days old: found; 40: not


def test_runs_at_its_frequency(det: Detections) -> None:
    rule = det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    assert len(det.scheduler.run_once(NOW)) == 1
    assert det.scheduler.run_once(NOW + 30 * timedelta(minutes=1)) == []
    assert det.scheduler.run_once(NOW + H - timedelta(seconds=1)) == []
    [run] = det.scheduler.run_once(NOW + H)
    assert run.window == (NOW + H - 4 * H, NOW + H)          # 1h rules look back 4h
    assert det.service.get_rule(TENANT, rule.id).health.next_run_at == NOW + 2 * H


@pytest.mark.parametrize("frequency, lookback", [
    ("24h", timedelta(days=30)), ("12h", 48 * H), ("3h", 12 * H), ("1h", 4 * H)])
def test_later_runs_use_the_frequencys_lookback(det: Detections, frequency: str,
                                                lookback: timedelta) -> None:
    det.service.create_rule(TENANT, "alice", {**EVIL, "frequency": frequency}, now=NOW)
    det.scheduler.run_once(NOW)
    every = int(frequency[:-1]) * H
    assert det.scheduler.run_once(NOW + every - timedelta(minutes=1)) == []
    [run] = det.scheduler.run_once(NOW + every)
    assert run.window == (NOW + every - lookback, NOW + every)


def test_custom_frequency_and_lookback(det: Detections) -> None:
    det.service.create_rule(TENANT, "alice", {**EVIL, "frequency": "30m", "lookback": "2h"},
                            now=NOW)
    det.scheduler.run_once(NOW)
    half = timedelta(minutes=30)
    [run] = det.scheduler.run_once(NOW + half)
    assert run.window == (NOW + half - 2 * H, NOW + half)


def test_missed_runs_are_made_up_once(det: Detections, store: Store) -> None:
    rule = det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    det.scheduler.run_once(NOW)
    # the server is down for five and a half hours; events happen meanwhile
    back = NOW + 5 * H + timedelta(minutes=30)
    store.tenant(TENANT).ingest("DeviceProcessEvents",
                                [proc(-30, 1), proc(-150, 2, device="dev2")])
    runs = det.scheduler.run_once(back)
    assert len(runs) == 1                                    # once, not once per missed slot
    assert runs[0].window[0] <= NOW - 4 * H                  # back to the last run's lookback
    assert sorted(a.machine_id for a in runs[0].alerts) == ["dev1", "dev2"]
    assert det.scheduler.run_once(back + timedelta(minutes=1)) == []
    assert det.service.get_rule(TENANT, rule.id).health.next_run_at == back + H


def test_disabled_and_continuous_rules_are_not_scheduled(det: Detections) -> None:
    det.service.create_rule(TENANT, "alice", {**EVIL, "enabled": False}, now=NOW)
    det.service.create_rule(TENANT, "alice", {**EVIL, "name": "nrt", "frequency": "NRT"},
                            now=NOW)
    assert det.scheduler.run_once(NOW) == []


def test_reenabling_a_rule_makes_it_due(det: Detections) -> None:
    rule = det.service.create_rule(TENANT, "alice", {**EVIL, "enabled": False}, now=NOW)
    det.service.update_rule(TENANT, "alice", rule.id, {"enabled": True}, now=NOW + H)
    assert len(det.scheduler.run_once(NOW + H)) == 1


def test_background_loop_runs_due_rules(det: Detections) -> None:
    from datetime import UTC, datetime
    rule = det.service.create_rule(TENANT, "alice", EVIL, now=datetime.now(UTC))
    det.loop.interval = 0.05
    det.start()
    deadline = time.monotonic() + 30
    while det.service.get_rule(TENANT, rule.id).health.runs == 0 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    det.close()
    assert det.service.get_rule(TENANT, rule.id).health.runs == 1


def test_old_dedup_keys_are_forgotten(det: Detections, store: Store) -> None:
    store.tenant(TENANT).ingest("DeviceProcessEvents", [proc(10, 1)])
    rule = det.service.create_rule(TENANT, "alice", EVIL, now=NOW)
    det.scheduler.run_once(NOW)
    from huntsman.detections.alerts import event_key
    rows = det.service.db.list_alerts(TENANT).items[0].evidence
    assert len(rows) == 1
    stored = det.service.db.seen_keys(TENANT, rule.id, [event_key(
        {**rows[0], "Timestamp": NOW - timedelta(minutes=10)})])
    assert len(stored) == 1
    assert det.scheduler.prune(NOW + timedelta(days=30)) == 0        # still within reach
    assert det.scheduler.prune(NOW + timedelta(days=32)) == 1
