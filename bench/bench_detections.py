"""Benchmark of detections: continuous (NRT) rules on ingestion, and the rule scheduler.

* NRT: ``--rules`` continuous rules on DeviceProcessEvents (different FileName/command-line
  conditions, a few of which match); rows ingested in batches at ``--rate`` events/s for
  ``--seconds``. Reported: p50/p99 latency from an event's ingest call to its alert being
  queryable (polled after each ingest call; ``--background`` runs the rules on a worker thread
  right after the call, as the server does, instead of inside it), and
  the sustainable ingest throughput with the rules on, as a ratio of the same with them off.
* Scheduler: ``--scheduled`` rules of mixed frequencies over a store of ``--store-rows`` rows;
  a simulated day of scheduler passes (a controllable clock); reported: whether any run started
  later than its frequency allows, and the busiest hour's total run time.

    .venv/bin/python bench/bench_detections.py --quick     # smoke run
    .venv/bin/python bench/bench_detections.py             # 100 NRT rules, 20k/s for 60 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huntsman.incidents.service import Detections  # noqa: E402
from huntsman.state import State  # noqa: E402
from huntsman.store import Store, demo  # noqa: E402

TENANT = "bench"


def process_batch(n: int, start: int, now: datetime, evil_every: int) -> pa.Table:
    """``n`` DeviceProcessEvents rows; every ``evil_every``-th is a rule's match."""
    rng = np.random.default_rng(start)
    names = np.array(["svchost.exe", "msedge.exe", "chrome.exe", "OUTLOOK.EXE", "cmd.exe",
                      "conhost.exe", "taskhostw.exe", "explorer.exe"])
    files = names[rng.integers(0, len(names), n)].astype(object)
    if evil_every:
        files[::evil_every] = "evil0.exe"
    ts = pa.array([now] * n, pa.timestamp("us", tz="UTC"))
    return pa.table({
        "Timestamp": ts,
        "DeviceId": pa.array([f"dev{i % 500}" for i in range(start, start + n)]),
        "DeviceName": pa.array([f"ws-{i % 500:03d}" for i in range(start, start + n)]),
        "FileName": pa.array(list(files), pa.string()),
        "ProcessCommandLine": pa.array([f"{f} --run {i}" for i, f in
                                        zip(range(start, start + n), files, strict=True)]),
        "ReportId": pa.array(np.arange(start, start + n, dtype=np.int64)),
    })


def nrt_rules(count: int) -> list[dict[str, Any]]:
    return [{"name": f"nrt-{i}", "frequency": "NRT", "severity": "Medium",
             "title": "{{FileName}} on {{DeviceName}}",
             "query": (f'DeviceProcessEvents | where FileName =~ "evil{i}.exe" or '
                       f'ProcessCommandLine has "bad-{i}-marker"')}
            for i in range(count)]


def bench_nrt(rules: int, rate: int, seconds: float, batch: int,
              background: bool = False) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    results: dict[str, float] = {}
    for with_rules in (False, True):
        store, state = Store(tmp / f"s{with_rules}"), State(data_dir=tmp / f"s{with_rules}")
        state.create_tenant(TENANT)
        det = Detections(store, state, nrt_background=background).start(scheduler=False)
        if with_rules:
            for r in nrt_rules(rules):
                det.service.create_rule(TENANT, "bench", r)
        db = store.tenant(TENANT)
        # throughput: ingest as fast as possible
        n_batches = max(3, int(rate * min(seconds, 10) / batch))
        t0 = time.perf_counter()
        for b in range(n_batches):
            db.ingest("DeviceProcessEvents",
                      process_batch(batch, b * batch, datetime.now(UTC), 0))
        det.continuous.flush()        # background mode: until every batch is evaluated
        took = time.perf_counter() - t0
        results["rows_per_s_" + ("on" if with_rules else "off")] = n_batches * batch / took
        if with_rules:
            # latency at the target rate: one batch every batch/rate seconds
            latencies = []
            interval = batch / rate
            start = time.perf_counter()
            k = 0
            base = 10_000_000
            while time.perf_counter() - start < seconds:
                due = start + k * interval
                if time.perf_counter() < due:
                    time.sleep(due - time.perf_counter())
                data = process_batch(batch, base + k * batch, datetime.now(UTC), 500)
                t_call = time.perf_counter()
                db.ingest("DeviceProcessEvents", data)
                # until the alert for this batch's matches is queryable
                while time.perf_counter() - t_call < 30:
                    page = det.service.db.list_alerts(TENANT, top=1)
                    if page.items and page.items[0].evidence[-1]["ReportId"] >= base + k * batch:
                        latencies.append(time.perf_counter() - t_call)
                        break
                    time.sleep(0.002)
                k += 1
            lat = sorted(latencies)
            results["batches"] = k
            results["latency_p50_ms"] = statistics.median(lat) * 1000 if lat else float("nan")
            results["latency_p99_ms"] = (lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
                                         if lat else float("nan"))
            results["achieved_rate"] = k * batch / (time.perf_counter() - start)
        det.close()
        store.close()
        state.close()
    results["throughput_ratio"] = results["rows_per_s_on"] / results["rows_per_s_off"]
    return results


