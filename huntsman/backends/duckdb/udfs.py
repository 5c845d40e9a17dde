"""Python functions registered on DuckDB connections, for the few KQL functions that SQL cannot
express faithfully: ``parse_xml``, ``parse_user_agent`` and the series analysis functions
(``series_outliers``, ``series_decompose*``, ``series_periods_detect``, ``series_fit_line``).

Each is a vectorised Arrow UDF (one call per batch of rows) named ``huntsman_<function>``; the
KQL lowerings in ``huntsman/kql/functions`` call them by these names. They are deterministic,
never touch files or the network, and turn every malformed input into a null result rather than
an error, as Kusto does. A dynamic value travels as its JSON text.

    >>> xml_to_json("<e name='v'>text</e>")
    '{"e":{"@name":"v","#text":"text"}}'
    >>> series_outliers_list([-3, 2.4, 15, 3.9, 5, 6, 4.5, 5.2, 3, 4, 5, 16, 7, 5, 5, 4])[0]
    -1.904078548360857
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import ua_parser
import xmltodict
from duckdb.func import FunctionNullHandling, PythonUDFType

XML_MAX_BYTES = 1_048_576
"""parse_xml's input limit: longer strings give null (Kusto's documented 1 MB)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


# ---------------------------------------------------------------- parse_xml


def xml_to_json(text: str | None) -> str | None:
    """XML as the JSON of Kusto's conversion: attributes ``@name``, text ``#text``, repeated
    elements as arrays, an empty element null; only elements, attributes and text are kept.
    None for invalid XML, for DTDs declaring entities (no XXE, no entity expansion) and for
    inputs over 1 MB.

    >>> xml_to_json("<e><a>1</a><a>2</a><b/></e>")
    '{"e":{"a":["1","2"],"b":null}}'
    >>> xml_to_json("<e>unclosed") is None
    True
    """
    if not text or len(text) > XML_MAX_BYTES or len(text.encode("utf-8")) > XML_MAX_BYTES:
        return None
    try:
        # disable_entities: any <!ENTITY> declaration is refused (expat never fetches external
        # DTDs or entities itself); comments and processing instructions are dropped
        doc = xmltodict.parse(text, disable_entities=True, process_comments=False,
                              attr_prefix="@", cdata_key="#text", strip_whitespace=True)
        return _dumps(_mixed_text_first(doc))
    except (ValueError, TypeError, RecursionError, xmltodict.expat.ExpatError):
        return None


def _mixed_text_first(node: Any) -> Any:
    """Put ``#text`` before the child elements, as Kusto's documented output shows it."""
    if isinstance(node, dict):
        items = [(k, _mixed_text_first(v)) for k, v in node.items()]
        if "#text" in node and len(node) > 1:
            attrs = [kv for kv in items if kv[0].startswith("@")]
            text = [kv for kv in items if kv[0] == "#text"]
            rest = [kv for kv in items if kv[0] != "#text" and not kv[0].startswith("@")]
            items = attrs + text + rest
        return dict(items)
    if isinstance(node, list):
        return [_mixed_text_first(v) for v in node]
    return node


# ---------------------------------------------------------------- parse_user_agent

UA_TARGETS = {"browser": "Browser", "os": "OperatingSystem", "device": "Device"}


def _ua_part(ua: str, target: str) -> dict[str, str]:
    """One part of a user agent with Kusto's field names ("Other" and "" when unknown); only
    that part's regular expressions run (each part has hundreds)."""
    if target == "browser":
        b = ua_parser.parse_user_agent(ua)
        return {"Family": b.family if b else "Other", "MajorVersion": (b and b.major) or "",
                "MinorVersion": (b and b.minor) or "", "Patch": (b and b.patch) or ""}
    if target == "os":
        o = ua_parser.parse_os(ua)
        return {"Family": o.family if o else "Other", "MajorVersion": (o and o.major) or "",
                "MinorVersion": (o and o.minor) or "", "Patch": (o and o.patch) or "",
                "PatchMinor": (o and o.patch_minor) or ""}
    d = ua_parser.parse_device(ua)
    return {"Family": d.family if d else "Other", "Brand": (d and d.brand) or "",
            "Model": (d and d.model) or ""}


