"""Throughput of the Python UDFs behind parse_xml, parse_user_agent and the series functions.

    python bench/bench_udfs.py            # 1,000,000 rows per function
    python bench/bench_udfs.py 100000     # fewer rows
    python bench/bench_udfs.py 100000 series_fir series_iir   # only these

Each function runs once over a table of N rows inside DuckDB (through huntsman's compiled
KQL), and the script prints rows per second of wall-clock time and of process CPU time. User agents are drawn from a pool of distinct
strings (real traffic repeats them; the UDF caches parses); the "unique" row gives every row a
different agent, the worst case. Series are 24 points long (a day of hourly bins).
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa

import huntsman

UA_POOL = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.{i}.130 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.{i} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{i} Safari/605.1.15",
]


def _table(n: int, distinct_agents: int) -> pa.Table:
    agents = [UA_POOL[i % len(UA_POOL)].format(i=i % distinct_agents) for i in range(n)]
    xml = [f"<Event><System><EventID>{4624 + i % 7}</EventID></System><EventData>"
           f"<Data Name='TargetUserName'>user{i % 1000}</Data><Data Name='LogonType'>{i % 11}"
           f"</Data></EventData></Event>" for i in range(n)]
    series = [f"[{','.join(str((i + j) % 17 + (40 if j == i % 24 else 0)) for j in range(24))}]"
              for i in range(n)]
    return pa.table({"Ua": agents, "Xml": xml, "Series": series})


QUERIES = {
    "parse_xml": "B | summarize count() by tostring(parse_xml(Xml).Event.System.EventID)",
    "parse_user_agent (pool of 1,000)": "B | summarize count() by "
                                        "tostring(parse_user_agent(Ua, 'browser').Browser.Family)",
    "parse_user_agent (unique)": "U | summarize count() by "
                                 "tostring(parse_user_agent(Ua, 'browser').Browser.Family)",
    "series_outliers": "B | summarize count() by tostring(series_outliers(todynamic(Series))[0])",
    "series_decompose_anomalies": "B | extend (f, s, b) = series_decompose_anomalies("
                                  "todynamic(Series)) | summarize count() by tostring(f[0])",
    "series_fit_line": "B | extend (r, s, v, rv, i, l) = series_fit_line(todynamic(Series)) "
                       "| summarize count() by round(s, 1)",
    "series_seasonal": "B | summarize count() by tostring(series_seasonal(todynamic(Series))[0])",
    "series_fir": "B | summarize count() by "
                  "tostring(series_fir(todynamic(Series), dynamic([1, 1, 1]))[5])",
    "series_iir": "B | summarize count() by "
                  "tostring(series_iir(todynamic(Series), dynamic([1]), dynamic([1, -0.5]))[5])",
}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    db = huntsman.connect()
    db.create_table("B", [("Ua", "string"), ("Xml", "string"), ("Series", "string")])
    db.create_table("U", [("Ua", "string"), ("Xml", "string"), ("Series", "string")])
    db.ingest("B", _table(n, 1000))
    db.ingest("U", _table(min(n, 100_000), 10**9))
    only = sys.argv[2:]
    for name, kql in QUERIES.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        rows = min(n, 100_000) if "unique" in name else n
        start, cpu = time.perf_counter(), time.process_time()
        db.query(kql)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        # CPU time too: on a shared machine the wall clock measures the neighbours as well
        print(f"{name:36s} {rows:>9,d} rows  {took:7.2f} s wall {rows / took:>10,.0f} rows/s"
              f"  {cpu:7.2f} s CPU {rows / cpu:>10,.0f} rows/CPU-s")


if __name__ == "__main__":
    main()
