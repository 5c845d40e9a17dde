"""Benchmark of the hunting server: 16 concurrent clients, and memory while a big result streams.

Starts ``huntsman serve`` as a real process on a loopback port over a fresh data directory with
the demo tenant (20 devices, 7 days, or ``--devices``/``--days``; request-rate and CPU limits lifted so that the clients are
not throttled), then:

* first, with no server, 16 threads run the same mix of typical hunting queries straight on
  the engine (``Database.query`` with the limits the service applies: 30-day window, row cap,
  timeout) for ``--seconds`` (default 60): the engine's own throughput and p50/p99;
* then 16 client threads (httpx, one connection each) run the mix through
  ``POST /api/advancedqueries/run`` for ``--seconds``: throughput, p50/p99 end-to-end latency,
  and the API overhead = p50 end-to-end ÷ p50 of the engine alone at the same concurrency
  (target ≤ 1.15); also shown: the server's own time per request (``Server-Timing``) and the
  engine time it reports (``Stats.ExecutionTime``), and the same with ``--clients 1``;
* one client streams a 100,000-row result while the server's resident memory is sampled
  every 5 ms (``/proc/<pid>/status``): peak RSS, against the RSS before and the response size;
* a 100,000-row result with a datetime and a dynamic column, end to end against its engine time
  (what turning Arrow into JSON costs).

    .venv/bin/python bench/bench_server.py                # 60 s
    .venv/bin/python bench/bench_server.py --seconds 10   # shorter
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huntsman.server.serve import setup_demo  # noqa: E402
from huntsman.state import State  # noqa: E402
from huntsman.store import Store, demo  # noqa: E402

QUERIES: dict[str, str] = {
    **{f"demo:{k}": v for k, v in demo.HUNTS.items()},
    "top processes 1d": "DeviceProcessEvents | where Timestamp > ago(1d) "
                        "| summarize n = count() by FileName | top 10 by n",
    "logon failures": "DeviceLogonEvents | where ActionType == 'LogonFailed' "
                      "| summarize n = count() by DeviceName, AccountName | top 20 by n",
    "rare remote ports": "DeviceNetworkEvents | summarize n = count() by RemotePort "
                         "| where n < 5 | sort by n asc",
    "has term": "DeviceProcessEvents | where ProcessCommandLine has 'powershell' "
                "| project Timestamp, DeviceName, ProcessCommandLine | take 100",
    "latest per device": "DeviceInfo | summarize arg_max(Timestamp, *) by DeviceId "
                         "| project DeviceName, OSPlatform, PublicIP",
}
STREAM = ("range x from 1 to 100000 step 1 | extend Name = strcat('row-', tostring(x)), "
          "At = datetime(2024-01-01) + x * 1s, Ratio = x * 0.5, "
          "Path = strcat(@'C:\\Windows\\System32\\', tostring(x), '.exe')")
BIG = ("range x from 1 to 100000 step 1 | extend At = datetime(2024-01-01) + x * 1s, "
       "Doc = pack('id', x, 'path', strcat(@'C:\\Temp\\', tostring(x), '.exe'), "
       "'tags', pack_array('a', x)), Name = strcat('row-', tostring(x))")
"""A 100,000-row result of 4 columns with a datetime and a dynamic one: what encoding costs."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, *args: str, log_name: str = "server.log",
                 timeout: float = 300) -> tuple[subprocess.Popen[bytes], str]:
    """``huntsman serve`` over ``data_dir`` on a free port, once it answers: (process, base
    URL); its output goes to ``<data_dir>/<log_name>``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (data_dir / log_name).open("w")
    proc = subprocess.Popen([sys.executable, "-m", "huntsman.cli", "serve", "--port", str(port),
                             "--data-dir", str(data_dir), *args], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base + "/api/v1/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"server did not start; see {data_dir / log_name}")
        time.sleep(0.2)


def run_threads(target: Callable[[int], object], n: int) -> float:
    """``target(k)`` on ``n`` threads at once; the seconds until the last one ended."""
    threads = [threading.Thread(target=target, args=(k,)) for k in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def prepare(data_dir: Path, devices: int = 20, days: int = 7) -> dict[str, str]:
    state, store = State(data_dir=data_dir), Store(data_dir)
    try:
        creds = setup_demo(data_dir, state, store, devices=devices, days=days)
        state.set_tenant_limits("demo", requests_per_minute=10**7, requests_per_hour=10**9,
                                cpu_quota_seconds=10**9)
        return creds
    finally:
        store.close()
        state.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--devices", type=int, default=20, help="demo size (default: the demo's)")
    ap.add_argument("--days", type=int, default=7)
    args = ap.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="huntsman-bench-server-"))
    t0 = time.perf_counter()
    creds = prepare(data_dir, args.devices, args.days)
    print(f"demo tenant ({args.devices} devices, {args.days} days) ready in "
          f"{time.perf_counter() - t0:.1f} s ({data_dir})")
    engine_p50 = engine_only(data_dir, args.seconds, args.clients)
    proc, base = start_server(data_dir, "--demo")
    try:
        token = httpx.post(base + "/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": creds["client_id"],
            "client_secret": creds["client_secret"]}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
            for name, q in QUERIES.items():  # warm up, and check every query works
                r = c.post("/api/advancedqueries/run", json={"Query": q})
                if r.status_code != 200:
                    raise SystemExit(f"{name}: {r.status_code} {r.text}")
        memory(base, headers, proc.pid)
        big_result(base, headers)
        load(base, headers, args.seconds, args.clients, engine_p50)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def engine_only(data_dir: Path, seconds: float, clients: int) -> float:
    """The mix straight on the engine, as the service runs it; returns the p50 latency."""
    from datetime import UTC, datetime, timedelta
    store = Store(data_dir)
    db = store.tenant("demo")
    names = list(QUERIES)
    samples: list[float] = []
    lock = threading.Lock()

    def run(q: str) -> float:
        now = datetime.now(UTC)
        t = time.perf_counter()
        db.query(q, now, functions=[], window=(now - timedelta(days=30), None),
                 timeout=600.0, max_rows=100_000)
        return time.perf_counter() - t

    for q in QUERIES.values():
        run(q)
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            took = run(QUERIES[names[i % len(names)]])
            i += 1
            with lock:
                samples.append(took)

    wall = run_threads(worker, clients)
    store.close()
    print(f"\nengine alone, {clients} threads for {seconds:g} s: {len(samples)} queries, "
          f"{len(samples) / wall:.1f} queries/s, p50 {pct(samples, 50) * 1000:.1f} ms, "
          f"p99 {pct(samples, 99) * 1000:.1f} ms")
    return pct(samples, 50)


def load(base: str, headers: dict[str, str], seconds: float, clients: int,
         engine_p50: float) -> None:
    names = list(QUERIES)
    samples: list[tuple[str, float, float, float]] = []  # (query, end to end, engine, server)
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        i = k
        with httpx.Client(base_url=base, headers=headers, timeout=300) as c:
            while time.monotonic() < stop:
                name = names[i % len(names)]
                i += 1
                t = time.perf_counter()
                r = c.post("/api/advancedqueries/run", json={"Query": QUERIES[name]})
                body = r.content
                took = time.perf_counter() - t
                if r.status_code != 200:
                    with lock:
                        errors.append(f"{name}: {r.status_code} {body[:200]!r}")
                    continue
                engine = json.loads(body)["Stats"]["ExecutionTime"]
                server = float(r.headers["server-timing"].split("dur=")[1]) / 1000
                with lock:
                    samples.append((name, took, engine, server))

    wall = run_threads(client, clients)
    e2e = [s[1] for s in samples]
    engine = [s[2] for s in samples]
    server = [s[3] for s in samples]
    print(f"\n{clients} clients for {seconds:g} s: {len(samples)} queries, "
          f"{len(errors)} errors, {len(samples) / wall:.1f} queries/s")
    if errors:
        print("  first error:", errors[0])
    if not samples:
        return
    print(f"  end to end: p50 {pct(e2e, 50) * 1000:.1f} ms, p99 {pct(e2e, 99) * 1000:.1f} ms")
    print(f"  engine:     p50 {pct(engine, 50) * 1000:.1f} ms, p99 "
          f"{pct(engine, 99) * 1000:.1f} ms")
    print(f"  server:     p50 {pct(server, 50) * 1000:.1f} ms (request in → response ready, "
          f"Server-Timing)")
    print(f"  API overhead: p50 end to end / p50 engine alone at {clients} threads = "
          f"{pct(e2e, 50) / engine_p50:.3f}; / p50 engine time inside the server = "
          f"{pct(e2e, 50) / pct(engine, 50):.3f}")
    print(f"  {'query':28} {'n':>5} {'e2e p50 ms':>11} {'engine p50 ms':>14} {'ratio':>6}")
    for name in QUERIES:
        mine = [s for s in samples if s[0] == name]
        if mine:
            a = statistics.median(s[1] for s in mine)
            b = statistics.median(s[2] for s in mine)
            print(f"  {name:28} {len(mine):5d} {a * 1000:11.1f} {b * 1000:14.1f} {a / b:6.2f}")


def big_result(base: str, headers: dict[str, str], runs: int = 3) -> None:
    """End-to-end time of ``BIG`` (best of ``runs``) against the engine's own time for it."""
    best: tuple[float, float, int] | None = None
    with httpx.Client(base_url=base, headers=headers, timeout=300) as c:
        for _ in range(runs):
            t = time.perf_counter()
            r = c.post("/api/advancedqueries/run", json={"Query": BIG})
            took = time.perf_counter() - t
            engine = json.loads(r.content)["Stats"]["ExecutionTime"]
            if best is None or took < best[0]:
                best = (took, engine, len(r.content))
    assert best is not None
    print(f"\n100,000 rows × 4 columns (datetime, dynamic; {best[2] / 1e6:.1f} MB of JSON): "
          f"{best[0]:.2f} s end to end for {best[1]:.3f} s of engine time (best of {runs})")


def memory(base: str, headers: dict[str, str], pid: int) -> None:
    before = rss_kib(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    size = 0
    t = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=300) as c, \
            c.stream("POST", "/api/advancedqueries/run", json={"Query": STREAM}) as r:
        for piece in r.iter_raw():
            size += len(piece)
    took = time.perf_counter() - t
    done.set()
    sampler.join()
    print(f"\nstreaming 100,000 rows ({size / 1e6:.1f} MB of JSON) in {took:.2f} s: server RSS "
          f"{before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB "
          f"(+{(peak - before) / 1024:.0f} MiB); process high-water mark "
          f"{rss_kib(pid, 'VmHWM') / 1024:.0f} MiB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
