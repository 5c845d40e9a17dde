"""Series functions: element-wise arithmetic, gap filling and statistics over dynamic arrays
(typically the output of ``make-series``).

A series is a JSON array; an element that is not a number (a string, a bag, null) counts as
missing. ``series_add``/``subtract``/``multiply`` keep whole numbers whole when both elements
are whole, ``series_divide`` always returns reals (``x/0`` is ``+inf``, ``-inf`` or ``nan``, as
double division); arrays of different lengths give null where an element is missing; a number
may stand for a series (it is paired with every element).

``series_fill_forward``/``backward``/``const`` replace the missing elements (null, or the
``missing_value_placeholder``) and keep the other elements' types. ``series_stats_dynamic``
returns ``{min, min_idx, max, max_idx, avg, stdev, variance, sum, len}`` (sample variance and
deviation); with non-finite elements (null, NaN, inf) the statistics are null unless
``ignore_nonfinite`` is true. ``series_stats`` returns the same statistics as seven columns
(``series_stats_<arg>_min`` ...), which the compiler expands (see :data:`MULTI_COLUMN`).
"""

from __future__ import annotations

from sqlglot import exp

from huntsman.kql.functions import LowerContext, register
from huntsman.kql.functions.convert import json_value
from huntsman.kql.functions.sql import Arg, and_, case, cast, coalesce, fn, lambda_, n, s

Args = list[Arg]

NUMERIC_JSON = ("BIGINT", "UBIGINT", "HUGEINT", "DOUBLE")
INTEGER_JSON = ("BIGINT", "UBIGINT", "HUGEINT")

STATS = (("min", "real"), ("min_idx", "long"), ("max", "real"), ("max_idx", "long"),
         ("avg", "real"), ("stdev", "real"), ("variance", "real"))

MULTI_COLUMN: dict[str, tuple[tuple[str, str], ...]] = {"series_stats": STATS}
"""Functions that return several columns: name → (field, Kusto type) in output order. The
function's SQL is a JSON object with those fields; ``project``/``extend`` expand it into the
columns ``<function>_<argument name>_<field>`` (or the names of a tuple assignment)."""


def _elements(a: Arg) -> exp.Expr:
    """The series as a JSON[] list (NULL when it is not an array)."""
    return cast(json_value(a), "JSON[]", safe=True)


def _in(e: exp.Expr, values: tuple[str, ...]) -> exp.Expr:
    return exp.In(this=e, expressions=[s(v) for v in values])


def _is_number(x: exp.Expr) -> exp.Expr:
    return _in(fn("json_type", x), NUMERIC_JSON)


def _is_whole(x: exp.Expr) -> exp.Expr:
    return _in(fn("json_type", x), INTEGER_JSON)


def _x(name: str = "x") -> exp.Expr:
    """A lambda parameter or helper column: ``__``-names never clash with user columns."""
    return exp.column(f"__{name}")


# ---------------------------------------------------------------- element-wise arithmetic


class _Operand:
    """One side of an element-wise operation: a series (element at index i) or a number.
    A series is bound once in a subquery as the list column ``__l<k>``."""

    def __init__(self, ctx: LowerContext, a: Arg, fname: str, k: int):
        self.series = a.type == "dynamic"
        if not self.series and a.type not in ("long", "int", "real", "decimal"):
            raise ctx.semantic_error(f"{fname}(): expects numeric arrays or numbers, not "
                                     f"{a.type}")
        self.a = a
        self.name = f"__l{k}"

    def bound(self) -> exp.Expr:
        return _elements(self.a)

    def element(self, i: exp.Expr) -> exp.Expr:
        """The element at 0-based index ``i`` as JSON (a number as JSON)."""
        if self.series:
            return fn("list_extract", exp.column(self.name), exp.Add(this=i, expression=n(1)))
        return fn("to_json", self.a.sql)

    def length(self) -> exp.Expr | None:
        return fn("len", exp.column(self.name)) if self.series else None


