"""``huntsman serve`` as a real process on a loopback port, queried over HTTP with httpx."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.server.test_hunting import SLOW

RUN = "/api/advancedqueries/run"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, *args: str):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "huntsman.cli", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir), *args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server not ready: {self.log.read_text()}")
            time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("serve")
    server = Server(data_dir, "--demo", "--timeout", "2")
    try:
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        r = httpx.post(server.base + "/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": creds["client_id"],
            "client_secret": creds["client_secret"]})
        assert r.status_code == 200, r.text
        yield server, {"Authorization": f"Bearer {r.json()['access_token']}"}
    finally:
        server.stop()


def test_demo_credentials_printed_and_kept(served: tuple[Server, dict[str, str]]) -> None:
    server, _ = served
    creds_file = server.log.parent / "demo-credentials.json"
    creds = json.loads(creds_file.read_text())
    assert oct(creds_file.stat().st_mode & 0o777) == "0o600"
    out = server.output()
    assert creds["client_id"] in out and creds["client_secret"] in out
    assert "/oauth2/token" in out and "/api/advancedqueries/run" in out


def test_demo_runs_the_builtin_rules_into_incidents(served: tuple[Server, dict[str, str]]
                                                     ) -> None:
    """The first start saves the built-in rules for the demo tenant; the scheduler runs them
    over the past 30 days at once, so the demo's attack stories become alerts and incidents."""
    from huntsman.detections.model import BUILTIN_RULES, load_rule_file, rule_files
    server, h = served
    with httpx.Client(base_url=server.base, headers=h, timeout=60) as c:
        rules = c.get("/api/v1/detectionrules").json()["value"]
        assert sorted(r["displayName"] for r in rules) == sorted(
            load_rule_file(p).name for p in rule_files(BUILTIN_RULES))
        deadline = time.monotonic() + 120
        while not (incidents := c.get("/api/incidents").json()["value"]):
            assert time.monotonic() < deadline, "no incident from the built-in rules"
            time.sleep(1)
        alerts = c.get("/api/alerts").json()["value"]
        assert alerts and {a["detectorId"] for a in alerts} <= {r["id"] for r in rules}
        assert incidents[0]["severity"] in ("Informational", "Low", "Medium", "High")


