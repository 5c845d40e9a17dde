"""The built-in rules (content/rules): their example events, and every demo attack story."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from huntsman.detections.model import BUILTIN_RULES, load_rule_file, rule_files
from huntsman.detections.testing import run_rule_tests
from huntsman.incidents.service import Detections
from huntsman.store import Store
from huntsman.store import demo as demo_data
from tests.detections.conftest import NOW, TENANT

FILES = rule_files(BUILTIN_RULES)
STORY_RULES = {
    "phishing": "Phishing URL opened in a browser from Outlook",
    "cradle": "Encoded PowerShell launched by an Office application",
    "default_password": "Credentials stored in Winlogon DefaultPassword",
    "public_logons": "Successful logon from a public IP after repeated failures",
    "troubleshooting": "Defender troubleshooting mode turned on",
    "tampering": "Attempt to weaken Defender blocked by tamper protection",
}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_examples(path: Path) -> None:
    rule = load_rule_file(path)
    outcomes = run_rule_tests(rule)
    assert {o.expected_match for o in outcomes} == {True, False}, \
        "each built-in rule has events that must and must not match"
    failed = [(o.name, o.error, o.alerts) for o in outcomes if not o.passed]
    assert failed == []


def test_a_rule_for_every_story() -> None:
    assert set(STORY_RULES) == set(demo_data.STORIES)
    names = {load_rule_file(p).name for p in FILES}
    assert set(STORY_RULES.values()) <= names


def test_every_story_of_the_demo_raises_its_alert(det: Detections, store: Store) -> None:
    for path in FILES:
        det.service.create_rule(TENANT, "alice", load_rule_file(path), now=NOW)
    db = store.tenant(TENANT)
    # ingest the demo table by table, as agents would: continuous rules see each batch
    for table, data in demo_data.generate(seed=3, devices=8, days=3, end=NOW).items():
        db.ingest(table, data)
    det.scheduler.run_once(NOW)                       # the scheduled rules' first run
    alerts = [a for a in det.service.db.list_alerts(TENANT).items if a.kind == "rule"]
    by_rule = Counter(a.rule_name for a in alerts)
    assert all(by_rule[name] >= 1 for name in STORY_RULES.values()), by_rule
    assert sum(by_rule.values()) == len(alerts)
    victim = {a.machine_id for a in alerts
              if a.rule_name == STORY_RULES["cradle"]}
    assert len(victim) == 1
    # the victim's stories (phishing to tampering) correlate into one incident
    incident_ids = {a.incident_id for a in alerts if a.machine_id in victim}
    assert len(incident_ids) == 1
    cradle = next(a for a in alerts if a.rule_name == STORY_RULES["cradle"])
    assert "EncodedCommand" in cradle.evidence[0]["ProcessCommandLine"]
    brute = next(a for a in alerts if a.rule_name == STORY_RULES["public_logons"])
    assert brute.custom_details["RemoteIP"] == demo_data.BRUTE_IP
    # nothing else in the demo's ordinary activity raises these rules
    assert by_rule[STORY_RULES["cradle"]] == 1 and by_rule[STORY_RULES["phishing"]] == 1
