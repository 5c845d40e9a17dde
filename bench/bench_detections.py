"""Benchmark of detections: continuous (NRT) rules on ingestion, and the rule scheduler.

* NRT: ``--rules`` continuous rules on DeviceProcessEvents (different FileName/command-line
  conditions, a few of which match); rows ingested in batches at ``--rate`` events/s for
  ``--seconds``. Reported: p50/p99 latency from an event's ingest call to its alert being
  queryable (polled every 10 ms after each ingest call; ``--background`` runs the rules on a
  worker thread right after the call, as the server does, instead of inside it), and the
  sustainable ingest throughput with the rules on, as a ratio of the same with them off.
* Scheduler: ``--scheduled`` rules of mixed frequencies over a store of about
  ``--store-rows`` rows of the demo environment over ``--days`` days (built day by day
  through the store's bulk path; with ``--work DIR`` it is kept there and reused by later
  runs); a simulated day of scheduler passes every 5 minutes (a controllable clock) over the
  store's last day; reported: whether any run started later than its frequency allows, and
  the first and the busiest later hour's total run time.

    .venv/bin/python bench/bench_detections.py --quick     # smoke run
    .venv/bin/python bench/bench_detections.py --background --skip-scheduler   # NRT only
    .venv/bin/python bench/bench_detections.py --skip-nrt --work /tmp/bench50m  # 50 M rows
"""

from __future__ import annotations

import argparse
import json
import os
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


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


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
            latencies, calls, after = [], [], []
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
                returned = time.perf_counter()
                # until the alert for this batch's matches is queryable
                while time.perf_counter() - t_call < 30:
                    page = det.service.db.list_alerts(TENANT, top=1)
                    if page.items and page.items[0].evidence[-1]["ReportId"] >= base + k * batch:
                        latencies.append(time.perf_counter() - t_call)
                        calls.append(returned - t_call)
                        after.append(latencies[-1] - calls[-1])
                        break
                    time.sleep(0.01)
                k += 1
            results["batches"] = k
            for name, values in (("latency", latencies), ("ingest_call", calls),
                                 ("after_call", after)):
                results[f"{name}_p50_ms"] = _percentile(values, 0.5) * 1000
                results[f"{name}_p99_ms"] = _percentile(values, 0.99) * 1000
            results["achieved_rate"] = k * batch / (time.perf_counter() - start)
        det.close()
        store.close()
        state.close()
    results["throughput_ratio"] = results["rows_per_s_on"] / results["rows_per_s_off"]
    return results


DEMO_SEED = 1
SCHEDULE_START = datetime(2026, 11, 1, tzinfo=UTC)
"""The simulated day of scheduler passes starts here; the store's rows end a day later."""


def _rows_per_device_day() -> float:
    """How many rows one device makes in a day of the demo environment (a small probe)."""
    probe = demo.generate(seed=DEMO_SEED, devices=50, days=1, end=SCHEDULE_START)
    return sum(t.num_rows for t in probe.values()) / 50


def build_store(work: Path, rows: int, days: int) -> tuple[Store, dict[str, Any]]:
    """The bench's telemetry store under ``work``: about ``rows`` rows of the demo environment
    over ``days`` days ending one day after :data:`SCHEDULE_START`, built if missing.

    The demo generator makes one day at a time (the same devices every day), and each day is
    appended through the store's bulk path (``Backend.commit_batch``: one transaction per
    day, no dedup check, Arrow straight into the tenant's DuckDB file) as batch
    ``bench-day-N``. A build that was interrupted resumes at the first missing day; a store
    built with other sizes is refused (use another ``--work`` directory)."""
    work.mkdir(parents=True, exist_ok=True)
    manifest_path = work / "bench-store.json"
    end = SCHEDULE_START + timedelta(days=1)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    else:
        devices = max(1, round(rows / (days * _rows_per_device_day())))
        manifest = {"seed": DEMO_SEED, "target_rows": rows, "devices": devices, "days": days,
                    "end": end.isoformat(), "rows": {}}
        manifest_path.write_text(json.dumps(manifest, indent=1))
    if (manifest.get("target_rows"), manifest["days"], manifest["end"]) \
            != (rows, days, end.isoformat()):
        raise SystemExit(f"{work} holds a store of about {manifest.get('target_rows')} rows "
                         f"over {manifest['days']} days ending {manifest['end']}; use another "
                         f"--work directory for other sizes")
    store = Store(work / "store", memory_limit="6GB")
    db = store.tenant(TENANT)
    done = set(db.batches())
    if not done & {f"bench-day-{day}" for day in range(days)}:
        manifest["rows"] = {}    # a store file removed since: counted afresh
    devices = int(manifest["devices"])
    for day in range(days):
        batch = f"bench-day-{day}"
        if batch in done:
            continue
        t0 = time.perf_counter()
        day_end = end - timedelta(days=days - 1 - day)
        tables = demo.generate(seed=DEMO_SEED, devices=devices, days=1, end=day_end)
        t1 = time.perf_counter()
        commit = db.backend.commit_batch(tables, batch)
        for table, n in commit.inserted.items():
            manifest["rows"][table] = manifest["rows"].get(table, 0) + n
        manifest_path.write_text(json.dumps(manifest, indent=1))
        print(f"  store day {day + 1}/{days}: {sum(commit.inserted.values()):,} rows "
              f"(generated in {t1 - t0:.1f} s, appended in {time.perf_counter() - t1:.1f} s)",
              flush=True)
    return store, manifest


