"""NDJSON files read by the engine itself (``Ingestion.scan``: DuckDB's JSON reader, coercion
and insert in one statement) store exactly what the Python-read paths store; any record the
engine's reader or the SQL rules cannot take sends the whole batch the exact way."""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import huntsman
from huntsman.store import formats
from huntsman.store import ingest as ingest_module
from huntsman.store.coerce import ARROW_TYPES
from huntsman.store.fastjson import SCAN_OPTIONS

COLUMNS = [("Timestamp", "datetime"), ("DeviceId", "string"), ("ReportId", "long"),
           ("N", "int"), ("R", "real"), ("B", "bool"), ("D", "dynamic"),
           ("G", "guid"), ("Took", "timespan"), ("AdditionalFields", "string")]
SAMPLE = int(SCAN_OPTIONS.split("sample_size = ")[1].split(",")[0])


def fresh() -> huntsman.Database:
    db = huntsman.connect()
    db.create_table("T", COLUMNS)
    return db


def stored(db: huntsman.Database) -> list[str]:
    names = ", ".join(f'"{c}"' for c, _ in COLUMNS)
    rows = db.backend.execute(f'SELECT {names} FROM "T"').to_pylist()
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)


def run(path: Path, how: str, on_error: str = "skip", db: huntsman.Database | None = None
        ) -> tuple[Any, huntsman.Database]:
    """Ingest ``path`` the ``how`` way ("scan": as users do; "arrow": the file read in Python
    and coerced in one streaming query; "blocks": block by block): its outcome or error."""
    db = db or fresh()
    try:
        if how == "blocks":
            rep = ingest_module.Ingestion(db.backend, None, on_error,  # type: ignore[arg-type]
                                          str(path)).run(formats.read_ndjson(path, "T"))
        else:
            rep = ingest_module.ingest(db.backend, "T", path, on_error=on_error,  # type: ignore[arg-type]
                                       scan=how == "scan")
    except huntsman.IngestError as e:
        return ("IngestError", str(e)), db
    return {"accepted": rep.accepted, "rejected": rep.rejected, "duplicates": rep.duplicates,
            "rejections": [(r.line, r.reason) for r in rep.rejections],
            "overflow": rep.tables.get("T", ingest_module.TableCounts()).overflow,
            "rows": stored(db), "scanned": rep.engine_read}, db


def agree(path: Path, on_error: str = "skip") -> dict[str, Any]:
    """The three ways' outcomes, checked equal (but for who read the file)."""
    outcomes = [run(path, how, on_error)[0] for how in ("scan", "arrow", "blocks")]
    scanned = outcomes[0].pop("scanned", None) if isinstance(outcomes[0], dict) else None
    for other in outcomes[1:]:
        if isinstance(other, dict):
            assert other.pop("scanned") is False
    assert outcomes[0] == outcomes[1] == outcomes[2]
    if isinstance(outcomes[0], dict):
        outcomes[0]["scanned"] = scanned
    return outcomes[0]  # type: ignore[no-any-return]


def write(path: Path, records: list[Any], raw: list[str] | None = None) -> Path:
    lines = [json.dumps(r) for r in records] + (raw or [])
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- generated files

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**62), 2**62),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.text(max_size=8),
                    st.sampled_from(["12", " 7 ", "2.0", "2.5", "1e3", "true", "True", "0",
                                     "1.5:00:00", "00:00:30", "", "{\"a\": 1}", "[1, 2]",
                                     "6f1e0c4b-6c1a-4f7e-9f57-3d2f9b7e8a10"]))
TIMES = st.one_of(st.sampled_from([
    "2024-01-15T10:00:00Z", "2024-01-15T10:00:00.1234565Z", "2024-01-15T10:00:00.1234575Z",
    "2024-01-15 10:00", "2024-01-15", "2024-01-15T12:00:00+02:00", "1705312800", "",
    "1/15/2024 10:00:00 AM", "1969-12-31T23:59:59.9999995Z"]), st.none(),
    st.integers(0, 2**33))
NESTED = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=5)


