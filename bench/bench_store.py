"""Benchmark of the telemetry store: ingestion, demo generation and time pruning.

Every figure is printed next to a baseline measured in the same run, on the same machine:

* ingestion of NDJSON (plain and gzip) and of Defender streaming-export files of
  DeviceProcessEvents-shaped rows (from the demo generator) into an on-disk tenant store —
  rows/s, MB/s, and the ratio to DuckDB's own ``read_json`` on the same file (a separate,
  unlocked DuckDB connection, used for this baseline only), both loading the file into an
  on-disk table (the same work) and only reading it into Arrow;
* demo generation (rows/s) and loading it into a store;
* time pruning: ``Timestamp > ago(1d)`` over N rows across 30 days against the same query
  over a store holding only that day (the goal: at most 1.3x).

    .venv/bin/python bench/bench_store.py            # full: 200k-row files, 50 M rows pruning
    .venv/bin/python bench/bench_store.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huntsman.store import Store, demo  # noqa: E402
from huntsman.store.ingest import ingest  # noqa: E402

TABLE = "DeviceProcessEvents"
END = datetime(2024, 3, 1)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best(fn: Callable[[], object], reps: int) -> float:
    return min(timed(fn)[0] for _ in range(reps))


# ---------------------------------------------------------------- input files

def process_rows(n: int) -> pa.Table:
    """``n`` DeviceProcessEvents rows from the demo generator, as plain strings."""
    devices = max(10, n // 3000)
    tbl = demo.generate(seed=42, devices=devices, days=7, end=END)[TABLE]
    while tbl.num_rows < n:
        tbl = pa.concat_tables([tbl, tbl])
    tbl = tbl.slice(0, n)
    # repeated rows get ReportIds of their own: each row is a distinct event (ingestion drops
    # rows repeating the ReportId + Timestamp + DeviceId of another)
    tbl = tbl.set_column(tbl.schema.get_field_index("ReportId"), "ReportId",
                         pa.array(range(1, n + 1), pa.int64()))
    return tbl.cast(pa.schema([(f.name, pa.string() if pa.types.is_dictionary(f.type)
                                else f.type) for f in tbl.schema]))


def write_files(tbl: pa.Table, folder: Path) -> dict[str, Path]:
    """The rows as NDJSON, gzip NDJSON and a streaming export (100 records per envelope)."""
    records = tbl.to_pylist()
    lines = []
    for r in records:
        for k, v in r.items():
            if isinstance(v, datetime):
                r[k] = v.isoformat(timespec="microseconds") + "0Z"  # 7 digits, as Defender
        lines.append(json.dumps(r, separators=(",", ":")))
    nd = folder / f"{TABLE}.ndjson"
    nd.write_text("\n".join(lines) + "\n")
    gz = folder / f"{TABLE}.ndjson.gz"
    with gzip.open(gz, "wt", compresslevel=6) as f:
        f.write("\n".join(lines) + "\n")
    ex = folder / "export.json"
    with ex.open("w") as f:
        for i in range(0, len(records), 100):
            env = {"records": [{"time": r["Timestamp"], "tenantId": "7a1f9d3e-0000-4000-8000-"
                                "000000000001", "operationName": "Publish",
                                "category": f"AdvancedHunting-{TABLE}", "properties": r}
                               for r in records[i:i + 100]]}
            f.write(json.dumps(env, separators=(",", ":")) + "\n")
    return {"ndjson": nd, "ndjson.gz": gz, "export": ex}


# ---------------------------------------------------------------- ingestion

def cpu_seconds() -> float:
    """CPU time of this process, every thread: unlike elapsed time, barely moved by other
    jobs on a busy machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ingest_once(path: Path, table: str | None, work: Path, scan: bool = True
                ) -> tuple[float, float, int, bool]:
    """Elapsed and CPU seconds of one ingestion into a fresh on-disk store, rows accepted,
    and whether DuckDB's reader read the file (``scan=False``: the file read in Python)."""
    data = work / "store"
    shutil.rmtree(data, ignore_errors=True)
    with Store(data) as store:
        db = store.tenant("bench")
        c0 = cpu_seconds()
        el, rep = timed(lambda: ingest(db.backend, table, path, scan=scan))
        cpu = cpu_seconds() - c0
        assert rep.rejected == 0 and rep.duplicates == 0, rep  # type: ignore[attr-defined]
        return el, cpu, rep.accepted, rep.engine_read  # type: ignore[attr-defined]