def _arith(ctx: LowerContext, a: Args, op: str, fname: str) -> exp.Expr:
    left, right = _Operand(ctx, a[0], fname, 0), _Operand(ctx, a[1], fname, 1)
    lengths = [x for x in (left.length(), right.length()) if x is not None]
    if not lengths:
        raise ctx.semantic_error(f"{fname}(): expects at least one dynamic array")
    i = _x("i")
    x, y = left.element(i), right.element(i.copy())
    xd, yd = cast(x, "DOUBLE"), cast(y.copy(), "DOUBLE")
    nodes = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul}
    if op == "/":
        zero = exp.EQ(this=yd.copy(), expression=n(0.0))
        by_zero = case([(exp.GT(this=xd.copy(), expression=n(0)), cast(s("inf"), "DOUBLE")),
                        (exp.LT(this=xd.copy(), expression=n(0)), cast(s("-inf"), "DOUBLE"))],
                       cast(s("nan"), "DOUBLE"))
        value = case([(zero, by_zero)], exp.Div(this=xd, expression=yd))
        body = case([(and_(_is_number(x.copy()), _is_number(y.copy())), fn("to_json", value))],
                    None)
    else:
        node = nodes[op]
        whole = node(this=cast(x.copy(), "BIGINT"), expression=cast(y.copy(), "BIGINT"))
        real = node(this=xd, expression=yd)
        body = case([(and_(_is_whole(x.copy()), _is_whole(y.copy())), fn("to_json", whole)),
                     (and_(_is_number(x.copy()), _is_number(y.copy())), fn("to_json", real))],
                    None)
    count = lengths[0] if len(lengths) == 1 else fn("greatest", *lengths)
    out = fn("list_transform", fn("range", cast(count, "BIGINT")), lambda_(["__i"], body))
    binds = [exp.alias_(op_.bound(), f"__l{k}") for k, op_ in enumerate((left, right))
             if op_.series]
    sub = exp.select(cast(fn("to_json", out), "JSON")).from_(
        exp.select(*binds).subquery("__b"), copy=False)
    return exp.Subquery(this=sub)


@register("series_add", "any any", "dynamic")
def _series_add(ctx: LowerContext, a: Args) -> exp.Expr:
    """Element-wise sum of two numeric series (or a series and a number)."""
    return _arith(ctx, a, "+", "series_add")


@register("series_subtract", "any any", "dynamic")
def _series_subtract(ctx: LowerContext, a: Args) -> exp.Expr:
    """Element-wise difference of two numeric series (or a series and a number)."""
    return _arith(ctx, a, "-", "series_subtract")


@register("series_multiply", "any any", "dynamic")
def _series_multiply(ctx: LowerContext, a: Args) -> exp.Expr:
    """Element-wise product of two numeric series (or a series and a number)."""
    return _arith(ctx, a, "*", "series_multiply")


@register("series_divide", "any any", "dynamic")
def _series_divide(ctx: LowerContext, a: Args) -> exp.Expr:
    """Element-wise quotient (always real) of two numeric series (or a series and a number)."""
    return _arith(ctx, a, "/", "series_divide")


# ---------------------------------------------------------------- gap filling


def _placeholder(ctx: LowerContext, a: Args, i: int, fname: str) -> exp.Expr | None:
    """The missing-value placeholder as DOUBLE, or None for the default (null)."""
    if len(a) <= i:
        return None
    p = a[i]
    if p.is_const and p.const is None:
        return None
    if p.type not in ("long", "int", "real", "decimal"):
        raise ctx.semantic_error(f"{fname}(): the missing value placeholder must be a number")
    return cast(p.sql, "DOUBLE")


def _missing(x: exp.Expr, placeholder: exp.Expr | None) -> exp.Expr:
    null = exp.Is(this=x, expression=exp.Null())
    if placeholder is None:
        return exp.Or(this=null, expression=exp.Not(this=exp.Paren(this=_is_number(x.copy()))))
    return coalesce(exp.EQ(this=cast(x.copy(), "DOUBLE", safe=True),
                           expression=placeholder.copy()), exp.true())


