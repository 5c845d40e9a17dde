"""The demo generator: deterministic, coherent, and every story found by the README's hunts."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest

import huntsman
from huntsman.store import demo

END = datetime(2024, 3, 1, 12)


@pytest.fixture(scope="module")
def env() -> huntsman.Database:
    db = huntsman.connect()
    demo.load(db, seed=5, devices=15, days=3, end=END)
    return db


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a = demo.generate(seed=11, devices=6, days=2, end=END)
    b = demo.generate(seed=11, devices=6, days=2, end=END)
    c = demo.generate(seed=12, devices=6, days=2, end=END)
    assert a.keys() == b.keys() and all(a[t].equals(b[t]) for t in a)
    assert not a["DeviceProcessEvents"].equals(c["DeviceProcessEvents"])


def test_every_table_in_the_schema_types(env: huntsman.Database) -> None:
    tables = demo.generate(seed=5, devices=4, days=1, end=END)
    expected = {"DeviceProcessEvents", "DeviceNetworkEvents", "DeviceLogonEvents",
                "DeviceFileEvents", "DeviceRegistryEvents", "DeviceImageLoadEvents",
                "DeviceEvents", "DeviceInfo", "DeviceNetworkInfo", "EmailEvents",
                "EmailAttachmentInfo", "EmailUrlInfo", "UrlClickEvents", "AlertInfo",
                "AlertEvidence"}
    assert set(tables) == expected
    for name, tbl in tables.items():
        assert tbl.column_names == [c for c, _ in env.tables()[name]], name
        assert tbl.num_rows > 0


def test_loaded_once(env: huntsman.Database) -> None:
    before = env.query("DeviceProcessEvents | count").rows
    assert demo.load(env, seed=5, devices=15, days=3, end=END) == {}
    assert env.query("DeviceProcessEvents | count").rows == before


def test_process_trees_are_coherent(env: huntsman.Database) -> None:
    # InitiatingProcess* is the parent's own detail, as Defender fills it
    parents = {p.name: p.parent for p in demo.PROCS}
    r = env.query("DeviceProcessEvents | summarize count() by FileName, "
                  "InitiatingProcessFileName, InitiatingProcessParentFileName")
    for file, parent, grand, _ in r.rows:
        if file in ("powershell.exe", "cmd.exe", "msedge.exe", "WINWORD.EXE", "reg.exe"):
            continue  # the stories' own chains
        assert parents[file] == parent, (file, parent)
        assert parents[parent] == grand or grand == "wininit.exe", (parent, grand)
    # the parent's id and creation time are the same in every child of one instance
    r = env.query("DeviceProcessEvents | where InitiatingProcessFileName == 'explorer.exe' "
                  "| summarize dcount(InitiatingProcessId), "
                  "dcount(InitiatingProcessCommandLine) by DeviceId")
    assert all(ids == 1 and cmds == 1 for _, ids, cmds in r.rows)
    # children start after their parent
    assert env.query("DeviceProcessEvents | where ProcessCreationTime < "
                     "InitiatingProcessCreationTime | count").rows == [(0,)]


def test_devices_users_and_snapshots_agree(env: huntsman.Database) -> None:
    r = env.query("DeviceInfo | summarize dcount(DeviceId), snapshots = count(), "
                  "platforms = make_set(OSPlatform)")
    devices, snapshots, platforms = r.rows[0]
    assert devices == 15 and snapshots == 15 * 3 * 4
    assert set(platforms) == {"WindowsServer2022", "Windows11", "Windows10"}
    unknown = env.query("DeviceProcessEvents | distinct DeviceId "
                        "| join kind=leftanti (DeviceInfo | distinct DeviceId) on DeviceId")
    assert len(unknown) == 0
    net = env.query("DeviceNetworkInfo | summarize dcount(DeviceId)").rows
    assert net == [(15,)]


def test_email_urls_and_clicks_link_up(env: huntsman.Database) -> None:
    orphan_urls = env.query("EmailUrlInfo | join kind=leftanti EmailEvents on NetworkMessageId")
    orphan_clicks = env.query("UrlClickEvents | join kind=leftanti EmailUrlInfo "
                              "on NetworkMessageId, Url")
    assert len(orphan_urls) == 0 and len(orphan_clicks) == 0
    assert env.query("EmailAttachmentInfo | count").rows[0][0] > 0


@pytest.mark.parametrize("story", sorted(demo.HUNTS))
def test_readme_hunts_find_each_story(env: huntsman.Database, story: str) -> None:
    r = env.query(demo.HUNTS[story])
    got = r.to_dicts()
    if story == "phishing":
        assert [(x["SenderFromAddress"], x["FileName"]) for x in got] == \
            [(demo.PHISH_SENDER, "msedge.exe")]
        assert demo.PHISH_URL in got[0]["ProcessCommandLine"]
    elif story == "cradle":
        assert [(x["InitiatingProcessFileName"], x["DeviceName"]) for x in got] == \
            [("WINWORD.EXE", "ws-001.contoso.local")]
    elif story == "default_password":
        assert [x["RegistryValueData"] for x in got] == [demo.DEFAULT_PASSWORD]
    elif story == "public_logons":
        assert [(x["DeviceName"], x["RemoteIP"], x["Failed"], x["Succeeded"]) for x in got] == \
            [("srv-000.contoso.local", demo.BRUTE_IP, 12, 1)]
    elif story == "troubleshooting":
        assert [x["State"] for x in got] == ["Enabled"]
    elif story == "tampering":
        assert {x["Status"] for x in got} == {"Blocked"} and len(got) == 2
        assert any(x["Target"].endswith(demo.EXCLUSION) for x in got)
    elif story == "alerts":
        assert len(got) == 4 and got[0]["Title"] == "Suspicious PowerShell download cradle"
    else:  # pragma: no cover
        raise AssertionError(story)


def test_stories_are_recent_so_ago_finds_them() -> None:
    db = huntsman.connect()
    demo.load(db, devices=5, days=2)  # ends now
    assert len(db.query("DeviceEvents | where Timestamp > ago(1d) "
                        "and ActionType == 'AntivirusTroubleshootModeEvent'")) == 1


def test_background_never_matches_the_story_hunts() -> None:
    tables = demo.generate(seed=9, devices=30, days=2, end=END)
    proc = tables["DeviceProcessEvents"]
    cmd = pc.utf8_lower(proc.column("ProcessCommandLine").cast("string"))
    assert pc.sum(pc.match_substring(cmd, "encodedcommand")).as_py() == 1
    logons = tables["DeviceLogonEvents"]
    assert pc.sum(pc.equal(logons.column("RemoteIPType").cast("string"), "Public")).as_py() == 13


def test_cli_demo_and_make_run_entry_point(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    p = subprocess.run([sys.executable, "-m", "huntsman.cli", "demo", "--data-dir", data,
                        "--devices", "8", "--days", "2", "--seed", "4"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "tenant 'default'" in p.stdout and "DeviceProcessEvents:" in p.stdout
    q = subprocess.run([sys.executable, "-m", "huntsman.cli", "query", "--data-dir", data,
                        "--tenant", "default", "--format", "csv", demo.HUNTS["troubleshooting"]
                        + " | project State"], capture_output=True, text=True, timeout=300)
    assert q.stdout.splitlines() == ["State", "Enabled"], q.stderr
    s = subprocess.run([sys.executable, "-m", "huntsman.cli", "demo-shell"],
                       input=demo.HUNTS["cradle"] + " | count\n\n.quit\n", capture_output=True,
                       text=True, timeout=300)
    assert s.returncode == 0 and "│ 1 " in s.stdout, s.stderr