def duckdb_load(path: Path, export: bool, work: Path, to_disk: bool) -> tuple[float, float]:
    """DuckDB's own reader on the same file: into an on-disk table, or only into Arrow."""
    db = work / "baseline.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        if p.exists():
            p.unlink()
    con = duckdb.connect(str(db) if to_disk else ":memory:")
    con.execute("SET enable_progress_bar = false")
    src = f"read_json('{path}', format='newline_delimited')"
    if export:
        src = (f"(SELECT unnest(r.properties) FROM (SELECT unnest(records) AS r FROM "
               f"read_json('{path}', format='newline_delimited', "
               f"maximum_object_size=1073741824)))")
    t0, c0 = time.perf_counter(), cpu_seconds()
    if to_disk:
        con.execute(f"CREATE TABLE t AS SELECT * FROM {src}")
        con.execute("CHECKPOINT")
    else:
        con.sql(f"SELECT * FROM {src}").to_arrow_table()
    el, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    con.close()
    return el, cpu


def bench_ingest(rows: int, reps: int, work: Path) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    stamp = work / "input-rows.txt"
    names = {"ndjson": f"{TABLE}.ndjson", "ndjson.gz": f"{TABLE}.ndjson.gz",
             "export": "export.json"}
    if stamp.exists() and stamp.read_text() == f"{rows}\n" and all(
            (work / f).exists() for f in names.values()):
        files = {k: work / f for k, f in names.items()}  # kept from a run with --work
    else:
        files = write_files(process_rows(rows), work)
        stamp.write_text(f"{rows}\n")
        print(f"(input files written in {time.perf_counter() - t0:.1f} s)")
    out = []
    runs = [(kind, path, True) for kind, path in files.items()]
    runs += [(f"{kind} (py)", files[kind], False) for kind in ("ndjson", "ndjson.gz", "export")]
    for kind, path, scan in runs:
        export = kind == "export"
        size = path.stat().st_size
        ours: list[tuple[float, float]] = []
        base_disk: list[tuple[float, float]] = []
        base_arrow: list[tuple[float, float]] = []
        n = 0
        engine = False
        for _ in range(reps):  # interleaved, so that a busy machine slows both alike
            el, cpu, n, engine = ingest_once(path, None if export else TABLE, work, scan)
            ours.append((el, cpu))
            base_disk.append(duckdb_load(path, export, work, to_disk=True))
            base_arrow.append(duckdb_load(path, export, work, to_disk=False))
        t, bd, ba = (min(x[0] for x in xs) for xs in (ours, base_disk, base_arrow))
        ct, cbd, cba = (min(x[1] for x in xs) for xs in (ours, base_disk, base_arrow))
        out.append({"format": kind, "engine_read": engine, "rows": n, "bytes": size, "seconds": t,
                    "rows_per_s": n / t, "mb_per_s": size / 1e6 / t,
                    "duckdb_load_s": bd, "ratio_vs_load": bd / t,
                    "duckdb_read_s": ba, "ratio_vs_read": ba / t,
                    "cpu_s": ct, "duckdb_load_cpu_s": cbd, "cpu_ratio_vs_load": cbd / ct,
                    "duckdb_read_cpu_s": cba, "cpu_ratio_vs_read": cba / ct})
    return out


# ---------------------------------------------------------------- demo

def bench_demo(devices: int, days: int, work: Path) -> dict[str, object]:
    gen, tables = timed(lambda: demo.generate(seed=1, devices=devices, days=days, end=END))
    rows = sum(t.num_rows for t in tables.values())  # type: ignore[attr-defined]
    data = work / "demo-store"
    shutil.rmtree(data, ignore_errors=True)
    with Store(data) as store:
        db = store.tenant("demo")
        load, _ = timed(lambda: demo.load(db, seed=1, devices=devices, days=days, end=END))
    return {"devices": devices, "days": days, "rows": rows, "generate_s": gen,
            "generate_rows_per_s": rows / gen, "generate_and_load_s": load,
            "load_rows_per_s": rows / load}