@lru_cache(maxsize=65536)
def user_agent_json(ua: str, targets: str) -> str:
    """The parts of a user-agent string that ``targets`` names (comma-separated ``browser``,
    ``os``, ``device``), with Kusto's field names; missing versions are ``""``.

    >>> user_agent_json("Mozilla/5.0 (Windows; U; en-US) AppleWebKit/531.9 (KHTML, like Gecko) "
    ...                 "AdobeAIR/2.5.1", "browser")
    '{"Browser":{"Family":"AdobeAIR","MajorVersion":"2","MinorVersion":"5","Patch":"1"}}'
    """
    return _dumps({UA_TARGETS[t]: _ua_part(ua, t) for t in targets.split(",") if t})


# ---------------------------------------------------------------- series helpers


def _series(text: str | None) -> np.ndarray | None:
    """A JSON array as float64 (NaN for every element that is not a number); None when the
    value is not an array."""
    values = _series_list(text)
    return None if values is None else np.array(values, dtype=np.float64)


def _out(values: np.ndarray | Sequence[float]) -> list[float | None]:
    """Floats for JSON: NaN (a missing element) becomes null; infinities stay."""
    return [None if v != v else float(v) for v in values]


# ---------------------------------------------------------------- series_outliers

_Z = NormalDist().inv_cdf
_CTUKEY_DEFAULT_FACTOR = 2.772605605507915
"""The score factor of ctukey with the 10th/90th percentiles, from Kusto's own output (see
series_outliers_list); the factor for other percentiles follows from the effective fence."""
_EFFECTIVE_FENCE = _Z(0.9) + 1.5 * (_Z(0.9) - _Z(0.1)) / _CTUKEY_DEFAULT_FACTOR


def outlier_factor(kind: str, p_low: float, p_high: float) -> float:
    """The normalisation that makes a ctukey score comparable with Tukey's k (1.5 = mild)."""
    if kind == "tukey":
        return 1.0
    zl, zh = _Z(p_low / 100), _Z(p_high / 100)
    return 1.5 * (zh - zl) / (_EFFECTIVE_FENCE - zh)


def percentile_linear(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of sorted values, interpolated linearly between the closest
    ranks (numpy's default "linear" method, with its rounding: Kusto's documented choice)."""
    pos = (len(ordered) - 1) * p / 100.0
    lo = math.floor(pos)
    if lo + 1 >= len(ordered):
        return float(ordered[-1])
    a, b, t = ordered[lo], ordered[lo + 1], pos - lo
    diff = b - a
    return float(b - diff * (1 - t) if t >= 0.5 else a + diff * t)


def series_outliers_list(values: Sequence[float] | np.ndarray, kind: str = "ctukey",
                         ignore: float | None = None, p_low: float = 10.0,
                         p_high: float = 90.0) -> list[float]:
    """Kusto's series_outliers: 0 inside [P_low, P_high] (linear-interpolated percentiles of
    the present values), else the distance beyond the nearer percentile over P_high - P_low,
    times :func:`outlier_factor`. Missing and ``ignore`` elements score 0.

    >>> series_outliers_list([1, 2, 3, 4, 100], "tukey")
    [-0.5, 0.0, 0.0, 0.0, 48.0]
    """
    xs = [float(v) for v in values]
    if kind == "tukey":
        p_low, p_high = 25.0, 75.0
    skip = ignore is not None and not math.isnan(ignore)
    present = [v for v in xs if v == v and not (skip and v == ignore)]
    if not present:
        return [0.0] * len(xs)
    present.sort()
    lo, hi = percentile_linear(present, p_low), percentile_linear(present, p_high)
    factor = outlier_factor(kind, p_low, p_high)
    iqr = hi - lo
    out = []
    for v in xs:
        if v != v or (skip and v == ignore) or lo <= v <= hi:
            out.append(0.0)
        elif iqr == 0:
            out.append(math.inf if v > hi else -math.inf)
        else:
            out.append((v - hi if v > hi else v - lo) / iqr * factor)
    return out


def _series_list(text: str | None) -> list[float] | None:
    """Like :func:`_series`, as a list (cheaper for the short series of one row)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
            for v in value]


