"""``huntsman rules``: list, create, test (examples and backtest), import-sigma."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from huntsman.cli import app
from huntsman.detections.model import BUILTIN_RULES
from huntsman.state import State
from huntsman.store import Store

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


def test_import_sigma(tmp_path: Path) -> None:
    sigma = tmp_path / "s.yml"
    sigma.write_text("""title: Whoami
logsource: {category: process_creation, product: windows}
detection:
  sel: {Image|endswith: '\\\\whoami.exe'}
  condition: sel
level: low
tags: [attack.t1033]
""")
    r = runner.invoke(app, ["rules", "import-sigma", str(sigma)])
    if importlib.util.find_spec("sigma") is None:
        assert r.exit_code == 1
        assert "pip install pySigma pySigma-backend-kusto" in r.output
    else:  # pragma: no cover - when the optional converter is installed
        assert r.exit_code == 0, r.output
        assert "T1033" in r.output and "DeviceProcessEvents" in r.output
