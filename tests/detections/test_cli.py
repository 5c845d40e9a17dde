"""``huntsman rules``: list, create, test (examples and backtest), import-sigma."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from huntsman.cli import app
from huntsman.detections.model import BUILTIN_RULES, rule_from_dict
from huntsman.incidents.service import Detections
from huntsman.state import State
from huntsman.store import Store
from tests.detections.conftest import NOW, TENANT, proc

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with State(data_dir=tmp_path) as state:
        state.create_tenant("t")
    store = Store(tmp_path)
    store.tenant("t").ingest("DeviceProcessEvents", [
        {"Timestamp": datetime.now(UTC) - timedelta(days=d), "DeviceId": f"d{d}",
         "DeviceName": f"pc{d}", "FileName": "powershell.exe", "ReportId": d,
         "ProcessCommandLine": "powershell.exe -EncodedCommand AAAA",
         "InitiatingProcessFileName": "WINWORD.EXE"} for d in (10, 60, 120)])
    store.close()
    return tmp_path


def test_examples_of_builtin_rules_pass() -> None:
    r = runner.invoke(app, ["rules", "test"])
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output and "FAIL" not in r.output


def test_a_failing_example_fails_the_command(tmp_path: Path) -> None:
    rule = tmp_path / "r.yaml"
    rule.write_text("""name: wrong
query: DeviceProcessEvents | where FileName == "a.exe"
tests:
  - name: expects a match that cannot happen
    match: true
    events:
      DeviceProcessEvents:
        - {Timestamp: "2026-01-01T00:00:00Z", DeviceId: d, ReportId: 1, FileName: b.exe}
""")
    r = runner.invoke(app, ["rules", "test", str(rule)])
    assert r.exit_code == 1
    assert "FAIL wrong / expects a match that cannot happen: expected match, got 0" in r.output


def test_create_list_and_backtest(data_dir: Path) -> None:
    dd = ["--data-dir", str(data_dir)]
    r = runner.invoke(app, ["rules", "create", str(BUILTIN_RULES), "--tenant", "t", *dd])
    assert r.exit_code == 0, r.output
    assert r.output.count("created ") == len(list(BUILTIN_RULES.glob("*.yaml")))
    r = runner.invoke(app, ["rules", "create", str(BUILTIN_RULES), "--tenant", "t", *dd])
    assert r.exit_code == 1 and "pass --replace" in r.output
    r = runner.invoke(app, ["rules", "list", "--tenant", "t", *dd])
    assert r.exit_code == 0 and "Encoded PowerShell launched by an Office application" in r.output
    name = "Encoded PowerShell launched by an Office application"
    r = runner.invoke(app, ["rules", "test", name, "--since", "90d", "--tenant", "t", *dd])
    assert r.exit_code == 0, r.output
    assert "2 alert(s) from 2 row(s) over the last 90d (nothing was raised)" in r.output
    r = runner.invoke(app, ["rules", "run", "--tenant", "t", *dd])
    assert r.exit_code == 0 and "Phishing URL opened" in r.output
    r = runner.invoke(app, ["rules", "test", "nope", "--since", "9d", "--tenant", "t", *dd])
    assert r.exit_code == 1 and "no detection rule 'nope'" in r.output


SIGMA_RULE = """title: Encoded PowerShell command line
id: 1a2b3c4d-0000-4000-8000-000000000001
description: PowerShell started with an encoded command, as download cradles are.
tags: [attack.execution, attack.t1059.001]
logsource: {category: process_creation, product: windows}
detection:
  selection:
    Image|endswith: '\\powershell.exe'
    CommandLine|contains: ' -enc'
  condition: selection
level: high
"""


def test_import_sigma_converts_a_rule_that_finds_its_events(tmp_path: Path, store: Store,
                                                              det: Detections) -> None:
    """A real Sigma rule through pySigma's Kusto backend (Microsoft 365 Defender pipeline):
    the huntsman rule it becomes validates and, backtested, matches only the encoded launch."""
    sigma = tmp_path / "s.yml"
    sigma.write_text(SIGMA_RULE)
    r = runner.invoke(app, ["rules", "import-sigma", str(sigma)])
    assert r.exit_code == 0, r.output
    rule = rule_from_dict(yaml.safe_load(r.output))
    assert rule.severity == "High" and rule.mitre_techniques == ["T1059.001"]
    assert "DeviceProcessEvents" in rule.query
    ps = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    store.tenant(TENANT).ingest("DeviceProcessEvents", [
        proc(30, 1, file="powershell.exe", FolderPath=ps,
             ProcessCommandLine="powershell.exe -enc SQBFAFgA"),
        proc(20, 2, file="powershell.exe", FolderPath=ps,
             ProcessCommandLine="powershell.exe -File backup.ps1"),
    ])
    result = det.service.backtest(TENANT, rule, timedelta(days=1), now=NOW)
    assert [row["ReportId"] for d in result.drafts for row in d.rows] == [1]


def test_import_sigma_reports_a_rule_it_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("title: x\ndetection: {condition: nothing}\n")
    r = runner.invoke(app, ["rules", "import-sigma", str(bad)])
    assert r.exit_code == 1
    assert "bad.yml" in r.output and "Sigma" in r.output
