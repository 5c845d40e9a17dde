"""Runs every ``*.kqltest`` golden case on every backend (today: DuckDB)."""

from __future__ import annotations

import pytest

import huntsman
from huntsman.errors import KqlError
from tests.conformance.kqltest import (
    FIXTURES,
    Case,
    all_cases,
    parse_expected,
    render,
    rows_match,
)

BACKENDS = ["duckdb"]
CASES = all_cases()


def _params() -> list[object]:
    out = []
    for case in CASES:
        for backend in BACKENDS:
            marks = []
            if backend in case.notimpl:
                marks.append(pytest.mark.xfail(reason=case.notimpl[backend], strict=True))
            out.append(pytest.param(case, backend, id=f"{backend}:{case.id}", marks=marks))
    return out


@pytest.fixture(scope="module")
def db() -> huntsman.Database:
    database = huntsman.connect()
    if FIXTURES.is_dir():
        database.load_directory(FIXTURES)
    return database


def test_case_names_are_unique() -> None:
    seen: dict[str, str] = {}
    dups = []
    for c in CASES:
        if c.name in seen:
            dups.append(f"{c.name} ({seen[c.name]} and {c.id})")
        seen[c.name] = c.id
    assert not dups, "duplicate case names: " + ", ".join(dups)


@pytest.mark.parametrize(("case", "backend"), _params())
def test_case(case: Case, backend: str, db: huntsman.Database) -> None:
    where = f"{case.file.name}:{case.line}"
    if case.kind == "error":
        with pytest.raises(KqlError) as info:
            db.query(case.query)
        err = info.value
        assert err.kind == case.error, f"{where}: expected {case.error}, got {err.kind}: {err}"
        assert case.error_text in err.message, \
            f"{where}: message {err.message!r} lacks {case.error_text!r}"
        return
    result = db.query(case.query)
    assert result.columns == case.header, \
        f"{where}: columns {result.columns} != expected {case.header}\nSQL: {result.sql}"
    types = [t for _, t in case.header]
    expected = [[parse_expected(v, t) for v, t in zip(row, types, strict=True)]
                for row in case.rows]
    got = result.rows
    if not rows_match(got, expected, types, case.ordered):
        shown = "\n".join(" | ".join(render(v, t) for v, t in zip(r, types, strict=True))
                          for r in got)
        pytest.fail(f"{where}: rows differ\nexpected:\n" + "\n".join(
            " | ".join(r) for r in case.rows) + f"\ngot:\n{shown}\nSQL: {result.sql}")
