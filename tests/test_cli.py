"""The huntsman command, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HUNTSMAN = [sys.executable, "-m", "huntsman.cli"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HUNTSMAN, *args], capture_output=True, text=True, input=stdin,
                          timeout=120)


def test_query_with_data_folder_as_csv(tmp_path: Path) -> None:
    (tmp_path / "DeviceProcessEvents.ndjson").write_text("\n".join(json.dumps(r) for r in [
        {"DeviceName": "ws1", "FileName": "powershell.exe"},
        {"DeviceName": "ws1", "FileName": "PowerShell.EXE"},
        {"DeviceName": "ws2", "FileName": "cmd.exe"},
    ]))
    hunt = tmp_path / "hunt.kql"
    hunt.write_text("DeviceProcessEvents\n| where FileName =~ 'powershell.exe'\n"
                    "| summarize count() by DeviceName")
    p = run("query", "--data", str(tmp_path), "--format", "csv", "-f", str(hunt))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["DeviceName,count_", "ws1,2"]


def test_query_json_output() -> None:
    p = run("query", "--format", "json", "print a = 1, t = datetime(2024-01-01)")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["columns"] == [{"name": "a", "type": "long"}, {"name": "t", "type": "datetime"}]
    assert out["rows"][0]["a"] == 1


def test_sql_flag_prints_sql() -> None:
    p = run("query", "--sql", "DeviceLogonEvents | where RemoteIPType == 'Public' | take 5")
    assert p.returncode == 0
    assert "FROM \"DeviceLogonEvents\"" in p.stdout and "LIMIT" in p.stdout


def test_bad_query_exits_1_with_position() -> None:
    p = run("query", "DeviceLogonEvents | where Foo == 1")
    assert p.returncode == 1
    assert "line 1, column 27" in p.stderr and "Foo" in p.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    p = run("query", "-f", str(tmp_path / "nope.kql"))
    assert p.returncode == 1 and "no such file" in p.stderr


def test_shell_runs_queries_from_stdin() -> None:
    p = run("shell", "--demo", stdin="DeviceEvents\n| where ActionType == "
            "'AntivirusTroubleshootModeEvent'\n| count\n\n.quit\n")
    assert p.returncode == 0, p.stderr
    assert "Count" in p.stdout and "│ 1 " in p.stdout


def test_tables_lists_the_schema() -> None:
    p = run("tables")
    assert p.returncode == 0
    assert "DeviceProcessEvents (68 columns)" in p.stdout