def _fill(a: Arg, placeholder: exp.Expr | None, forward: bool) -> exp.Expr:
    """Fill each missing element with the nearest present one before (after) it."""
    x, i = _x("x"), _x("i")
    present = case([(exp.Not(this=exp.Paren(this=_missing(x.copy(), placeholder))), x.copy())],
                   None)
    if forward:
        spec = exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING",
                              end="CURRENT ROW")
        func: exp.Expr = exp.IgnoreNulls(this=exp.LastValue(this=present))
    else:
        spec = exp.WindowSpec(kind="ROWS", start="CURRENT ROW", end="UNBOUNDED",
                              end_side="FOLLOWING")
        func = exp.IgnoreNulls(this=exp.FirstValue(this=present))
    window = exp.Window(this=func, order=exp.Order(expressions=[exp.Ordered(this=i.copy())]),
                        spec=spec)
    value = case([(_missing(x.copy(), placeholder), coalesce(window, x.copy()))], x.copy())
    lst = _elements(a)
    rows = exp.select(exp.alias_(fn("unnest", lst), "__x"),
                      exp.alias_(fn("unnest", fn("range", n(1), exp.Add(
                          this=fn("len", lst.copy()), expression=n(1)))), "__i"))
    inner = exp.select(i.copy(), exp.alias_(value, "__v")).from_(rows.subquery("__e"),
                                                                  copy=False)
    agg = exp.ArrayAgg(this=exp.Order(this=_x("v"), expressions=[exp.Ordered(this=i.copy())]))
    sub = exp.select(fn("to_json", agg)).from_(inner.subquery("__f"), copy=False)
    empty = exp.EQ(this=fn("len", lst.copy()), expression=n(0))
    return cast(case([(empty, cast(s("[]"), "JSON"))], exp.Subquery(this=sub)), "JSON")


def _check_series(ctx: LowerContext, a: Arg, fname: str) -> None:
    if a.type != "dynamic":
        raise ctx.semantic_error(f"{fname}(): expects a dynamic array, not {a.type}")


@register("series_fill_forward", "any any?", "dynamic")
def _series_fill_forward(ctx: LowerContext, a: Args) -> exp.Expr:
    """Missing elements take the nearest present value on their left (leading ones stay)."""
    _check_series(ctx, a[0], "series_fill_forward")
    return _fill(a[0], _placeholder(ctx, a, 1, "series_fill_forward"), True)


@register("series_fill_backward", "any any?", "dynamic")
def _series_fill_backward(ctx: LowerContext, a: Args) -> exp.Expr:
    """Missing elements take the nearest present value on their right (trailing ones stay)."""
    _check_series(ctx, a[0], "series_fill_backward")
    return _fill(a[0], _placeholder(ctx, a, 1, "series_fill_backward"), False)


@register("series_fill_const", "any any any?", "dynamic")
def _series_fill_const(ctx: LowerContext, a: Args) -> exp.Expr:
    """Missing elements are replaced with the constant."""
    _check_series(ctx, a[0], "series_fill_const")
    if a[1].type not in ("long", "int", "real", "decimal"):
        raise ctx.semantic_error("series_fill_const(): the constant must be a number")
    placeholder = _placeholder(ctx, a, 2, "series_fill_const")
    x = _x("x")
    value = case([(_missing(x.copy(), placeholder), fn("to_json", a[1].sql))], x.copy())
    out = fn("list_transform", _elements(a[0]), lambda_(["__x"], value))
    return cast(fn("to_json", out), "JSON")


# ---------------------------------------------------------------- statistics


