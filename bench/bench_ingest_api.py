"""Benchmark of ``POST /api/ingest``: files pushed to a running ``huntsman serve``.

Baseline, in the same run: the same file ingested by ``Database.ingest`` in this process
into a fresh on-disk store (what ``huntsman ingest`` does). The server runs as its own process
(with the demo tenant, as ``make run`` starts it); each push goes into a tenant of its own, so
that no push meets another's rows (those tenants have no detection rules).

    .venv/bin/python bench/bench_ingest_api.py --work /tmp/bw   # reuses bench_store's files
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import start_server  # noqa: E402
from bench_store import TABLE, process_rows, write_files  # noqa: E402

from huntsman.state import State  # noqa: E402
from huntsman.store import Store  # noqa: E402


def library(path: Path, work: Path) -> float:
    data = work / "lib-store"
    shutil.rmtree(data, ignore_errors=True)
    with Store(data) as store:
        t0 = time.perf_counter()
        rep = store.tenant("bench").ingest(TABLE, path)
        took = time.perf_counter() - t0
        assert rep.rejected == 0, rep
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="huntsman-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    files = {"ndjson": work / f"{TABLE}.ndjson", "ndjson.gz": work / f"{TABLE}.ndjson.gz"}
    if not all(f.exists() for f in files.values()):
        write_files(process_rows(args.rows), work)
    data = work / "api-data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    tenants = [f"t{i}" for i in range(args.reps * len(files))]
    state = State(data_dir=data)
    creds = {}
    for t in tenants:
        state.create_tenant(t)
        state.set_tenant_limits(t, requests_per_minute=100_000)
        info, secret = state.create_app(t, "collector", ["responder"])
        creds[t] = (info.client_id, secret)
    state.close()
    proc, base = start_server(data, "--demo", "--max-ingest-bytes", str(2 << 30))
    try:
        print(f"huntsman ingest API benchmark — {args.rows:,} {TABLE} rows per file, best of "
              f"{args.reps}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'file':<10} {'MB':>7} {'API s':>7} {'rows/s':>10} {'library s':>10} "
              f"{'API / library':>14}")
        left = iter(tenants)
        for kind, path in files.items():
            api, lib = [], []
            for _ in range(args.reps):  # interleaved
                tenant = next(left)
                cid, secret = creds[tenant]
                with httpx.Client(base_url=base, timeout=600) as c:
                    token = c.post("/oauth2/token", data={
                        "grant_type": "client_credentials", "client_id": cid,
                        "client_secret": secret}).json()["access_token"]
                    with path.open("rb") as body:
                        t0 = time.perf_counter()
                        r = c.post("/api/ingest", params={"table": TABLE}, content=body,
                                   headers={"Authorization": f"Bearer {token}"})
                        api.append(time.perf_counter() - t0)
                    assert r.status_code == 200 and r.json()["rejected"] == 0, r.text[:300]
                    rows = r.json()["accepted"]
                lib.append(library(path, work))
            a, b = min(api), min(lib)
            print(f"{kind:<10} {path.stat().st_size / 1e6:>7.1f} {a:>7.2f} {rows / a:>10,.0f} "
                  f"{b:>10.2f} {a / b:>14.2f}")
        print("API / library: the push's time (upload, spool to disk, ingest) over "
              "the same ingest in-process")
    finally:
        proc.terminate()
        proc.wait(60)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