def bench_scheduler(scheduled: int, rows: int, days: int, work: Path | None
                    ) -> dict[str, float]:
    """A simulated day of scheduler passes every 5 minutes, from :data:`SCHEDULE_START`,
    over the store of :func:`build_store` (in a temporary directory unless ``work``)."""
    if work is None:   # a store of this size is not left behind in /tmp
        with tempfile.TemporaryDirectory(prefix="huntsman-bench-") as tmp:
            return bench_scheduler(scheduled, rows, days, Path(tmp))
    t_build = time.perf_counter()
    store, manifest = build_store(work, rows, days)
    build_s = time.perf_counter() - t_build
    state = State("sqlite://")
    state.create_tenant(TENANT)
    end = SCHEDULE_START
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
    slowest = 0.0
    runs_total = matched = alerts = 0
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
            slowest = max(slowest, r.duration)
            matched += r.rows
            alerts += len(r.alerts)
        runs_total += len(runs)
        t += step
        if (t - end) % timedelta(hours=6) == timedelta(0):
            print(f"  simulated {(t - end) / timedelta(hours=1):.0f} h: {runs_total:,} runs, "
                  f"{sum(hourly.values()):.0f} s of run time", flush=True)
    det.close()
    store.close()
    state.close()
    return {"store_rows": float(sum(manifest["rows"].values())),
            "devices": float(manifest["devices"]), "build_s": build_s,
            "runs": float(runs_total), "late_runs": float(late),
            "rows_matched": float(matched), "alerts": float(alerts),
            "first_hour_s": hourly.get(0, 0.0), "slowest_run_s": slowest,
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
    p.add_argument("--store-rows", type=int, default=50_000_000,
                   help="About this many rows in the scheduler's store (demo data)")
    p.add_argument("--days", type=int, default=30, help="...over this many days")
    p.add_argument("--work", type=Path, default=None,
                   help="Keep the scheduler's store here and reuse it on later runs")
    p.add_argument("--skip-nrt", action="store_true")
    p.add_argument("--skip-scheduler", action="store_true")
    p.add_argument("--background", action="store_true",
                   help="Continuous rules on a worker thread (as the server runs them)")
    a = p.parse_args()
    if a.quick:
        a.rules, a.seconds, a.scheduled, a.store_rows, a.days = 20, 3, 20, 50_000, 3
    if not a.skip_nrt:
        r = bench_nrt(a.rules, a.rate, a.seconds, a.batch, a.background)
        mode = "worker thread" if a.background else "in the ingest call"
        print(f"NRT: {a.rules} continuous rules ({mode}), target {a.rate:,} events/s in "
              f"batches of {a.batch:,} for {a.seconds:g}s (load average {_load()})")
        print(f"  achieved {r['achieved_rate']:,.0f} events/s over {r['batches']:.0f} batches")
        print(f"  ingest-to-alert latency p50 {r['latency_p50_ms']:.1f} ms, "
              f"p99 {r['latency_p99_ms']:.1f} ms (the ingest call alone: p50 "
              f"{r['ingest_call_p50_ms']:.1f} ms, p99 {r['ingest_call_p99_ms']:.1f} ms; from its "
              f"return to the alert: p50 {r['after_call_p50_ms']:.1f} ms, p99 "
              f"{r['after_call_p99_ms']:.1f} ms)")
        print(f"  max ingest throughput: rules off {r['rows_per_s_off']:,.0f} rows/s, on "
              f"{r['rows_per_s_on']:,.0f} rows/s (ratio {r['throughput_ratio']:.2f})",
              flush=True)
    if not a.skip_scheduler:
        s = bench_scheduler(a.scheduled, a.store_rows, a.days, a.work)
        print(f"Scheduler: {a.scheduled} rules over {s['store_rows']:,.0f} rows "
              f"({s['devices']:,.0f} devices, {a.days} days; store ready in "
              f"{s['build_s']:.0f} s), a simulated day of passes every 5 minutes "
              f"(load average {_load()})")
        print(f"  {s['runs']:,.0f} runs ({s['rows_matched']:,.0f} rows matched, "
              f"{s['alerts']:,.0f} alerts); runs later than their frequency allows: "
              f"{s['late_runs']:.0f}")
        print(f"  first hour (every rule's 30-day first run): {s['first_hour_s']:.1f} s of "
              f"run time; busiest later hour: {s['busiest_hour_after_first_s']:.1f} s; "
              f"slowest run {s['slowest_run_s']:.2f} s")


def _load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