def stats_object(ctx: LowerContext, a: Args, fname: str, extended: bool) -> exp.Expr:
    """The statistics of a numeric series as a JSON object (``sum`` and ``len`` when
    ``extended``). A scalar subquery binds the numeric list once."""
    _check_series(ctx, a[0], fname)
    ignore = False
    if len(a) > 1:
        if a[1].type != "bool" or not a[1].is_const:
            raise ctx.semantic_error(f"{fname}(): ignore_nonfinite must be a constant bool")
        ignore = bool(a[1].const)
    x, v = _x("x"), _x("v")
    nums_col, base_col, len_col = _x("nums"), _x("base"), _x("len")
    lst = _elements(a[0])
    nums = fn("list_transform", lst, lambda_(["__x"], case([(_is_number(x), cast(
        x.copy(), "DOUBLE"))], None)))
    finite = fn("list_filter", nums_col.copy(), lambda_(["__v"], and_(
        exp.Not(this=exp.Is(this=v, expression=exp.Null())), fn("isfinite", v.copy()))))
    if ignore:
        base = finite
    else:
        complete = exp.EQ(this=fn("len", finite), expression=fn("len", nums_col.copy()))
        base = case([(complete, nums_col.copy())], None)
    bind1 = exp.select(exp.alias_(nums, "__nums"), exp.alias_(fn("len", lst.copy()), "__len"))
    bind2 = exp.select(nums_col.copy(), len_col.copy(), exp.alias_(base, "__base")).from_(
        bind1.subquery("__s1"), copy=False)

    def agg(name: str) -> exp.Expr:
        return fn("list_aggregate", base_col.copy(), s(name))

    def position(value: exp.Expr) -> exp.Expr:
        pos = exp.Sub(this=cast(fn("list_position", nums_col.copy(), value), "BIGINT"),
                      expression=n(1))
        return case([(exp.Is(this=value.copy(), expression=exp.Null()),
                      cast(exp.Null(), "BIGINT"))], pos)

    parts: list[exp.Expr] = [
        s("min"), agg("min"), s("min_idx"), position(agg("min")),
        s("max"), agg("max"), s("max_idx"), position(agg("max")),
        s("avg"), agg("avg"), s("stdev"), agg("stddev_samp"),
        s("variance"), agg("var_samp")]
    if extended:
        parts += [s("sum"), agg("sum"), s("len"), cast(len_col.copy(), "BIGINT")]
    obj = case([(exp.Is(this=len_col.copy(), expression=exp.Null()), cast(exp.Null(), "JSON"))],
               fn("json_object", *parts))
    return exp.Subquery(this=exp.select(obj).from_(bind2.subquery("__s2"), copy=False))


@register("series_stats_dynamic", "any bool?", "dynamic")
def _series_stats_dynamic(ctx: LowerContext, a: Args) -> exp.Expr:
    """{min, min_idx, max, max_idx, avg, stdev, variance, sum, len} of a numeric series."""
    return stats_object(ctx, a, "series_stats_dynamic", True)


@register("series_stats", "any bool?", "dynamic")
def _series_stats(ctx: LowerContext, a: Args) -> exp.Expr:
    """The statistics as seven columns (the compiler expands this object, see MULTI_COLUMN)."""
    return stats_object(ctx, a, "series_stats", False)


# ---------------------------------------------------------------- outliers, decomposition
# Computed by Python functions registered on the DuckDB connections (backends/duckdb/udfs.py):
# percentiles, medians per phase and least-squares fits over each array.

DECOMPOSE = (("baseline", "dynamic"), ("seasonal", "dynamic"), ("trend", "dynamic"),
             ("residual", "dynamic"))
DECOMPOSE_ANOMALIES = (("ad_flag", "dynamic"), ("ad_score", "dynamic"), ("baseline", "dynamic"))
PERIODS = (("periods", "dynamic"), ("scores", "dynamic"))
FIT_LINE = (("rsquare", "real"), ("slope", "real"), ("variance", "real"), ("rvariance", "real"),
            ("interception", "real"), ("line_fit", "dynamic"))
MULTI_COLUMN.update({"series_decompose": DECOMPOSE,
                     "series_decompose_anomalies": DECOMPOSE_ANOMALIES,
                     "series_periods_detect": PERIODS, "series_fit_line": FIT_LINE})

_NUMBERS = ("long", "int", "real", "decimal")
TRENDS = ("avg", "linefit", "none")
OUTLIER_KINDS = ("tukey", "ctukey")


def _series_text(ctx: LowerContext, a: Arg, fname: str) -> exp.Expr:
    """The series argument as JSON text for a UDF."""
    _check_series(ctx, a, fname)
    return cast(json_value(a), "VARCHAR")


def _given(a: Args, i: int) -> bool:
    return len(a) > i and not (a[i].is_const and a[i].const is None)


def _number(ctx: LowerContext, a: Args, i: int, fname: str, pname: str, sql_type: str,
            default: int | float | None) -> exp.Expr:
    """A numeric parameter (its default when omitted or null) as ``sql_type``."""
    if not _given(a, i):
        return cast(exp.Null(), sql_type) if default is None else cast(n(default), sql_type)
    if a[i].type not in _NUMBERS:
        raise ctx.semantic_error(f"{fname}(): {pname} must be a number, not {a[i].type}")
    return cast(a[i].sql, sql_type)