# ---------------------------------------------------------------- time pruning

FILL = """
INSERT INTO "DeviceProcessEvents" ("Timestamp", "DeviceId", "DeviceName", "ActionType",
    "FileName", "FolderPath", "ProcessCommandLine", "AccountName", "ProcessId", "ReportId")
SELECT TIMESTAMP '{start}' + to_microseconds(CAST(i * {step} AS BIGINT)),
       'dev' || (hash(i) % 500), 'ws-' || (hash(i) % 500) || '.contoso.local',
       'ProcessCreated',
       ['powershell.exe', 'cmd.exe', 'chrome.exe', 'svchost.exe', 'msedge.exe',
        'WINWORD.EXE', 'explorer.exe', 'rundll32.exe'][1 + CAST(hash(i * 7) % 8 AS BIGINT)],
       'C:\\Windows\\System32\\' || (hash(i * 11) % 97) || '.exe',
       CASE WHEN hash(i * 13) % 10000 = 0 THEN 'powershell -c mimikatz sekurlsa::logonpasswords'
            ELSE 'cmd.exe /c echo ' || (hash(i * 17) % 100000) END,
       'user' || (hash(i * 19) % 900), hash(i * 23) % 60000, i
FROM range({lo}, {hi}) t(i)
"""

PRUNE_QUERIES = {
    "count": "DeviceProcessEvents | where Timestamp > ago(1d) | count",
    "summarize": "DeviceProcessEvents | where Timestamp > ago(1d) "
                 "| summarize n = count(), users = dcount(AccountName) by FileName",
    "has": "DeviceProcessEvents | where Timestamp > ago(1d) "
           "| where ProcessCommandLine has 'mimikatz' | project Timestamp, DeviceName",
}


def fill(db_backend: object, total: int, days: int, lo: int, hi: int) -> None:
    con = db_backend.con  # type: ignore[attr-defined]
    step = days * 86_400 * 1_000_000 / total
    start = END - timedelta(days=days)
    chunk = 5_000_000
    for a in range(lo, hi, chunk):
        con.execute(FILL.format(start=start.isoformat(sep=" "), step=step, lo=a,
                                hi=min(hi, a + chunk)))
    con.execute("CHECKPOINT")


