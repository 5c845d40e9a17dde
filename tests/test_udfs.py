"""The Python UDFs behind parse_xml, parse_user_agent and the series analysis functions
(huntsman/backends/duckdb/udfs.py): safety, properties, and their registration on DuckDB."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import huntsman
from huntsman.backends.duckdb import DuckDBBackend
from huntsman.backends.duckdb.udfs import (
    XML_MAX_BYTES,
    decompose,
    fir,
    fit_line,
    iir,
    outlier_factor,
    percentile_linear,
    periods_detect,
    series_outliers_list,
    user_agent_json,
    xml_to_json,
)

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
CENTS = st.integers(min_value=-100_000, max_value=100_000).map(lambda v: v / 100)
"""Values with a resolution far above float rounding (scores compare across transforms)."""


@pytest.fixture(scope="module")
def db() -> huntsman.Database:
    return huntsman.connect()


# ---------------------------------------------------------------- parse_xml safety


def test_external_entity_never_reads_the_file(tmp_path: Path, db: huntsman.Database) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak SYSTEM "file://' + str(secret) + '">')
    attempts = [
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>',
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{dtd}"> %p;]><r>&leak;</r>',
        f'<!DOCTYPE r SYSTEM "file://{dtd}"><r>&leak;</r>',
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{secret}">]><r a="&x;"/>',
    ]
    for xml in attempts:
        out = xml_to_json(xml)
        assert out is None or "TOP-SECRET" not in out, xml
        row = db.query(f"print o = parse_xml({json.dumps(xml)})").rows[0][0]
        assert row is None or "TOP-SECRET" not in json.dumps(row)


def test_entity_expansion_bomb_is_refused() -> None:
    # "billion laughs": 10^9 expansions if entities were expanded
    decls = "".join(f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 10))
    bomb = f'<!DOCTYPE r [<!ENTITY l0 "lol">{decls}]><r>&l9;</r>'
    assert xml_to_json(bomb) is None
    # quadratic blow-up: one big entity referenced many times
    big = f'<!DOCTYPE r [<!ENTITY a "{"x" * 10000}">]><r>{"&a;" * 10000}</r>'
    assert xml_to_json(big) is None


def test_size_limit_and_deep_nesting() -> None:
    body = "a" * (XML_MAX_BYTES - len("<e></e>"))
    assert xml_to_json(f"<e>{body}</e>") == json.dumps({"e": body}, separators=(",", ":"))
    assert xml_to_json(f"<e>{body}a</e>") is None
    # over the limit in bytes though not in characters
    assert xml_to_json("<e>" + "é" * (XML_MAX_BYTES // 2) + "</e>") is None
    assert xml_to_json("<a>" * 100 + "x" + "</a>" * 100) is not None
    # nesting deeper than the converter's recursion gives null, not an error
    assert xml_to_json("<a>" * 100_000 + "</a>" * 100_000) is None


@pytest.mark.parametrize("bad", [None, "", "<", "<a>", "<a></b>", "<a/><b/>", "text",
                                 "<a x='1' x='2'/>", "\x00<a/>"])
def test_invalid_xml_is_none(bad: str | None) -> None:
    assert xml_to_json(bad) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_xml_never_raises(text: str) -> None:
    out = xml_to_json(text)
    assert out is None or isinstance(json.loads(out), dict)


def test_repeated_and_mixed_content() -> None:
    got = json.loads(xml_to_json("<r><a k='1'>x</a><a>y</a> tail <b/></r>") or "null")
    assert got == {"r": {"#text": "tail", "a": [{"@k": "1", "#text": "x"}, "y"], "b": None}}
    assert list(got["r"])[0] == "#text"


# ---------------------------------------------------------------- parse_user_agent


def test_user_agent_parts_and_order() -> None:
    ua = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.6099.130 Safari/537.36")
    out = json.loads(user_agent_json(ua, "os,browser"))
    assert list(out) == ["OperatingSystem", "Browser"]
    assert out["Browser"] == {"Family": "Chrome", "MajorVersion": "120", "MinorVersion": "0",
                              "Patch": "6099"}
    assert out["OperatingSystem"]["Family"] == "Windows"
    assert set(out["OperatingSystem"]) == {"Family", "MajorVersion", "MinorVersion", "Patch",
                                           "PatchMinor"}
    assert user_agent_json(ua, "os,browser") == user_agent_json(ua, "os,browser")


def test_user_agent_non_constant_column(db: huntsman.Database) -> None:
    r = db.query('datatable(ua:string)["Mozilla/5.0 (X11; Linux x86_64; rv:121.0) '
                 'Gecko/20100101 Firefox/121.0", ""] '
                 '| project f = tostring(parse_user_agent(ua, "browser").Browser.Family)')
    assert sorted(v for (v,) in r.rows) == ["Firefox", "Other"]


# ---------------------------------------------------------------- series_outliers


@settings(max_examples=200, deadline=None)
@given(st.lists(FINITE, min_size=1, max_size=60),
       st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy(values: list[float], p: float) -> None:
    ordered = sorted(values)
    assert percentile_linear(ordered, p) == pytest.approx(
        float(np.percentile(values, p)), rel=1e-12, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(CENTS, min_size=4, max_size=50), st.sampled_from(["ctukey", "tukey"]))
def test_outlier_scores_follow_tukeys_fences(values: list[float], kind: str) -> None:
    scores = series_outliers_list(values, kind)
    lo_p, hi_p = (25.0, 75.0) if kind == "tukey" else (10.0, 90.0)
    lo, hi = np.percentile(values, [lo_p, hi_p])
    assert len(scores) == len(values)
    for v, score in zip(values, scores, strict=True):
        if lo <= v <= hi:
            assert score == 0.0
        elif v > hi:
            assert score > 0
        else:
            assert score < 0
    # a shift or a positive scale of the data changes no score
    if hi > lo:
        moved = series_outliers_list([2 * v + 7 for v in values], kind)
        assert moved == pytest.approx(scores, rel=1e-6, abs=1e-9)


def test_outlier_missing_and_ignored_score_zero() -> None:
    scores = series_outliers_list([1, math.nan, 2, -99, 3, 1000], "tukey", ignore=-99)
    assert scores[1] == 0.0 and scores[3] == 0.0
    assert scores == series_outliers_list([1, 0, 2, 0, 3, 1000], "tukey", ignore=0)
    assert series_outliers_list([], "ctukey") == []
    assert series_outliers_list([math.nan, math.nan]) == [0.0, 0.0]


def test_outlier_factor() -> None:
    assert outlier_factor("tukey", 25, 75) == 1.0
    # Kusto's own output gives this factor for the default percentiles (see the golden case)
    assert outlier_factor("ctukey", 10, 90) == pytest.approx(2.772605605507915, rel=1e-12)
    # narrower ranges need less scaling, wider ones more
    assert outlier_factor("ctukey", 25, 75) < outlier_factor("ctukey", 10, 90) \
        < outlier_factor("ctukey", 5, 95)


# ---------------------------------------------------------------- decomposition, fits


@settings(max_examples=100, deadline=None)
@given(st.lists(FINITE, min_size=1, max_size=80), st.integers(min_value=-1, max_value=12),
       st.sampled_from(["avg", "linefit", "none"]), st.integers(min_value=0, max_value=5))
def test_decompose_parts_add_up(values: list[float], period: int, trend: str,
                                test_points: int) -> None:
    y = np.array(values)
    parts = decompose(y, period, trend, test_points)
    for name in ("baseline", "seasonal", "trend", "residual"):
        assert len(parts[name]) == len(values)
    b, s, t, r = (np.array(parts[k], dtype=float)
                  for k in ("baseline", "seasonal", "trend", "residual"))
    assert np.allclose(b, s + t, rtol=1e-9, atol=1e-6)
    assert np.allclose(y, b + r, rtol=1e-9, atol=1e-6)


def test_decompose_recovers_season_and_trend() -> None:
    t = np.arange(24 * 7 * 3)
    season = np.tile([0, 0, 1, 5, 9, 9, 7, 3, 1, 0, 0, 0] * 2, 7 * 3)
    y = season + 0.05 * t
    parts = decompose(y.astype(float), 24, "linefit")
    residual = np.array(parts["residual"], dtype=float)
    assert np.abs(residual).max() < 1.0
    assert np.array(parts["trend"])[-1] > np.array(parts["trend"])[0]


def test_periods_detect_finds_daily_and_weekly() -> None:
    t = np.arange(24 * 7 * 4)
    y = 10 + 5 * np.sin(2 * np.pi * t / 24) + 3 * np.sin(2 * np.pi * t / 168)
    periods, scores = periods_detect(y, 20, 200, 3)
    assert sorted(periods[:2]) == [24.0, 168.0]
    assert periods[2] == 0.0 and scores[2] == 0.0
    assert all(0 < s <= 1 for s in scores[:2])
    assert periods_detect(np.ones(50), 4, 25, 2) == ([0.0, 0.0], [0.0, 0.0])
    assert periods_detect(np.array([1.0, 2.0]), 4, 25, 1) == ([0.0], [0.0])


@settings(max_examples=100, deadline=None)
@given(st.lists(FINITE, min_size=2, max_size=50))
def test_fit_line_matches_numpy(values: list[float]) -> None:
    fit = fit_line(np.array(values))
    assert fit is not None
    x = np.arange(1, len(values) + 1)
    slope, intercept = np.polyfit(x, values, 1)
    scale = 1 + max(abs(v) for v in values)
    assert fit["slope"] == pytest.approx(slope, abs=1e-6 * scale)
    assert fit["interception"] == pytest.approx(intercept, abs=1e-5 * scale)
    assert fit["variance"] == pytest.approx(np.var(values, ddof=1), rel=1e-6, abs=1e-6)
    assert -1e-9 <= fit["rsquare"] <= 1 + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(CENTS, min_size=1, max_size=40), st.lists(CENTS, min_size=1, max_size=6))
def test_fir_is_a_causal_convolution(values: list[float], coefficients: list[float]) -> None:
    expected = np.convolve(values, coefficients)[:len(values)]
    got = fir(values, coefficients, normalize=False)
    assert got is not None
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-6)
    # an IIR filter without feedback is the same FIR filter
    assert np.allclose(iir(values, coefficients, [1.0]) or [], expected, rtol=1e-9, atol=1e-6)


def test_iir_feedback_and_invalid_denominators() -> None:
    # exponential smoothing y[i] = 0.5 x[i] + 0.5 y[i-1]
    assert iir([2.0, 2.0, 2.0], [0.5], [1, -0.5]) == [1.0, 1.5, 1.75]
    assert iir([1.0], [1], [0, 1]) is None
    assert iir([1.0], [], [1]) is None
    assert fir([1.0, 2.0], [1, -1], normalize=True) is None
    assert fir([1.0, 2.0], [1, -1]) == [1.0, 1.0]


# ---------------------------------------------------------------- registration on DuckDB


def test_same_file_opened_twice_keeps_the_functions(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    first = DuckDBBackend(path)
    second = DuckDBBackend(path)  # the same instance: the functions are already there
    try:
        for backend in (first, second):
            out = backend.execute("SELECT huntsman_parse_xml('<a>1</a>') AS x")
            assert out.column("x").to_pylist() == ['{"a":"1"}']
    finally:
        second.close()
        first.close()


def test_udfs_run_on_many_rows_and_are_deterministic(db: huntsman.Database) -> None:
    q = ("range i from 1 to 3000 step 1 "
         "| extend s = pack_array(i % 7, i % 5, 3, 4, 5, iff(i % 100 == 0, 500, 6)) "
         "| extend o = series_outliers(s) "
         "| extend x = parse_xml(strcat('<e n=\"', i, '\">', i % 3, '</e>')) "
         "| summarize outliers = countif(todouble(o[5]) > 1.5), "
         "ones = countif(tostring(x.e['#text']) == '1'), total = count()")
    first = db.query(q).rows
    assert first == [(30, 1000, 3000)]
    assert db.query(q).rows == first