# ---------------------------------------------------------------- periods, decomposition


MIN_PERIOD_SCORE = 0.3
"""The least autocorrelation that counts as a period."""
MIN_CYCLES_DETECTED = 3
"""Seasonality detection (``-1``) needs this many whole periods in the series."""


def periods_detect(values: np.ndarray, min_period: float, max_period: float,
                   num_periods: int) -> tuple[list[float], list[float]]:
    """The most significant periods (in bins, at least 4 and at most half the length) and their
    scores in [0, 1], strongest first, padded with zeros to ``num_periods``.

    A period is a lag whose autocorrelation (of the mean-removed series, each lag averaged over
    its own overlap) is positive and the highest within 25% of the lag on either side, so that
    the side lobes and multiples of a stronger period are not reported again; periods scoring
    under :data:`MIN_PERIOD_SCORE` are not reported at all. Kusto's scoring is not published: these
    rules reproduce the periods of its documented examples.

    >>> periods_detect(np.array([0, 10, 20, 30, 40, 50, 60] * 4, dtype=float), 0, 50, 2)
    ([7.0, 0.0], [1.0, 0.0])
    """
    known = ~np.isnan(values)
    x = np.where(known, values, np.mean(values[known]) if known.any() else 0.0)
    n = len(x)
    periods: list[float] = []
    scores: list[float] = []
    lo = max(4, math.ceil(min_period))
    hi = min(n // 2, math.floor(max_period))
    z = x - x.mean() if n else x
    denom = float(np.dot(z, z)) / n if n else 0.0
    if hi >= lo and denom > 0:
        spectrum = np.fft.rfft(z, 2 * n)
        raw = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n)[:n]
        acf = raw / (n - np.arange(n)) / denom
        peaks = []
        # from lag 2: a period too short to report still hides its multiples
        for k in range(2, hi + 1):
            half = max(1, k // 4)
            window = acf[max(1, k - half): min(n - 1, k + half) + 1]
            if acf[k] > 0 and acf[k] >= window.max() - 1e-12:
                peaks.append((round(float(acf[k]), 12), k))
        found: list[int] = []
        for score, k in sorted(peaks, key=lambda p: (-p[0], p[1])):
            if any(k % p == 0 for p in found):
                continue
            found.append(k)
            if k >= lo and score >= MIN_PERIOD_SCORE and len(periods) < num_periods:
                periods.append(float(k))
                scores.append(min(1.0, score))
    while len(periods) < num_periods:
        periods.append(0.0)
        scores.append(0.0)
    return periods, scores


def detect_period(y: np.ndarray, threshold: float) -> int:
    """The seasonality that ``-1`` asks for: the strongest period seen at least
    :data:`MIN_CYCLES_DETECTED` times and scoring at least ``threshold``; 0 when none.

    >>> detect_period(np.array([2, 5, 3, 4, 3, 2] + [1, 2, 3, 4, 3, 2] * 3 + [1], dtype=float), 0.7)
    6
    """
    found, score = periods_detect(y, 4, len(y) / MIN_CYCLES_DETECTED, 1)
    return int(found[0]) if found[0] and score[0] >= threshold else 0


def seasonal_component(y: np.ndarray, period: int = -1, test_points: int = 0) -> list[float]:
    """Kusto's series_seasonal: the median per phase of the detected (threshold 0.7) or given
    period; zeros without one."""
    return [0.0 if v is None else v
            for v in decompose(y, period, "none", test_points, 0.7)["seasonal"]]


def decompose(y: np.ndarray, seasonality: int = -1, trend: str = "avg", test_points: int = 0,
              seasonality_threshold: float = 0.6) -> dict[str, list[float | None]]:
    """Kusto's series_decompose: seasonal (median per phase), trend (of the deseasoned series:
    its average, a least-squares line, or none), baseline = seasonal + trend, residual = y -
    baseline. The last ``test_points`` points take no part in the fitting."""
    n = len(y)
    train = max(0, n - max(0, test_points))
    yt = y[:train]
    period = seasonality
    if period < 0:
        period = detect_period(yt, seasonality_threshold)
    seasonal = np.zeros(n)
    if 0 < period <= max(train, 1):
        for phase in range(period):
            vals = yt[phase::period]
            vals = vals[~np.isnan(vals)]
            seasonal[phase::period] = float(np.median(vals)) if len(vals) else 0.0
    deseason = y - seasonal
    known = ~np.isnan(deseason[:train])
    t = np.arange(n, dtype=np.float64)
    if trend == "avg" and known.any():
        trend_part = np.full(n, float(np.mean(deseason[:train][known])))
    elif trend == "linefit" and known.any():
        slope, intercept = _least_squares(t[:train][known], deseason[:train][known])
        trend_part = intercept + slope * t
    else:
        trend_part = np.zeros(n)
    baseline = seasonal + trend_part
    return {"baseline": _out(baseline), "seasonal": _out(seasonal), "trend": _out(trend_part),
            "residual": _out(y - baseline)}


def decompose_anomalies(y: np.ndarray, threshold: float = 1.5, seasonality: int = -1,
                        trend: str = "avg", test_points: int = 0, method: str = "ctukey",
                        seasonality_threshold: float = 0.6) -> dict[str, list[Any]]:
    """ad_flag (+1, -1, 0), ad_score (series_outliers of the residual) and baseline."""
    parts = decompose(y, seasonality, trend, test_points, seasonality_threshold)
    score = series_outliers_list([math.nan if v is None else v for v in parts["residual"]],
                                 method or "ctukey")
    flag = [1 if s > threshold else -1 if s < -threshold else 0 for s in score]
    return {"ad_flag": flag, "ad_score": score, "baseline": parts["baseline"]}


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line, in closed form (exact on exact data); a
    single point gives a flat line."""
    xm, ym = float(x.mean()), float(y.mean())
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - ym))) / sxx if sxx > 0 else 0.0
    return slope, ym - slope * xm


def fit_line(y: np.ndarray) -> dict[str, Any] | None:
    """Kusto's series_fit_line over x = 1..n: rsquare, slope, variance (of the input),
    rvariance (of the residuals), interception and line_fit."""
    known = ~np.isnan(y)
    if not known.any():
        return None
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    xs, ys = x[known], y[known]
    slope, intercept = _least_squares(xs, ys)
    line = intercept + slope * x
    resid = ys - (intercept + slope * xs)
    variance = float(np.var(ys, ddof=1)) if len(ys) > 1 else 0.0
    rvariance = float(np.var(resid, ddof=1)) if len(ys) > 1 else 0.0
    total = float(np.sum((ys - ys.mean()) ** 2))
    rsquare = 1.0 - float(np.sum(resid ** 2)) / total if total > 0 else 1.0
    return {"rsquare": rsquare, "slope": float(slope), "variance": variance,
            "rvariance": rvariance, "interception": float(intercept), "line_fit": _out(line)}


# ---------------------------------------------------------------- filters


def fir(x: Sequence[float], coefficients: Sequence[float], normalize: bool | None = None,
        center: bool = False) -> list[float] | None:
    """Kusto's series_fir: y[i] = sum_j c[j] * x[i - j] (points before the start count as 0);
    ``normalize`` (default: when no coefficient is negative) divides by the coefficients' sum
    (null when they have a negative one); ``center`` moves the window to be centred on i.

    >>> fir([0, 0, 8, 0, 0, 0], [1, 1, 1, 1])
    [0.0, 0.0, 2.0, 2.0, 2.0, 2.0]
    >>> fir([0, 0, 8, 0, 0, 0], [1, 1, 1, 1], True, True)
    [0.0, 2.0, 2.0, 2.0, 2.0, 0.0]
    """
    c = [float(v) for v in coefficients]
    negative = any(v < 0 for v in c)
    if normalize is None:
        normalize = not negative
    if normalize:
        total = sum(c)
        if negative or total == 0:
            return None
        c = [v / total for v in c]
    shift = (len(c) - 1) // 2 if center else 0
    n = len(x)
    xs = [0.0 if v != v else float(v) for v in x]
    out = []
    for i in range(n):
        acc = 0.0
        for j, cj in enumerate(c):
            k = i + shift - j
            if 0 <= k < n:
                acc += cj * xs[k]
        out.append(acc)
    return out


def iir(x: Sequence[float], numerators: Sequence[float],
        denominators: Sequence[float]) -> list[float] | None:
    """Kusto's series_iir: y[i] = (sum_k b[k] x[i-k] - sum_{k>=1} a[k] y[i-k]) / a[0], starting
    from rest; null when a[0] is 0 or a coefficient list is empty.

    >>> iir([1.0, 2.0, 3.0, 4.0], [1], [1, -1])
    [1.0, 3.0, 6.0, 10.0]
    """
    b = [float(v) for v in numerators]
    a = [float(v) for v in denominators]
    if not a or not b or a[0] == 0:
        return None
    xs = [0.0 if v != v else float(v) for v in x]
    ys: list[float] = []
    for i in range(len(xs)):
        acc = sum(bk * xs[i - k] for k, bk in enumerate(b) if i - k >= 0)
        acc -= sum(a[k] * ys[i - k] for k in range(1, len(a)) if i - k >= 0)
        ys.append(acc / a[0])
    return ys


# ---------------------------------------------------------------- the Arrow UDFs


def _or(value: Any, default: Any) -> Any:
    """A parameter's value, or its default when a column gives null."""
    return default if value is None else value


def _rows(*cols: pa.Array) -> zip[tuple[Any, ...]]:
    return zip(*(c.to_pylist() for c in cols), strict=True)


def _udf_parse_xml(text: pa.Array) -> pa.Array:
    return pa.array([xml_to_json(t) for t in text.to_pylist()], pa.string())


def _udf_parse_user_agent(ua: pa.Array, targets: pa.Array) -> pa.Array:
    return pa.array([None if u is None or t is None else user_agent_json(u, t)
                     for u, t in _rows(ua, targets)], pa.string())


def _udf_series_outliers(series: pa.Array, kind: pa.Array, ignore: pa.Array, p_low: pa.Array,
                         p_high: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, k, ig, lo, hi in _rows(series, kind, ignore, p_low, p_high):
        y = _series_list(s)
        lo, hi = _or(lo, 10.0), _or(hi, 90.0)
        if y is None or not 2.0 <= lo < hi <= 98.0:  # percentiles from a column: null if bad
            out.append(None)
            continue
        out.append(_dumps(series_outliers_list(y, _or(k, "ctukey"), ig, lo, hi)))
    return pa.array(out, pa.string())


def _udf_series_decompose(series: pa.Array, seasonality: pa.Array, trend: pa.Array,
                          test_points: pa.Array, threshold: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, p, t, tp, th in _rows(series, seasonality, trend, test_points, threshold):
        y = _series(s)
        out.append(None if y is None else _dumps(decompose(y, _or(p, -1), t, _or(tp, 0),
                                                           _or(th, 0.6))))
    return pa.array(out, pa.string())


def _udf_series_decompose_anomalies(series: pa.Array, threshold: pa.Array,
                                    seasonality: pa.Array, trend: pa.Array,
                                    test_points: pa.Array, method: pa.Array,
                                    seasonality_threshold: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, th, p, t, tp, m, sth in _rows(series, threshold, seasonality, trend, test_points,
                                         method, seasonality_threshold):
        y = _series(s)
        out.append(None if y is None else _dumps(decompose_anomalies(
            y, _or(th, 1.5), _or(p, -1), t, _or(tp, 0), m, _or(sth, 0.6))))
    return pa.array(out, pa.string())


def _udf_series_decompose_forecast(series: pa.Array, points: pa.Array, seasonality: pa.Array,
                                   trend: pa.Array, threshold: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, n, p, t, th in _rows(series, points, seasonality, trend, threshold):
        y = _series(s)
        out.append(None if y is None else _dumps(decompose(y, _or(p, -1), t, _or(n, 0),
                                                           _or(th, 0.6))["baseline"]))
    return pa.array(out, pa.string())


def _udf_series_seasonal(series: pa.Array, period: pa.Array, test_points: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, p, tp in _rows(series, period, test_points):
        y = _series(s)
        out.append(None if y is None else _dumps(seasonal_component(y, _or(p, -1), _or(tp, 0))))
    return pa.array(out, pa.string())


def _udf_series_fir(series: pa.Array, coefficients: pa.Array, normalize: pa.Array,
                    center: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, c, norm, cen in _rows(series, coefficients, normalize, center):
        y, coef = _series_list(s), _series_list(c)
        result = None if y is None or coef is None or any(v != v for v in coef) \
            else fir(y, coef, norm, bool(cen))
        out.append(None if result is None else _dumps(result))
    return pa.array(out, pa.string())


def _udf_series_iir(series: pa.Array, numerators: pa.Array, denominators: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, b, a in _rows(series, numerators, denominators):
        y, nb, da = _series_list(s), _series_list(b), _series_list(a)
        ok = y is not None and nb is not None and da is not None \
            and not any(v != v for v in nb + da)
        result = iir(y, nb, da) if ok else None  # type: ignore[arg-type]
        out.append(None if result is None else _dumps(result))
    return pa.array(out, pa.string())


def _udf_series_periods_detect(series: pa.Array, min_period: pa.Array, max_period: pa.Array,
                               num_periods: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for s, lo, hi, k in _rows(series, min_period, max_period, num_periods):
        y = _series(s)
        if y is None:
            out.append(None)
            continue
        periods, scores = periods_detect(y, _or(lo, 0.0), _or(hi, 0.0), max(0, _or(k, 1)))
        out.append(_dumps({"periods": periods, "scores": scores}))
    return pa.array(out, pa.string())


def _udf_series_fit_line(series: pa.Array) -> pa.Array:
    out: list[str | None] = []
    for (s,) in _rows(series):
        y = _series(s)
        fit = None if y is None else fit_line(y)
        out.append(None if fit is None else _dumps(fit))
    return pa.array(out, pa.string())


_V, _D, _B = "VARCHAR", "DOUBLE", "BIGINT"
UDFS: dict[str, tuple[Callable[..., pa.Array], tuple[str, ...]]] = {
    "huntsman_parse_xml": (_udf_parse_xml, (_V,)),
    "huntsman_parse_user_agent": (_udf_parse_user_agent, (_V, _V)),
    "huntsman_series_outliers": (_udf_series_outliers, (_V, _V, _D, _D, _D)),
    "huntsman_series_decompose": (_udf_series_decompose, (_V, _B, _V, _B, _D)),
    "huntsman_series_decompose_anomalies": (_udf_series_decompose_anomalies,
                                            (_V, _D, _B, _V, _B, _V, _D)),
    "huntsman_series_decompose_forecast": (_udf_series_decompose_forecast, (_V, _B, _B, _V, _D)),
    "huntsman_series_periods_detect": (_udf_series_periods_detect, (_V, _D, _D, _B)),
    "huntsman_series_seasonal": (_udf_series_seasonal, (_V, _B, _B)),
    "huntsman_series_fir": (_udf_series_fir, (_V, _V, "BOOLEAN", "BOOLEAN")),
    "huntsman_series_iir": (_udf_series_iir, (_V, _V, _V)),
    "huntsman_series_fit_line": (_udf_series_fit_line, (_V,)),
}
"""Every UDF: name → (Arrow function, DuckDB parameter types); each returns VARCHAR (JSON)."""


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    """Register every UDF on ``con``: they live in the database instance's catalog, so every
    connection and cursor of that instance sees them (a second connection to the same file
    finds them there already)."""
    for name, (func, params) in UDFS.items():
        try:
            con.create_function(name, func, [duckdb.sqltype(p) for p in params],
                                duckdb.sqltype("VARCHAR"), type=PythonUDFType.ARROW,
                                null_handling=FunctionNullHandling.SPECIAL, side_effects=False)
        except duckdb.CatalogException as e:
            if "already exists" not in str(e):
                raise