def bench_pruning(total: int, days: int, reps: int, work: Path) -> dict[str, object]:
    data = work / "prune"
    shutil.rmtree(data, ignore_errors=True)
    store = Store(data)
    big, small = store.tenant("thirty-days"), store.tenant("one-day")
    per_day = total // days
    el_fill, _ = timed(lambda: fill(big.backend, total, days, 0, total))
    # the same rows of the last day only (the rows are a function of their number)
    fill(small.backend, total, days, total - per_day - per_day // 50, total)
    store.close()  # queried as a store is: opened from its files
    store = Store(data)
    big, small = store.tenant("thirty-days"), store.tenant("one-day")
    now = END
    out: dict[str, object] = {"rows": total, "days": days, "fill_s": el_fill,
                              "big_file_mb": (data / "thirty-days.duckdb").stat().st_size / 1e6,
                              "queries": {}}
    for name, kql in PRUNE_QUERIES.items():
        rb = big.query(kql, now=now).rows  # also warms both stores up
        rs = small.query(kql, now=now).rows
        assert sorted(map(str, rb)) == sorted(map(str, rs)), name
        tb = statistics.median(timed(lambda k=kql: big.query(k, now=now))[0]  # type: ignore
                               for _ in range(reps))
        ts = statistics.median(timed(lambda k=kql: small.query(k, now=now))[0]  # type: ignore
                               for _ in range(reps))
        # the same filter written so that zone maps cannot be used: the cost of a full scan
        full_kql = kql.replace("Timestamp > ago(1d)", "Timestamp + 0s > ago(1d)")
        big.query(full_kql, now=now)
        tf = statistics.median(timed(lambda k=full_kql: big.query(k, now=now))[0]  # type: ignore
                               for _ in range(max(1, reps // 2)))
        out["queries"][name] = {"thirty_days_s": tb, "one_day_s": ts, "ratio": tb / ts,  # type: ignore
                                "no_pruning_s": tf, "no_pruning_ratio": tf / ts}
    store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="rows per ingestion file")
    p.add_argument("--prune-rows", type=int, default=50_000_000)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="20k-row files, 2 M rows pruning")
    p.add_argument("--skip", default="", help="comma list of: ingest,demo,prune")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = p.parse_args()
    if args.quick:
        args.rows, args.prune_rows, args.devices, args.days, args.reps = \
            20_000, 2_000_000, 20, 7, 2
    skip = set(filter(None, args.skip.split(",")))
    work = args.work or Path(tempfile.mkdtemp(prefix="huntsman-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"huntsman store benchmark — duckdb {duckdb.__version__}, pyarrow {pa.__version__}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    results: dict[str, object] = {}
    try:
        if "ingest" not in skip:
            print(f"\n== ingestion ({args.rows:,} {TABLE} rows per file, best of {args.reps}, "
                  f"on-disk tenant store)")
            ing = bench_ingest(args.rows, args.reps, work)
            results["ingest"] = ing
            print(f"{'format':<15} {'MB':>7} {'s':>7} {'rows/s':>10} {'MB/s':>7} "
                  f"{'duckdb load s':>14} {'ratio':>6} {'duckdb read s':>14} {'ratio':>6}")
            for r in ing:
                print(f"{r['format']:<15} {r['bytes'] / 1e6:>7.1f} {r['seconds']:>7.2f} "
                      f"{r['rows_per_s']:>10,.0f} {r['mb_per_s']:>7.1f} "
                      f"{r['duckdb_load_s']:>14.2f} {r['ratio_vs_load']:>6.2f} "
                      f"{r['duckdb_read_s']:>14.2f} {r['ratio_vs_read']:>6.2f}")
            print(f"{'format':<15} {'cpu s':>7} {'duckdb load cpu s':>18} {'ratio':>6} "
                  f"{'duckdb read cpu s':>18} {'ratio':>6}")
            for r in ing:
                print(f"{r['format']:<15} {r['cpu_s']:>7.2f} {r['duckdb_load_cpu_s']:>18.2f} "
                      f"{r['cpu_ratio_vs_load']:>6.2f} {r['duckdb_read_cpu_s']:>18.2f} "
                      f"{r['cpu_ratio_vs_read']:>6.2f}")
            print("ratio = DuckDB's time / huntsman's time (1.0: as fast as DuckDB's own "
                  "read_json; goal >= 0.7); the CPU-time ratios hold on a busy machine too; "
                  "'(py)': the same file read in Python (as when it cannot be linked into the "
                  "store's spool, on another file system)")
        if "demo" not in skip:
            print(f"\n== demo generation ({args.devices} devices, {args.days} days)")
            d = bench_demo(args.devices, args.days, work)
            results["demo"] = d
            print(f"{d['rows']:,} rows generated in {d['generate_s']:.2f} s: "
                  f"{d['generate_rows_per_s']:,.0f} rows/s (goal >= 200,000); generated and "
                  f"stored in {d['generate_and_load_s']:.2f} s: {d['load_rows_per_s']:,.0f} rows/s")
        if "prune" not in skip:
            print(f"\n== time pruning ({args.prune_rows:,} rows over 30 days vs the last day "
                  f"alone; median of {args.reps * 3} warm runs)")
            pr = bench_pruning(args.prune_rows, 30, args.reps * 3, work)
            results["prune"] = pr
            print(f"filled in {pr['fill_s']:.1f} s ({pr['big_file_mb']:,.0f} MB on disk)")
            print(f"{'query':<10} {'30 days s':>10} {'1 day s':>9} {'ratio':>6} "
                  f"{'no pruning s':>13} {'ratio':>6}")
            for name, q in pr["queries"].items():  # type: ignore[attr-defined]
                print(f"{name:<10} {q['thirty_days_s']:>10.3f} {q['one_day_s']:>9.3f} "
                      f"{q['ratio']:>6.2f} {q['no_pruning_s']:>13.3f} "
                      f"{q['no_pruning_ratio']:>6.1f}")
            print("ratio = time over 30 days / time over the day alone (goal <= 1.3); "
                  "'no pruning' writes the filter so that zone maps cannot skip row groups")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
