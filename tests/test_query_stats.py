"""Per-query resource usage, the engine-level limits (timeout, row cap), concurrency and the
spill directory, on real DuckDB stores."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

import huntsman
from huntsman.backends.duckdb import DuckDBBackend
from huntsman.errors import HuntsmanError, QueryLimitError, QueryTimeoutError
from huntsman.kql.stored import StoredFunction
from huntsman.store import Store
from huntsman.store.database import Database

ROWS = 5000
# a query no machine finishes in a few seconds: 10^11 rows through an aggregate
ENDLESS = "range x from 1 to 100000000000 step 1 | summarize count() by x % 7"


@pytest.fixture
def db() -> Database:
    db = huntsman.connect()
    db.create_table("Events", [("Timestamp", "datetime"), ("Device", "string"), ("n", "long")])
    db.ingest("Events", [{"Timestamp": f"2024-01-01T00:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z",
                          "Device": f"dev{i % 10}", "n": i} for i in range(ROWS)])
    return db


# ---------------------------------------------------------------- stats


def test_stats_measure_the_query(db: Database) -> None:
    r = db.query("Events | where n % 3 == 0 | summarize c = count() by Device")
    s = r.stats
    assert s.profiled
    assert s.rows == len(r.rows) == 10
    assert s.rows_scanned == ROWS  # every stored row was read, although a third were kept
    assert s.bytes_scanned > 0 and s.peak_memory > 0
    assert s.cpu_time > 0
    assert 0 < s.compile_time < s.elapsed and 0 < s.execute_time < s.elapsed
    assert s.tables == ["Events"] and '"Events"' in s.sql
    assert s.bytes > 0
    assert json.loads(json.dumps(s.to_dict()))["rows_scanned"] == ROWS


def test_rows_scanned_follows_the_tables_read(db: Database) -> None:
    one = db.query("Events | take 1").stats
    union = db.query("union Events, Events | count").stats
    assert union.rows_scanned == 2 * ROWS
    assert one.rows_scanned <= ROWS and db.query("print 1").stats.rows_scanned == 0
    # a more selective projection reads fewer bytes
    narrow = db.query("Events | summarize max(n)").stats
    wide = db.query("Events | project n, Device, Timestamp | summarize max(strlen(Device)), "
                    "max(n), max(Timestamp)").stats
    assert 0 < narrow.bytes_scanned < wide.bytes_scanned


def test_functions_and_window_are_passed_to_the_compiler(db: Database) -> None:
    f = StoredFunction("DeviceHits", "Events | where Device == d | count",
                       (("d", "string", None),))
    assert db.query("DeviceHits('dev3')", functions=[f]).rows == [(ROWS // 10,)]
    start = datetime(2024, 1, 1, 0, 1, tzinfo=UTC)  # rows 600.. have minute >= 1
    r = db.query("Events | count", window=(start, None))
    assert r.rows == [(ROWS - 600,)]


# ---------------------------------------------------------------- row cap


@pytest.mark.parametrize("kql", [
    "Events | sort by n desc | project n, Device",
    "Events | sort by Device asc, n desc",
    "Events | top 50 by n asc",
    "Events | summarize c = count() by Device | sort by Device",
    "Events | where n > 10 | take 30 | sort by n asc",
    "range x from 1 to 100 step 3 | sort by x desc",
])
@pytest.mark.parametrize("cap", [0, 1, 7, 50])
def test_max_rows_keeps_the_order_and_cuts(db: Database, kql: str, cap: int) -> None:
    full = db.query(kql)
    capped = db.query(kql, max_rows=cap)
    assert capped.rows == full.rows[:cap]
    assert capped.truncated is (len(full.rows) > cap) is capped.stats.truncated
    assert capped.stats.rows == min(cap, len(full.rows))
    assert capped.columns == full.columns


def test_max_rows_equal_to_the_result_is_not_truncated(db: Database) -> None:
    r = db.query("Events | summarize count() by Device", max_rows=10)
    assert len(r.rows) == 10 and not r.truncated
    assert db.query("Events | take 3", max_rows=10).rows == db.query("Events | take 3").rows


def test_max_rows_limits_the_engine_query(db: Database) -> None:
    r = db.query("range x from 1 to 1000000 step 1", max_rows=5)
    assert r.rows == [(1,), (2,), (3,), (4,), (5,)] and r.truncated
    assert r.stats.sql.endswith("LIMIT 6")  # the engine returns one row past the cap
    assert db.query("Events | project n", max_rows=5).stats.sql.endswith("LIMIT 6")


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_bad_max_rows_is_refused(db: Database, bad: object) -> None:
    with pytest.raises(HuntsmanError, match="max_rows must be a whole number"):
        db.query("Events", max_rows=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- timeout


def test_timeout_cancels_and_the_store_stays_usable(db: Database) -> None:
    with pytest.raises(QueryTimeoutError) as info:
        db.query(ENDLESS, timeout=0.3)
    err = info.value
    assert isinstance(err, QueryLimitError) and err.limit == "timeout"
    assert "0.3 seconds" in err.message
    assert err.to_dict()["limit"] == "timeout" and err.to_dict()["code"] == "QueryTimeoutError"
    # every pooled connection still works (more queries than the pool holds)
    for _ in range(12):
        assert db.query("Events | count", timeout=60).rows == [(ROWS,)]


def test_tiny_timeouts_always_cancel(db: Database) -> None:
    # an interrupt sent before the engine starts the query must not be lost
    for seconds in (0.0005, 0.002, 0.01, 0.05):
        with pytest.raises(QueryTimeoutError):
            db.query(ENDLESS, timeout=seconds)
    assert db.query("print 1", timeout=60).rows == [(1,)]


def test_timeouts_in_parallel_leave_other_queries_alone(db: Database) -> None:
    def endless() -> str:
        try:
            db.query(ENDLESS, timeout=0.5)
        except QueryTimeoutError as e:
            return e.limit
        return "finished"

    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(endless) for _ in range(2)]
        fast = [pool.submit(db.query, "Events | count") for _ in range(4)]
        assert [f.result().rows for f in fast] == [[(ROWS,)]] * 4
        assert [f.result() for f in slow] == ["timeout", "timeout"]


@pytest.mark.parametrize("bad", [0, -2])
def test_bad_timeout_is_refused(db: Database, bad: float) -> None:
    with pytest.raises(HuntsmanError, match="timeout must be a positive number"):
        db.query("Events", timeout=bad)


# ---------------------------------------------------------------- concurrency


def test_eight_parallel_queries_on_one_database(db: Database) -> None:
    queries = {i: f"Events | where Device == 'dev{i}' | summarize c = count(), s = sum(n)"
               for i in range(8)}
    expected = {i: [(ROWS // 10, sum(n for n in range(ROWS) if n % 10 == i))] for i in queries}
    barrier = threading.Barrier(8)

    def run(i: int) -> tuple[int, list[tuple[object, ...]], int]:
        barrier.wait()
        r = db.query(queries[i])
        return i, r.rows, r.stats.rows_scanned

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, range(8)))
        assert {i: rows for i, rows, _ in results} == expected
        assert all(scanned == ROWS for _, _, scanned in results)


def test_more_callers_than_pooled_connections_wait_their_turn() -> None:
    db = Database(backend=DuckDBBackend(query_connections=2))
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: db.query(f"print x = {i}").rows, range(12)))
    assert results == [[(i,)] for i in range(12)]


def test_ingest_while_querying(db: Database) -> None:
    def ingest() -> None:
        for k in range(20):
            db.ingest("Events", [{"Timestamp": "2024-02-01", "Device": "late", "n": k}])

    writer = threading.Thread(target=ingest)
    writer.start()
    counts = [db.query("Events | count").rows[0][0] for _ in range(20)]
    writer.join()
    assert counts == sorted(counts) and counts[0] >= ROWS and counts[-1] <= ROWS + 20
    assert db.query("Events | count").rows == [(ROWS + 20,)]


# ---------------------------------------------------------------- spill directory


def _temp_directory(db: Database) -> str:
    cur = db.backend.con.cursor()  # type: ignore[attr-defined]
    row = cur.execute("SELECT current_setting('temp_directory')").fetchone()
    return str(row[0])


def test_on_disk_store_spills_into_its_data_directory(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    data = tmp_path / "data"
    with huntsman.connect(data, memory_limit="48MB", threads=1) as db:
        assert Path(_temp_directory(db)) == data / ".tmp" / "default"
        # sorting ~3 M strings does not fit in 48 MB: DuckDB must spill
        r = db.query("range x from 1 to 3000000 step 1 | extend y = strcat('value-', x) "
                     "| sort by y asc | take 2")
        assert r.rows == [(1, "value-1"), (10, "value-10")]
        assert r.stats.spilled > 0
        assert (data / ".tmp" / "default").is_dir()
    assert list(cwd.iterdir()) == []  # nothing spilled into the current directory
    assert not (data / ".tmp" / "default").exists()  # DuckDB removes its files on close


def test_tenants_spill_into_directories_of_their_own(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a, b = store.tenant("contoso"), store.tenant("fabrikam")
    assert Path(_temp_directory(a)) == tmp_path / ".tmp" / "contoso"
    assert Path(_temp_directory(b)) == tmp_path / ".tmp" / "fabrikam"
    assert store.tenants() == ["contoso", "fabrikam"]
    store.close()


def test_in_memory_store_spills_into_a_private_directory() -> None:
    db = huntsman.connect()
    spill = Path(_temp_directory(db))
    assert spill.is_dir() and spill.name.startswith("huntsman-spill-")
    assert not spill.is_relative_to(Path.cwd())
    db.close()
    assert not spill.exists()


def test_same_file_opened_twice_still_queries(tmp_path: Path) -> None:
    first = huntsman.connect(tmp_path / "t.duckdb")
    second = huntsman.connect(tmp_path / "t.duckdb")
    r = second.query("range x from 1 to 1000 step 1 | count", max_rows=5)
    assert r.rows == [(1000,)]
    # the shared instance's configuration is locked: no profiler for the second handle,
    # and the figures it cannot know stay 0 instead of being made up
    assert not r.stats.profiled and r.stats.rows_scanned == 0
    assert first.query("print 1").stats.profiled
    second.close()
    first.close()
    assert os.path.exists(tmp_path / "t.duckdb")
