"""externaldata reads local files from allowed folders only (CLI and API)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import huntsman
from huntsman.errors import KqlError, UnsupportedError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "iocs.csv").write_text("evil.example,high\nbad.test,low\n")
    (tmp_path / "hosts.json").write_text('{"Host":"ws1","Risk":7,"Other":1}\n{"Host":"ws2","Risk":2}\n')
    return tmp_path


def test_refused_by_default(folder: Path) -> None:
    db = huntsman.connect()
    with pytest.raises(UnsupportedError, match="disabled"):
        db.query(f"externaldata(d:string, s:string)[@'{folder}/iocs.csv'] with (format='csv')")


def test_reads_allowed_csv_and_json(folder: Path) -> None:
    db = huntsman.connect()
    db.allow_externaldata(folder)
    r = db.query(f"externaldata(Domain:string, Sev:string)[@'{folder}/iocs.csv'] "
                 "with (format='csv') | where Sev == 'high'")
    assert r.rows == [("evil.example", "high")]
    j = db.query(f"externaldata(Host:string, Risk:long)[@'{folder}/hosts.json'] "
                 "with (format='json') | summarize sum(Risk)")
    assert j.rows == [(9,)]


@pytest.mark.parametrize("path", ["/etc/passwd", "https://evil.example/x.csv",
                                  "../../etc/passwd"])
def test_outside_paths_and_urls_are_refused(folder: Path, path: str) -> None:
    db = huntsman.connect()
    db.allow_externaldata(folder)
    with pytest.raises(KqlError):
        db.query(f"externaldata(s:string)[@'{path}'] with (format='csv')")


def test_cli_option(folder: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "huntsman.cli", "query", "--format", "csv",
                        "--allow-externaldata", str(folder),
                        f"externaldata(Domain:string, Sev:string)[@'{folder}/iocs.csv'] "
                        "with (format='csv') | count"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["Count", "2"]