def _choice(ctx: LowerContext, a: Args, i: int, fname: str, pname: str,
            choices: tuple[str, ...], default: str) -> str:
    """A constant string parameter that must be one of ``choices``."""
    if not _given(a, i):
        return default
    if not a[i].is_const or not isinstance(a[i].const, str):
        raise ctx.semantic_error(f"{fname}(): {pname} must be a constant string")
    value = a[i].const.strip().lower()
    if value not in choices:
        raise ctx.semantic_error(f"{fname}(): unknown {pname} '{a[i].const}' (expected one of "
                                 + ", ".join(f"'{c}'" for c in choices) + ")")
    return value


def _udf(name: str, *args: exp.Expr) -> exp.Expr:
    return cast(fn(f"huntsman_{name}", *args), "JSON")


@register("series_outliers", "any any? any? any? any?", "dynamic")
def _series_outliers(ctx: LowerContext, a: Args) -> exp.Expr:
    """Outlier scores with Tukey's test ("tukey": 25th/75th percentiles; "ctukey", the
    default: 10th/90th or the given ones, scaled to Tukey's k): above 1.5 a rise, below -1.5 a
    decline; missing and ignored elements score 0."""
    f = "series_outliers"
    kind = _choice(ctx, a, 1, f, "kind", OUTLIER_KINDS, "ctukey")
    bounds = []
    for i, pname, default in ((3, "min_percentile", 10.0), (4, "max_percentile", 90.0)):
        if _given(a, i) and a[i].is_const and isinstance(a[i].const, (int, float)):
            if not 2.0 <= float(a[i].const) <= 98.0:
                raise ctx.semantic_error(f"{f}(): {pname} must be in the range [2.0, 98.0], "
                                         f"not {a[i].const}")
            bounds.append(float(a[i].const))
        elif not _given(a, i):
            bounds.append(default)
    if len(bounds) == 2 and bounds[0] >= bounds[1]:
        raise ctx.semantic_error(f"{f}(): min_percentile must be less than max_percentile")
    return _udf(f, _series_text(ctx, a[0], f), s(kind),
                _number(ctx, a, 2, f, "ignore_val", "DOUBLE", None),
                _number(ctx, a, 3, f, "min_percentile", "DOUBLE", 10.0),
                _number(ctx, a, 4, f, "max_percentile", "DOUBLE", 90.0))


def _seasonality(ctx: LowerContext, a: Args, i: int, fname: str) -> exp.Expr:
    if _given(a, i) and a[i].is_const and isinstance(a[i].const, int) and a[i].const < -1:
        raise ctx.semantic_error(f"{fname}(): seasonality must be -1 (detect), 0 (none) or a "
                                 f"period in bins, not {a[i].const}")
    return _number(ctx, a, i, fname, "seasonality", "BIGINT", -1)


@register("series_decompose", "any any? any? any? any?", "dynamic")
def _series_decompose(ctx: LowerContext, a: Args) -> exp.Expr:
    """baseline, seasonal, trend and residual components (four columns, see MULTI_COLUMN)."""
    f = "series_decompose"
    return _udf(f, _series_text(ctx, a[0], f), _seasonality(ctx, a, 1, f),
                s(_choice(ctx, a, 2, f, "trend", TRENDS, "avg")),
                _number(ctx, a, 3, f, "test_points", "BIGINT", 0),
                _number(ctx, a, 4, f, "seasonality_threshold", "DOUBLE", 0.6))


@register("series_decompose_anomalies", "any any? any? any? any? any? any?", "dynamic")
def _series_decompose_anomalies(ctx: LowerContext, a: Args) -> exp.Expr:
    """ad_flag (+1/-1/0), ad_score and baseline: series_outliers of the decomposition's
    residual, flagged beyond the threshold (three columns, see MULTI_COLUMN)."""
    f = "series_decompose_anomalies"
    return _udf(f, _series_text(ctx, a[0], f),
                _number(ctx, a, 1, f, "threshold", "DOUBLE", 1.5),
                _seasonality(ctx, a, 2, f), s(_choice(ctx, a, 3, f, "trend", TRENDS, "avg")),
                _number(ctx, a, 4, f, "test_points", "BIGINT", 0),
                s(_choice(ctx, a, 5, f, "AD_method", OUTLIER_KINDS, "ctukey")),
                _number(ctx, a, 6, f, "seasonality_threshold", "DOUBLE", 0.6))


