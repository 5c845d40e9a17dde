"""A query reaches only the tables it names: no files, no settings, no SQL injection."""

from __future__ import annotations

import pytest

import huntsman
from huntsman.errors import KqlError


@pytest.fixture(scope="module")
def db() -> huntsman.Database:
    d = huntsman.connect()
    d.create_table("T", [("s", "string")])
    d.ingest("T", [{"s": "a'b"}, {"s": "c\\d"}, {"s": "x; DROP TABLE T; --"}])
    return d


@pytest.mark.parametrize("kql", [
    "print read_csv('/etc/passwd')",
    "print x = read_text('/etc/passwd')",
    "T | extend x = getenv('HOME')",
    "print current_setting('enable_external_access')",
    "T | where s == '' or glob('/etc/*')",
    "print x = system('id')",
    "['read_csv(\\'/etc/passwd\\')']",
    "T | project ['read_csv(\\'/etc/passwd\\')']",
    "union ['/etc/passwd']",
    "T | join (['duckdb_settings()']) on s",
    "evaluate python('print(1)')",
    "externaldata(x:string)['file:///etc/passwd']",
])
def test_engine_functions_and_files_are_unreachable(db: huntsman.Database, kql: str) -> None:
    with pytest.raises(KqlError):
        db.query(kql)


def test_a_column_named_like_a_table_function_is_just_a_name(db: huntsman.Database) -> None:
    db.create_table("Odd", [("read_csv('/etc/passwd')", "string")])
    db.ingest("Odd", [{"read_csv('/etc/passwd')": "safe"}])
    r = db.query("Odd | project ['read_csv(\\'/etc/passwd\\')']")
    assert r.rows == [("safe",)]
    assert r.columns == [("read_csv('/etc/passwd')", "string")]


@pytest.mark.parametrize("needle", ["a'b", "c\\d", "'; DROP TABLE T; --", "%", "_", "\\",
                                    "x; DROP TABLE T; --", "' OR '1'='1"])
def test_quotes_backslashes_and_sql_in_literals_stay_literals(
        db: huntsman.Database, needle: str) -> None:
    for op in ("==", "contains", "has", "startswith", "=~"):
        r = db.query(f"T | where s {op} {needle!r} | count".replace("\\\\", "\\\\"))
        assert isinstance(r.rows[0][0], int)
    exact = db.query("T | where s == " + _kql_string(needle))
    assert [row[0] for row in exact.rows] == ([needle] if needle in
                                             ("a'b", "c\\d", "x; DROP TABLE T; --") else [])
    assert db.query("T | count").rows == [(3,)]


def _kql_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_user_names_never_reach_sql_text() -> None:
    sql = huntsman.to_sql("print ['x\"; DROP TABLE T; --'] = 1")
    assert ";" not in sql and "--" not in sql and '\\"' not in sql
    r = huntsman.connect().query("print ['x\"; DROP TABLE T; --'] = 1")
    assert r.columns == [('x"; DROP TABLE T; --', "long")]


def test_store_connection_cannot_read_files(db: huntsman.Database) -> None:
    import duckdb
    with pytest.raises(duckdb.Error):
        db.backend.execute("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(duckdb.Error):
        db.backend.execute("SET enable_external_access = true")
