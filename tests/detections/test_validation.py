"""Rule validation before save: every refusal says what to change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from huntsman.detections.model import Rule, RuleError, load_rule_text, rule_from_dict
from huntsman.detections.validate import check_nrt, validate_rule
from huntsman.errors import KqlError
from huntsman.store import Database

Q = 'DeviceProcessEvents | where FileName == "x.exe"'


@pytest.fixture(scope="module")
def db() -> Database:
    return Database()


@pytest.mark.parametrize("frequency, lookback", [
    ("24h", timedelta(days=30)), ("12h", timedelta(hours=48)), ("3h", timedelta(hours=12)),
    ("1h", timedelta(hours=4))])
def test_standard_frequencies_have_defenders_lookbacks(frequency: str,
                                                        lookback: timedelta) -> None:
    s = Rule(name="r", query=Q, frequency=frequency).schedule()
    assert (s.frequency, s.lookback, s.continuous) == (
        timedelta(hours=int(frequency[:-1])), lookback, False)


def test_custom_frequency_and_lookback() -> None:
    s = Rule(name="r", query=Q, frequency="30m", lookback="2h").schedule()
    assert (s.frequency, s.lookback) == (timedelta(minutes=30), timedelta(hours=2))
    assert Rule(name="r", query=Q, frequency="14d").schedule().lookback == timedelta(days=14)
    assert Rule(name="r", query=Q, frequency="NRT").schedule().continuous


@pytest.mark.parametrize("frequency, lookback, message", [
    ("4m", None, "frequency '4m' is out of range"),
    ("15d", None, "frequency '15d' is out of range"),
    ("1h", "31d", "lookback '31d' is out of range"),
    ("2h", "1h", "lookback 1h is shorter than the frequency 2h"),
    ("every hour", None, "invalid frequency 'every hour'"),
    ("NRT", "1h", "continuous (NRT) rule has no lookback"),
])
def test_schedule_refusals(frequency: str, lookback: str | None, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Rule(name="r", query=Q, frequency=frequency, lookback=lookback).schedule()


def test_model_refusals_name_the_field() -> None:
    with pytest.raises(RuleError, match=r"severity: unknown severity 'urgent'"):
        rule_from_dict({"name": "r", "query": Q, "severity": "urgent"})
    with pytest.raises(RuleError, match=r"mitre_techniques: invalid MITRE technique 'X1'"):
        rule_from_dict({"name": "r", "query": Q, "mitre_techniques": ["X1"]})
    with pytest.raises(RuleError, match=r"entities: the device entity must be one of"):
        rule_from_dict({"name": "r", "query": Q, "entities": {"device": "FileName"}})
    with pytest.raises(RuleError, match=r"frequncy: unknown field"):
        rule_from_dict({"name": "r", "query": Q, "frequncy": "1h"})
    with pytest.raises(RuleError, match=r"actions.0.type: unknown automated action 'explode'"):
        rule_from_dict({"name": "r", "query": Q, "actions": [{"type": "explode"}]})
    with pytest.raises(RuleError, match="not valid YAML"):
        load_rule_text("name: [unclosed", "bad.yaml")


def test_placeholders_and_custom_details_limits(db: Database) -> None:
    q = "DeviceProcessEvents"
    with pytest.raises(RuleError, match="the alert title uses 4 columns"):
        Rule(name="r", query=q,
             title="{{FileName}} {{DeviceName}} {{AccountName}} {{FolderPath}}").check()
    details = {f"k{i}": "FileName" for i in range(21)}
    with pytest.raises(RuleError, match="21 custom details; at most 20"):
        Rule(name="r", query=q, custom_details=details).check()
    ok = Rule(name="r", query=q, title="{{FileName}} on {{DeviceName}} by {{AccountName}}",
              custom_details={f"k{i}": "FileName" for i in range(20)})
    validate_rule(ok, db)


@pytest.mark.parametrize("query, message", [
    ("DeviceProcessEvents | project DeviceId, ReportId", "no Timestamp column"),
    ("DeviceProcessEvents | project Timestamp, DeviceId", "no ReportId column"),
    ("DeviceProcessEvents | project Timestamp, ReportId, FileName",
     "no impacted-entity column: project one of DeviceId"),
    ("DeviceProcessEvents | extend Timestamp = tostring(Timestamp)",
     "Timestamp column is a string, not a datetime"),
])
def test_result_columns_are_required(db: Database, query: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        validate_rule(Rule(name="r", query=query), db)


def test_alert_fields_must_name_result_columns(db: Database) -> None:
    q = "DeviceProcessEvents | project Timestamp, ReportId, DeviceId"
    with pytest.raises(RuleError, match=r"placeholder \{\{FileName\}\}.*project it"):
        validate_rule(Rule(name="r", query=q, title="{{FileName}}"), db)
    with pytest.raises(RuleError, match="custom detail 'Cmd' refers to column"):
        validate_rule(Rule(name="r", query=q, custom_details={"Cmd": "ProcessCommandLine"}), db)
    with pytest.raises(RuleError, match="impacted user entity refers to column 'AccountSid'"):
        validate_rule(Rule(name="r", query=q, entities={"user": "AccountSid"}), db)


def test_query_errors_keep_their_position(db: Database) -> None:
    with pytest.raises(KqlError) as e:
        validate_rule(Rule(name="r", query="DeviceProcessEvents\n| where NoSuchColumn == 1"), db)
    assert e.value.line == 2


@pytest.mark.parametrize("query, message", [
    ("DeviceProcessEvents | join (DeviceInfo) on DeviceId", "cannot use 'join'"),
    ("DeviceProcessEvents | union DeviceEvents", "cannot use 'union'"),
    ("DeviceProcessEvents | summarize count() by DeviceId", "cannot use 'summarize'"),
    ("DeviceProcessEvents | take 5", "cannot use 'take'"),
    ("DeviceProcessEvents | where FileName == 'a' // why", "cannot contain comments"),
    ("DeviceProcessEvents | where FileName matches regex strcat('a', 'b')",
     "literal regular expressions"),
    ("DeviceProcessEvents | extend x = extract(FileName, 1, FolderPath)",
     "literal regular expressions"),
    ("IdentityInfo | where AccountUpn != ''", "does not support continuous (NRT) detection"),
    ("externaldata (a:string) [@'x.csv']", "not externaldata"),
    ("let t = DeviceEvents; DeviceProcessEvents", "only use let for constant values"),
    ("DeviceProcessEvents | where DeviceId in ((DeviceInfo | project DeviceId))",
     "read one table only"),
])
def test_nrt_refusals(query: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        check_nrt(query)
    assert e.value.field == "query"


def test_nrt_accepts_row_by_row_queries(db: Database) -> None:
    q = ('DeviceProcessEvents | where FileName =~ "powershell.exe" and ProcessCommandLine '
         'matches regex @"(?i)-enc" | extend Cmd = tolower(ProcessCommandLine) '
         '| project Timestamp, ReportId, DeviceId, Cmd')
    assert check_nrt(q) == "DeviceProcessEvents"
    validate_rule(Rule(name="r", query=q, frequency="NRT"), db)
    # "//" inside a string literal is no comment
    assert check_nrt("DeviceProcessEvents | where FolderPath has 'http://x'") \
        == "DeviceProcessEvents"


def test_yaml_round_trip() -> None:
    rule = Rule(name="r", query=Q, frequency="3h", severity="low", mitre_techniques=["T1059"],
                entities={"device": "DeviceId"})
    again = load_rule_text(rule.to_yaml())
    assert again == rule and again.severity == "Low"