@register("series_decompose_forecast", "any any any? any? any?", "dynamic")
def _series_decompose_forecast(ctx: LowerContext, a: Args) -> exp.Expr:
    """The decomposition's baseline learnt without the last ``points`` points: the forecast."""
    f = "series_decompose_forecast"
    return _udf(f, _series_text(ctx, a[0], f), _number(ctx, a, 1, f, "points", "BIGINT", 0),
                _seasonality(ctx, a, 2, f), s(_choice(ctx, a, 3, f, "trend", TRENDS, "avg")),
                _number(ctx, a, 4, f, "seasonality_threshold", "DOUBLE", 0.6))


@register("series_periods_detect", "any num num long", "dynamic")
def _series_periods_detect(ctx: LowerContext, a: Args) -> exp.Expr:
    """periods and scores (two columns): the strongest periods between min_period and
    max_period (at least 4 bins, at most half the series)."""
    f = "series_periods_detect"
    return _udf(f, _series_text(ctx, a[0], f),
                _number(ctx, a, 1, f, "min_period", "DOUBLE", 0.0),
                _number(ctx, a, 2, f, "max_period", "DOUBLE", 0.0),
                _number(ctx, a, 3, f, "num_periods", "BIGINT", 1))


@register("series_fit_line", "any", "dynamic")
def _series_fit_line(ctx: LowerContext, a: Args) -> exp.Expr:
    """Linear regression over x = 1..n: rsquare, slope, variance, rvariance, interception,
    line_fit (six columns, see MULTI_COLUMN)."""
    return _udf("series_fit_line", _series_text(ctx, a[0], "series_fit_line"))


@register("series_fit_line_dynamic", "any", "dynamic")
def _series_fit_line_dynamic(ctx: LowerContext, a: Args) -> exp.Expr:
    """series_fit_line's results as one bag."""
    return _udf("series_fit_line", _series_text(ctx, a[0], "series_fit_line_dynamic"))


@register("series_seasonal", "any any? any?", "dynamic")
def _series_seasonal(ctx: LowerContext, a: Args) -> exp.Expr:
    """The seasonal component: the median of the points in each phase of the detected (-1, the
    default) or given period; zeros when there is none."""
    f = "series_seasonal"
    return _udf(f, _series_text(ctx, a[0], f), _seasonality(ctx, a, 1, f),
                _number(ctx, a, 2, f, "test_points", "BIGINT", 0))


def _bool(ctx: LowerContext, a: Args, i: int, fname: str, pname: str) -> exp.Expr:
    """An optional bool parameter (NULL when omitted: the UDF applies its default)."""
    if not _given(a, i):
        return cast(exp.Null(), "BOOLEAN")
    if a[i].type != "bool":
        raise ctx.semantic_error(f"{fname}(): {pname} must be a bool, not {a[i].type}")
    return a[i].sql


@register("series_fir", "any any any? any?", "dynamic")
def _series_fir(ctx: LowerContext, a: Args) -> exp.Expr:
    """A finite impulse response filter: the sum of the coefficients times the current and
    previous points (centred with ``center``), normalised by default unless a coefficient is
    negative."""
    f = "series_fir"
    _check_series(ctx, a[1], f)
    return _udf(f, _series_text(ctx, a[0], f), cast(json_value(a[1]), "VARCHAR"),
                _bool(ctx, a, 2, f, "normalize"), _bool(ctx, a, 3, f, "center"))


@register("series_iir", "any any any", "dynamic")
def _series_iir(ctx: LowerContext, a: Args) -> exp.Expr:
    """An infinite impulse response filter with the given numerator and denominator
    coefficients (a[0] must not be 0)."""
    f = "series_iir"
    for arg in a[1:3]:
        _check_series(ctx, arg, f)
    return _udf(f, _series_text(ctx, a[0], f), cast(json_value(a[1]), "VARCHAR"),
                cast(json_value(a[2]), "VARCHAR"))