def bench_scheduler(scheduled: int, devices: int, days: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    store, state = Store(tmp), State("sqlite://")
    state.create_tenant(TENANT)
    end = datetime(2026, 11, 1, tzinfo=UTC)
    counts = demo.load(store.tenant(TENANT), devices=devices, days=days, end=end)
    det = Detections(store, state)
    freqs = ["1h", "3h", "12h", "24h", "30m"]
    queries = [
        'DeviceProcessEvents | where FileName =~ "powershell.exe" and ProcessCommandLine has "x{i}"',
        'DeviceNetworkEvents | where RemotePort == {i} and RemoteIPType == "Public"',
        'DeviceLogonEvents | where ActionType == "LogonFailed" | summarize n = count(), '
        'Timestamp = max(Timestamp), ReportId = max(ReportId) by DeviceId | where n > {i}',
        'DeviceFileEvents | where FileName endswith ".x{i}"',
    ]
    for i in range(scheduled):
        det.service.create_rule(TENANT, "bench", {
            "name": f"s{i}", "frequency": freqs[i % len(freqs)],
            "query": queries[i % len(queries)].format(i=i)}, now=end)
    hourly: dict[int, float] = {}
    late = 0
    t = end
    step = timedelta(minutes=5)
    while t < end + timedelta(days=1):
        due = {rid: det.service.get_rule(TENANT, rid).health.next_run_at
               for _, rid in det.scheduler.due(t)}
        runs = det.scheduler.run_once(t)
        for r in runs:
            planned = due.get(r.rule_id or "")
            if planned is not None and t - planned > step:
                late += 1
            hour = int((t - end).total_seconds() // 3600)
            hourly[hour] = hourly.get(hour, 0.0) + r.duration
        t += step
    det.close()
    store.close()
    return {"store_rows": float(sum(counts.values())), "late_runs": float(late),
            "first_hour_s": hourly.get(0, 0.0),
            "busiest_hour_after_first_s": max((v for h, v in hourly.items() if h), default=0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rules", type=int, default=100)
    p.add_argument("--rate", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--scheduled", type=int, default=200)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--skip-scheduler", action="store_true")
    p.add_argument("--background", action="store_true",
                   help="Continuous rules on a worker thread (as the server runs them)")
    a = p.parse_args()
    if a.quick:
        a.rules, a.seconds, a.scheduled, a.devices, a.days = 20, 3, 20, 5, 3
    r = bench_nrt(a.rules, a.rate, a.seconds, a.batch, a.background)
    print(f"NRT: {a.rules} continuous rules ({'worker thread' if a.background else 'in the ingest call'}), "
          f"target {a.rate:,} events/s in batches of {a.batch:,} for {a.seconds:g}s")
    print(f"  achieved {r['achieved_rate']:,.0f} events/s over {r['batches']:.0f} batches")
    print(f"  ingest-to-alert latency p50 {r['latency_p50_ms']:.1f} ms, "
          f"p99 {r['latency_p99_ms']:.1f} ms")
    print(f"  max ingest throughput: rules off {r['rows_per_s_off']:,.0f} rows/s, on "
          f"{r['rows_per_s_on']:,.0f} rows/s (ratio {r['throughput_ratio']:.2f})")
    if not a.skip_scheduler:
        s = bench_scheduler(a.scheduled, a.devices, a.days)
        print(f"Scheduler: {a.scheduled} rules over {s['store_rows']:,.0f} rows, a simulated day")
        print(f"  runs later than their frequency allows: {s['late_runs']:.0f}")
        print(f"  first hour (every rule's 30-day first run): {s['first_hour_s']:.1f} s of "
              f"run time; busiest later hour: {s['busiest_hour_after_first_s']:.1f} s")


if __name__ == "__main__":
    main()