def test_queries_over_http(served: tuple[Server, dict[str, str]]) -> None:
    server, h = served
    with httpx.Client(base_url=server.base, headers=h, timeout=60) as c:
        r = c.post(RUN, json={"Query": "DeviceProcessEvents | where FileName =~ "
                              "'powershell.exe' and ProcessCommandLine has 'EncodedCommand' "
                              "| project DeviceName, AccountName"})
        assert r.status_code == 200 and r.json()["Results"], r.text
        r = c.post("/api/v1/security/runHuntingQuery", json={"Query": "DeviceInfo | count",
                                                             "Timespan": "P1D"})
        assert r.json()["results"][0]["Count"] > 0
        r = c.post(RUN, json={"Query": "DeviceInfo | where Nope"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "KqlSemanticError"
        assert c.post(RUN, json={"Query": "print 1"}, headers={"Authorization": "Bearer x"}
                      ).status_code == 401


def test_eight_parallel_clients(served: tuple[Server, dict[str, str]]) -> None:
    server, h = served
    answers: dict[int, httpx.Response] = {}

    def one(i: int) -> None:
        with httpx.Client(base_url=server.base, headers=h, timeout=60) as c:
            answers[i] = c.post(RUN, json={"Query": "DeviceNetworkEvents | summarize n = "
                                           f"count() by RemotePort | top 3 by n | extend k = {i}"})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(answers) == list(range(8))
    bodies = [answers[i].json()["Results"] for i in range(8)]
    assert all(r[0]["k"] == i for i, r in enumerate(bodies))
    assert len({json.dumps([(x["RemotePort"], x["n"]) for x in b]) for b in bodies}) == 1


def test_timeout_while_others_are_served(served: tuple[Server, dict[str, str]]) -> None:
    server, h = served
    slow: dict[str, httpx.Response] = {}

    def run_slow() -> None:
        slow["r"] = httpx.post(server.base + RUN, json={"Query": SLOW}, headers=h, timeout=60)

    t = threading.Thread(target=run_slow)
    t.start()
    time.sleep(0.3)
    fast = httpx.post(server.base + RUN, json={"Query": "DeviceInfo | count"}, headers=h,
                      timeout=60)
    t.join(60)
    assert fast.status_code == 200
    assert slow["r"].status_code == 400
    assert slow["r"].json()["error"]["limit"] == "timeout"


def test_streams_a_100000_row_result(served: tuple[Server, dict[str, str]]) -> None:
    server, h = served
    q = "range x from 1 to 100001 step 1 | extend s = strcat('row-', tostring(x))"
    with httpx.Client(base_url=server.base, headers=h, timeout=120) as c, \
            c.stream("POST", RUN, json={"Query": q}) as r:
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in r.headers
        pieces = []
        sizes = []
        for piece in r.iter_raw():
            pieces.append(piece)
            sizes.append(len(piece))
    body = json.loads(b"".join(pieces))
    assert len(body["Results"]) == 100_000 and body["Stats"]["Truncated"] is True
    assert body["Results"][-1] == {"x": 100_000, "s": "row-100000"}
    assert len(sizes) > 10  # arrived in many pieces, not one document


def test_a_second_server_on_the_same_data_says_it_is_in_use(
        served: tuple[Server, dict[str, str]]) -> None:
    """DuckDB lets one process open a store: a second server stops at once with a clear error
    (no traceback), and the first keeps serving."""
    server, h = served
    r = subprocess.run([sys.executable, "-m", "huntsman.cli", "serve", "--port",
                        str(_free_port()), "--data-dir", str(server.log.parent), "--demo"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    said = " ".join(r.stderr.split())  # the console wraps long lines
    assert "is in use by another process" in said and "Traceback" not in said, r.stderr
    assert httpx.post(server.base + RUN, json={"Query": "print 1"}, headers=h).status_code == 200


def test_second_start_reuses_the_demo(tmp_path: Path) -> None:
    first = Server(tmp_path, "--demo")
    try:
        creds = json.loads((tmp_path / "demo-credentials.json").read_text())
        token = httpx.post(first.base + "/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": creds["client_id"],
            "client_secret": creds["client_secret"]}).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        count = httpx.post(first.base + RUN, json={"Query": "DeviceProcessEvents | count"},
                           headers=h, timeout=60).json()["Results"]
    finally:
        first.stop()
    again = Server(tmp_path, "--demo")  # the same data, after the first stopped
    try:
        assert creds["client_id"] in again.output()
        assert httpx.post(again.base + RUN, json={"Query": "DeviceProcessEvents | count"},
                          headers=h, timeout=60).json()["Results"] == count  # loaded once
    finally:
        again.stop()


def test_serve_with_postgresql_state(tmp_path: Path) -> None:
    """The same server with its state in a real PostgreSQL (started from Debian's binaries)."""
    from tests.state.pg import PostgresServer, find_bin
    bin_dir = find_bin()
    if bin_dir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL is required under CI", pytrace=False)
        pytest.skip("PostgreSQL not available (no initdb)")
    pg = PostgresServer(bin_dir).start()
    try:
        _, url = pg.create_database()
        server = Server(tmp_path, "--demo", "--state-url", url)
        try:
            assert not (tmp_path / "state.sqlite").exists()
            creds = json.loads((tmp_path / "demo-credentials.json").read_text())
            tok = httpx.post(server.base + "/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": creds["client_id"],
                "client_secret": creds["client_secret"]}).json()["access_token"]
            h = {"Authorization": f"Bearer {tok}"}
            r = httpx.post(server.base + RUN, json={"Query": "DeviceInfo | count"}, headers=h)
            assert r.status_code == 200 and r.json()["Results"][0]["Count"] > 0
            r = httpx.post(server.base + "/api/v1/functions", headers=h, json={
                "name": "Devices", "body": "DeviceInfo | distinct DeviceName"})
            assert r.status_code == 201, r.text
            r = httpx.post(server.base + RUN, json={"Query": "Devices() | count"}, headers=h)
            assert r.json()["Results"][0]["Count"] == 20
        finally:
            server.stop()
    finally:
        pg.stop()


def test_files_pushed_to_the_running_server(served: tuple[Server, dict[str, str]],
                                            tmp_path: Path) -> None:
    """While the server holds the store, files go to POST /api/ingest (as curl sends them)."""
    server, h = served
    now = datetime.now(UTC)
    lines = [json.dumps({"Timestamp": (now - timedelta(seconds=i)).isoformat(),
                         "DeviceId": "pushed", "DeviceName": "pushed-host.contoso.local",
                         "ActionType": "ConnectionSuccess", "RemoteIP": "203.0.113.7",
                         "RemotePort": 443, "ReportId": 900_000 + i}) for i in range(30)]
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    with httpx.Client(base_url=server.base, headers=h, timeout=60) as c:
        r = c.post("/api/ingest", params={"table": "DeviceNetworkEvents"}, content=body,
                   headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 30 and r.json()["engine_read"] is True
        r = c.post(RUN, json={"Query": "DeviceNetworkEvents | where DeviceName startswith "
                              "'pushed-host' | summarize n = count(), ports = dcount(RemotePort)"})
        assert r.json()["Results"] == [{"n": 30, "ports": 1}]


def test_huntsman_ingest_to_the_running_server(served: tuple[Server, dict[str, str]],
                                              tmp_path: Path) -> None:
    server, h = served
    creds = json.loads((server.log.parent / "demo-credentials.json").read_text())
    now = datetime.now(UTC)
    good = tmp_path / "DeviceLogonEvents.ndjson"
    good.write_text("".join(json.dumps({
        "Timestamp": (now - timedelta(minutes=i)).isoformat(), "DeviceId": "cli-pushed",
        "DeviceName": "cli-pushed.contoso.local", "ActionType": "LogonSuccess",
        "LogonType": "Network", "ReportId": 700_000 + i}) + "\n" for i in range(12)))
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"ReportId": "x"}\n')
    base = [sys.executable, "-m", "huntsman.cli", "ingest", "--server", server.base]
    env = {**os.environ, "HUNTSMAN_CLIENT_ID": creds["client_id"],
           "HUNTSMAN_CLIENT_SECRET": creds["client_secret"]}
    r = subprocess.run([*base, "--table", "DeviceLogonEvents", str(good)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{good}: 12 accepted, 0 rejected")
    with httpx.Client(base_url=server.base, headers=h, timeout=60) as c:
        q = c.post(RUN, json={"Query": "DeviceLogonEvents | where DeviceId == 'cli-pushed' "
                              "| count"})
        assert q.json()["Results"] == [{"Count": 12}]
    r = subprocess.run([*base, "--table", "DeviceLogonEvents", "--on-error", "fail", str(bad)],
                       env=env, capture_output=True, text=True, timeout=120)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and said.startswith("error: nothing was stored: column 'ReportId'")
    assert said.endswith(f"'x' is not a whole number (record 1) in {bad}")
    wrong = {**env, "HUNTSMAN_CLIENT_SECRET": "nope"}
    r = subprocess.run([*base, str(good)], env=wrong, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "refused the app's credentials (401)" in " ".join(
        r.stderr.split())
    r = subprocess.run([sys.executable, "-m", "huntsman.cli", "ingest", "--server",
                        f"http://127.0.0.1:{_free_port()}", str(good)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "cannot reach the server" in " ".join(r.stderr.split())