GUIDS = st.uuids().map(str)
CANONICAL: dict[str, st.SearchStrategy[Any]] = {
    "datetime": st.one_of(st.sampled_from([
        "2024-01-15T10:00:00Z", "2024-01-15T10:00:00.1234565Z", "2024-01-15T10:00:00.1234575Z",
        "2024-01-15T10:00:00.5Z", "2024-01-15 10:00", "2024-01-15"]), st.integers(0, 2**31)),
    "string": st.one_of(st.text(max_size=6), st.integers(), st.booleans(), GUIDS),
    "long": st.one_of(st.integers(-(2**62), 2**62), st.integers(-999, 999).map(str)),
    "int": st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-99, 99).map(str)),
    "real": st.one_of(st.floats(-1e9, 1e9, allow_nan=False, width=32), st.integers(-99, 99)),
    "bool": st.one_of(st.booleans(), st.sampled_from(["true", "false"])),
    "guid": st.one_of(GUIDS, GUIDS.map(str.upper)),
    "timespan": st.integers(-(2**40), 2**40),
}
"""Values of each column type in the forms the SQL rules take."""


@st.composite
def files(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records of known keys only: each column's values in the forms the SQL rules take, or
    of one JSON type per file, or of any (the reader types a column from a sample: a mix
    fails it, and the batch goes the exact way); some with the alias TimeGenerated, some
    repeating an event."""
    n = draw(st.integers(1, 30))
    mode = draw(st.sampled_from(["canonical", "canonical", "typed", "mixed"]))
    kinds = {c: draw(st.sampled_from(["str", "int", "float", "bool", "null"])) for c, _ in COLUMNS}
    by_kind = {"str": st.text(max_size=6), "int": st.integers(-(2**40), 2**40),
               "float": st.floats(-1e6, 1e6, allow_nan=False, width=32),
               "bool": st.booleans(), "null": st.none()}
    out = []
    for i in range(n):
        rec: dict[str, Any] = {}
        for c, t in COLUMNS:
            if draw(st.integers(0, 4)) == 0:
                continue  # absent
            if c == "Timestamp":
                value = draw(CANONICAL[t] if mode == "canonical" else TIMES)
                rec["TimeGenerated" if draw(st.integers(0, 6)) == 0 else c] = value
            elif c in ("D", "AdditionalFields"):
                rec[c] = draw(NESTED)
            elif mode == "canonical":
                rec[c] = draw(st.one_of(st.none(), CANONICAL[t]))
            else:
                rec[c] = draw(SCALARS) if mode == "mixed" else draw(by_kind[kinds[c]])
        if draw(st.integers(0, 5)) == 0:
            rec.update(Timestamp="2024-01-15T10:00:00Z", DeviceId="dev", ReportId=i % 3)
        out.append(rec)
    return out


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=files(), gz=st.booleans())
def test_the_engine_scan_stores_what_the_exact_paths_store(tmp_path: Path,
                                                           records: list[dict[str, Any]],
                                                           gz: bool) -> None:
    path = tmp_path / ("t.ndjson.gz" if gz else "t.ndjson")
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    agree(path, "skip")
    agree(path, "fail")


def test_a_clean_file_is_read_by_the_engine(tmp_path: Path) -> None:
    recs = [{"Timestamp": f"2024-01-15T10:00:{i % 60:02d}.1234565Z", "DeviceId": f"d{i % 7}",
             "ReportId": i, "N": str(i), "R": i / 4, "B": i % 2 == 0,
             "D": {"k": [i, "x"]}, "G": "6F1E0C4B-6C1A-4F7E-9F57-3D2F9B7E8A10",
             "Took": 300_000_000, "AdditionalFields": {"a": i}} for i in range(500)]
    out = agree(write(tmp_path / "t.ndjson", recs))
    assert out["scanned"] is True and out["accepted"] == 500
    first = json.loads(out["rows"][0])
    assert first["G"] == "6f1e0c4b-6c1a-4f7e-9f57-3d2f9b7e8a10"


def test_repeated_events_within_the_file_and_against_stored_rows(tmp_path: Path) -> None:
    recs = [{"Timestamp": "2024-01-15T10:00:00Z", "DeviceId": "d", "ReportId": i % 40,
             "N": i} for i in range(100)]  # 60 repeats of 40 events: the first of each kept
    recs += [{"Timestamp": "2024-01-15T10:00:00Z", "DeviceId": "", "ReportId": 1}] * 2
    path = write(tmp_path / "t.ndjson", recs)
    out = agree(path)  # (which repeat is first is known to the exact ways only)
    assert not out["scanned"] and (out["accepted"], out["duplicates"]) == (42, 60)
    assert sorted(json.loads(r)["N"] for r in out["rows"] if json.loads(r)["N"] is not None) \
        == list(range(40))
    # events already stored: the engine drops them
    db = fresh()
    once = write(tmp_path / "once.ndjson", recs[:40] + recs[-2:])
    first, _ = run(once, "scan", db=db)
    assert first["scanned"] and first["accepted"] == 42
    again, _ = run(write(tmp_path / "again.ndjson", recs[:50]), "scan", db=db)
    assert not again["scanned"]  # 40..49 repeat 0..9 within the file
    again, _ = run(once, "scan", db=db)
    assert again["scanned"] and (again["accepted"], again["duplicates"]) == (2, 40)
    assert len(again["rows"]) == 44
    assert sorted(set(again["rows"])) == sorted(set(first["rows"]))


def test_a_record_the_rules_flag_sends_the_batch_the_exact_way(tmp_path: Path) -> None:
    recs: list[Any] = [{"DeviceId": f"d{i}", "N": i} for i in range(50)]
    recs[30] = {"DeviceId": "x", "N": "seven"}
    out = agree(write(tmp_path / "t.ndjson", recs))
    assert out["scanned"] is False and out["accepted"] == 49
    assert out["rejections"] == [(31, "column 'N' (int): 'seven' is not a whole number")]
    failed = agree(write(tmp_path / "t.ndjson", recs), on_error="fail")
    assert failed[0] == "IngestError" and "record 31" in failed[1]


@pytest.mark.parametrize("line", ["null", "{}", "[1]", "\"text\"", "{bad", '{"N": 1, "N": 2}',
                                  '{"DeviceId": "a", "Extra": 1}', "\ufeff{}"])
def test_lines_the_engine_reader_takes_differently(tmp_path: Path, line: str) -> None:
    out = agree(write(tmp_path / "t.ndjson", [{"DeviceId": "a"}] * 3, [line]))
    assert out["scanned"] is False


def test_a_key_first_seen_after_the_readers_sample(tmp_path: Path) -> None:
    recs: list[dict[str, Any]] = [{"DeviceId": f"d{i}"} for i in range(SAMPLE + 50)]
    recs[-10] = {"DeviceId": "late", "N": 5}  # a known column: the reader did not see it
    recs[-5] = {"DeviceId": "late", "Extra": 5}  # an unknown one
    out = agree(write(tmp_path / "t.ndjson", recs))
    assert out["scanned"] is False
    assert out["overflow"] == ["Extra"] and out["accepted"] == SAMPLE + 50


def test_gzip_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "T.ndjson"  # gzip inside, no .gz suffix
    path.write_bytes(gzip.compress(b'{"DeviceId": "a", "N": 1}\n' * 20))
    out = agree(path)
    assert out["scanned"] is True and out["accepted"] == 20


def test_a_file_that_cannot_be_linked_is_read_in_python(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    out, _ = run(write(tmp_path / "t.ndjson", [{"DeviceId": "a"}] * 5), "scan")
    assert out["scanned"] is False and out["accepted"] == 5


def test_the_spool_holds_only_files_being_ingested(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = huntsman.Store(data)
    db = store.tenant("t1")
    db.create_table("T", COLUMNS)
    spool = db.backend.spool  # type: ignore[attr-defined]
    assert spool is not None and spool.is_dir() and data in spool.parents
    rep = db.ingest("T", write(tmp_path / "t.ndjson", [{"DeviceId": "a"}] * 5))
    assert rep.engine_read and list(spool.iterdir()) == []
    (spool / "left-by-a-crash.input").write_text("{}")
    store.close()
    store = huntsman.Store(data)
    assert list(store.tenant("t1").backend.spool.iterdir()) == []  # type: ignore[attr-defined]
    store.close()


def test_the_engine_still_reads_no_other_file(tmp_path: Path) -> None:
    """Only the spool (links to the files being ingested into this store) is open to SQL."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "hunter2"}\n')
    db = fresh()
    spool = db.backend.spool  # type: ignore[attr-defined]
    os.symlink(secret, spool / "link.json")  # a symbolic link leads nowhere either
    for sql in (f"SELECT * FROM read_json('{secret}')", "SELECT * FROM read_text('/etc/passwd')",
                f"SELECT * FROM read_json('{spool}/../../../../../../{secret}')",
                f"SELECT * FROM read_json('{spool}/link.json')",
                f"COPY (SELECT 1) TO '{tmp_path}/x.csv'"):
        with pytest.raises(Exception, match="disabled by configuration"):
            db.backend.execute(sql)


def test_ctrl_c_during_the_engine_read_stops_the_ingest(tmp_path: Path) -> None:
    """DuckDB's client reports Ctrl-C as a RuntimeError: it must stop the ingest (nothing
    written), not be taken for a file the engine could not read and be read again."""
    path = tmp_path / "big.ndjson"
    path.write_bytes(b'{"DeviceId": "dev-0001", "N": 1, "B": true, "R": 0.5}\n' * 4_000_000)
    script = f"""
import sys, huntsman
store = huntsman.Store({str(tmp_path / 'data')!r})
db = store.tenant("t")
db.create_table("T", {COLUMNS!r})
print("ready", flush=True)
try:
    db.ingest("T", {str(path)!r})
except KeyboardInterrupt:
    print("interrupted", db.query("T | count").rows[0][0], flush=True)
    sys.exit(3)
print("finished", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, (out, err)
    assert out.strip() == "interrupted 0"


def test_ctrl_c_in_huntsman_ingest_says_what_was_stored(tmp_path: Path) -> None:
    small = write(tmp_path / "DeviceProcessEvents.ndjson",
                  [{"DeviceId": "a", "ReportId": 1, "Timestamp": "2024-01-15T10:00:00Z"}])
    big = tmp_path / "big.ndjson"
    big.write_bytes(b'{"DeviceId": "dev-0001", "ProcessId": 1, "ReportId": 7}\n' * 4_000_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "huntsman.cli", "ingest", "--data-dir", str(tmp_path / "data"),
         "--table", "DeviceProcessEvents", str(small), str(big)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(f"{small}: 1 accepted")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err.strip().endswith(f"{big}: interrupted: nothing from it was stored (the 1 "
                                f"file(s) before it were)")


def test_commit_listeners_get_the_rows_the_engine_stored(tmp_path: Path) -> None:
    """Continuous rules listen to committed batches: a file the engine read reaches them as
    the Arrow rows it stored (coerced types; repeats of stored events left out)."""
    db = fresh()
    seen: list[pa.Table] = []
    db.add_commit_listener(lambda _db, batch: seen.append(batch["T"]))
    recs = [{"Timestamp": "2024-01-15T10:00:00Z", "DeviceId": "d", "ReportId": i,
             "D": {"k": i}, "G": "6F1E0C4B-6C1A-4F7E-9F57-3D2F9B7E8A10"} for i in range(10)]
    first = db.ingest("T", write(tmp_path / "a.ndjson", recs[:6]))
    again = db.ingest("T", write(tmp_path / "b.ndjson", recs[4:]))
    assert first.engine_read and again.engine_read
    assert (again.accepted, again.duplicates) == (4, 2)
    assert [t.num_rows for t in seen] == [6, 4]
    assert seen[1].schema == pa.schema([(c, ARROW_TYPES[t]) for c, t in COLUMNS])
    assert sorted(seen[1].column("ReportId").to_pylist()) == [6, 7, 8, 9]
    assert seen[1].column("D").to_pylist()[0].startswith('{"k":')
    assert seen[1].column("G").to_pylist()[0] == "6f1e0c4b-6c1a-4f7e-9f57-3d2f9b7e8a10"


# ---------------------------------------------------------------- streaming-export envelopes

def export_file(path: Path, records: list[dict[str, Any]], per_line: int = 7,
                category: str = "AdvancedHunting-T", raw: list[str] | None = None) -> Path:
    lines = [json.dumps({"records": [{"time": "2024-01-15T10:00:00Z", "tenantId": "t",
                                      "operationName": "Publish", "category": category,
                                      "properties": r} for r in records[i:i + per_line]]})
             for i in range(0, len(records), per_line)]
    path.write_text("\n".join(lines + (raw or [])) + "\n")
    return path


def agree_export(path: Path, on_error: str = "skip") -> dict[str, Any]:
    """The export read by the engine and in Python: the same outcome."""
    outcomes = []
    for scan in (True, False):
        db = fresh()
        try:
            rep = ingest_module.ingest(db.backend, None, path, on_error=on_error,  # type: ignore[arg-type]
                                       scan=scan)
        except huntsman.IngestError as e:
            outcomes.append(("IngestError", str(e)))
            continue
        outcomes.append({"accepted": rep.accepted, "rejected": rep.rejected,
                         "duplicates": rep.duplicates, "rows": stored(db),
                         "rejections": [(r.line, r.item, r.reason) for r in rep.rejections],
                         "scanned": rep.engine_read})
    scanned = outcomes[0].pop("scanned", None) if isinstance(outcomes[0], dict) else None
    if isinstance(outcomes[1], dict):
        assert outcomes[1].pop("scanned") is False
    assert outcomes[0] == outcomes[1]
    if isinstance(outcomes[0], dict):
        outcomes[0]["scanned"] = scanned
    return outcomes[0]  # type: ignore[no-any-return]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=files(), per_line=st.integers(1, 9))
def test_export_envelopes_read_by_the_engine_as_in_python(tmp_path: Path,
                                                          records: list[dict[str, Any]],
                                                          per_line: int) -> None:
    agree_export(export_file(tmp_path / "export.json", records, per_line))


def test_a_clean_export_is_read_by_the_engine(tmp_path: Path) -> None:
    recs = [{"Timestamp": f"2024-01-15T10:00:{i % 60:02d}.1234565Z", "DeviceId": f"d{i % 7}",
             "ReportId": i, "N": i, "D": {"k": [i]}, "AdditionalFields": {"a": i}}
            for i in range(300)]
    out = agree_export(export_file(tmp_path / "export.json", recs, 100))
    assert out["scanned"] is True and out["accepted"] == 300
    gz = tmp_path / "export.json.gz"
    gz.write_bytes(gzip.compress((tmp_path / "export.json").read_bytes()))
    out = agree_export(gz)
    assert out["scanned"] is True and out["accepted"] == 300


@pytest.mark.parametrize("extra", [
    ['{"time": "x", "category": "AdvancedHunting-T", "properties": {"DeviceId": "bare"}}'],
    [json.dumps({"records": [{"category": "AdvancedHunting-DeviceEvents",
                              "properties": {"DeviceId": "other table"}}]})],
    [json.dumps({"records": [{"category": "AdvancedHunting-T", "properties": "text"}]})],
    [json.dumps({"records": [{"category": "AdvancedHunting-T",
                              "properties": {"DeviceId": "x", "Bogus": 1}}]})],
    [json.dumps({"records": [{"category": "AdvancedHunting-T",
                              "properties": {"DeviceId": "x", "N": "seven"}}]})],
    ["{broken"],
])
def test_exports_the_engine_leaves_to_python(tmp_path: Path, extra: list[str]) -> None:
    recs = [{"DeviceId": f"d{i}", "N": i} for i in range(20)]
    out = agree_export(export_file(tmp_path / "export.json", recs, 5, raw=extra))
    assert out["scanned"] is False



def test_blank_lines_in_an_export(tmp_path: Path) -> None:
    recs = [{"DeviceId": f"d{i}", "N": i} for i in range(30)]
    path = export_file(tmp_path / "export.json", recs, 10)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "", lines[1], "", "", lines[2]]) + "\n\n")
    out = agree_export(path)
    assert out["scanned"] is True and out["accepted"] == 30
    path.write_text("\n".join([lines[0], "   ", lines[1], lines[2]]) + "\n")
    assert agree_export(path)["accepted"] == 30


def test_an_engine_message_cut_inside_a_character(tmp_path: Path) -> None:
    """DuckDB quotes the first 50 bytes of a record it fails on; cut inside a multibyte
    character, its message is not UTF-8 (Python's client raises UnicodeDecodeError): that is
    still just a file for the exact way, never a crash."""
    for k in range(30, 50):
        path = tmp_path / f"u{k}.ndjson"
        name = "a" * k + "é" * 10
        repeated = '{"DeviceId":"' + name + '","N":1,"N":2}\n'  # (json.dumps cannot repeat a key)
        path.write_text('{"DeviceId": "x", "N": 1}\n' + repeated)
        out, _ = run(path, "scan")
        assert out["scanned"] is False and out["accepted"] == 2, (k, out)


def test_an_envelope_line_longer_than_the_engine_reads(tmp_path: Path) -> None:
    """Lines past EXPORT_LINE_BYTES fail the engine's read: the file goes the Python way."""
    from huntsman.store.fastjson import EXPORT_LINE_BYTES
    big = "x" * 2000
    n = EXPORT_LINE_BYTES // 2000 + 10
    recs = [{"DeviceId": f"d{i}", "AdditionalFields": big} for i in range(n)]
    path = export_file(tmp_path / "export.json", recs, per_line=n)
    assert path.stat().st_size > EXPORT_LINE_BYTES
    out = agree_export(path)
    assert out["scanned"] is False and out["accepted"] == n
