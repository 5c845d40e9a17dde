"""Benchmark: what DuckDB's per-query profiler (``QueryStats`` figures) costs.

Fills ``DeviceProcessEvents`` (10 M rows by default, the same synthetic data as
``bench_kql.py``) and runs summarize queries compiled once, interleaved, on the store's
profiled query connections (``backend.run_measured``, what ``Database.query`` uses) and on a
plain connection without the profiler (``backend.execute``). Reports the median of each and
the overhead. It never fails on timings.

    python bench/bench_profiling.py              # 10 M rows
    python bench/bench_profiling.py --rows 1000000 --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kql import generate  # noqa: E402

import huntsman  # noqa: E402

QUERIES = [
    "DeviceProcessEvents | summarize count() by FileName",
    "DeviceProcessEvents | summarize count() by AccountName, FileName",
    "DeviceProcessEvents | summarize dcount(DeviceId) by bin(Timestamp, 1h)",
    "DeviceProcessEvents | where ProcessCommandLine has 'mimikatz' | summarize count() by DeviceName",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    with huntsman.connect() as db:
        t0 = time.perf_counter()
        generate(db, args.rows, network=False)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        backend = db.backend
        total_on = total_off = 0.0
        for kql in QUERIES:
            compiled = db.compile(kql)
            on: list[float] = []
            off: list[float] = []
            backend.execute(compiled.sql)  # warm up
            cpu: list[float] = []
            for rep in range(args.reps):
                for profiled in (rep % 2 == 0, rep % 2 == 1):  # alternate which goes first
                    t, c = time.perf_counter(), time.process_time()
                    if profiled:
                        _, profile = backend.run_measured(compiled)
                        on.append(time.perf_counter() - t)
                        cpu.append(time.process_time() - c)
                    else:
                        backend.execute(compiled.sql)
                        off.append(time.perf_counter() - t)
            m_on, m_off = statistics.median(on), statistics.median(off)
            total_on += m_on
            total_off += m_off
            print(f"{m_off * 1000:8.1f} ms off {m_on * 1000:8.1f} ms on "
                  f"{(m_on / m_off - 1) * 100:+6.1f} %  rows_scanned={profile.rows_scanned:,} "
                  f"cpu: profiler {profile.cpu_time:.2f} s, process {statistics.median(cpu):.2f} s  "
                  f"{kql}")
        print(f"overall: {(total_on / total_off - 1) * 100:+.1f} % "
              f"(profiled={backend.profiled})")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
