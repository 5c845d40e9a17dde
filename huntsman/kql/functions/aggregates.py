"""Aggregation functions (used in ``summarize``) and their lowering to DuckDB aggregates.

``arg_max``/``arg_min``/``take_any`` with several or ``*`` arguments return several columns;
the compiler expands them (see ``visit_Summarize``); here they are registered for their
signature and single-column form.
"""

from __future__ import annotations

from sqlglot import exp

from huntsman.errors import UnsupportedError
from huntsman.kql.functions import LowerContext, register
from huntsman.kql.functions.convert import to_string
from huntsman.kql.functions.scalar import dynamic_element
from huntsman.kql.functions.sql import Arg, case, cast, coalesce, fn, lambda_, n, s
from huntsman.kql.types import SQL_TYPES

Args = list[Arg]


def agg(name: str, *args: exp.Expr, distinct: bool = False,
        where: exp.Expr | None = None) -> exp.Expr:
    inner: exp.Expr
    if distinct:
        inner = exp.Anonymous(this=name, expressions=[exp.Distinct(expressions=list(args))])
    else:
        inner = exp.Anonymous(this=name, expressions=list(args))
    if where is not None:
        return exp.Filter(this=inner, expression=exp.Where(this=where))
    return inner


def _not_null(a: Arg) -> exp.Expr:
    return exp.Not(this=exp.Is(this=a.sql, expression=exp.Null()))


@register("count", "any?", "long", kind="aggregate")
def _count(ctx: LowerContext, a: Args) -> exp.Expr:
    if a:
        return agg("count", a[0].sql)
    return exp.Count(this=exp.Star())


@register("countif", "bool", "long", kind="aggregate")
def _countif(ctx: LowerContext, a: Args) -> exp.Expr:
    # DuckDB's count_if is a HUGEINT; Kusto's countif is a long
    return cast(coalesce(agg("count_if", a[0].sql), exp.Literal.number(0)), "BIGINT")


@register("dcount", "any long?", "long", kind="aggregate", aliases=("count_distinct",))
def _dcount(ctx: LowerContext, a: Args) -> exp.Expr:
    """Exact distinct count (Kusto estimates with HyperLogLog; we count exactly)."""
    return agg("count", a[0].sql, distinct=True)


@register("dcountif", "any bool long?", "long", kind="aggregate",
          aliases=("count_distinctif",))
def _dcountif(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("count", a[0].sql, distinct=True, where=a[1].sql)


def _sum_type(a: Args) -> str:
    return "long" if a[0].type in ("int", "long", "bool") else a[0].type


@register("sum", "num", _sum_type, kind="aggregate")
def _sum(ctx: LowerContext, a: Args) -> exp.Expr:
    out = agg("sum", a[0].sql)
    out = cast(out, "BIGINT") if a[0].type in ("int", "long") else out
    return coalesce(out, cast(n(0), SQL_TYPES[_sum_type(a)]))


@register("sumif", "num bool", _sum_type, kind="aggregate")
def _sumif(ctx: LowerContext, a: Args) -> exp.Expr:
    """Sum over the rows where the predicate is true; 0 when there are none (as sum())."""
    out = agg("sum", a[0].sql, where=a[1].sql)
    out = cast(out, "BIGINT") if a[0].type in ("int", "long") else out
    return coalesce(out, cast(n(0), SQL_TYPES[_sum_type(a)]))


def _same(a: Args) -> str:
    return a[0].type


@register("min", "any", _same, kind="aggregate")
def _min(ctx: LowerContext, a: Args) -> exp.Expr:
    out = agg("min", a[0].sql)
    return coalesce(out, s("")) if a[0].type == "string" else out


@register("max", "any", _same, kind="aggregate")
def _max(ctx: LowerContext, a: Args) -> exp.Expr:
    out = agg("max", a[0].sql)
    return coalesce(out, s("")) if a[0].type == "string" else out


@register("minif", "any bool", _same, kind="aggregate")
def _minif(ctx: LowerContext, a: Args) -> exp.Expr:
    out = agg("min", a[0].sql, where=a[1].sql)
    return coalesce(out, s("")) if a[0].type == "string" else out


@register("maxif", "any bool", _same, kind="aggregate")
def _maxif(ctx: LowerContext, a: Args) -> exp.Expr:
    out = agg("max", a[0].sql, where=a[1].sql)
    return coalesce(out, s("")) if a[0].type == "string" else out


@register("avg", "num", "real", kind="aggregate")
def _avg(ctx: LowerContext, a: Args) -> exp.Expr:
    return coalesce(agg("avg", cast(a[0].sql, "DOUBLE")), cast(s("nan"), "DOUBLE"))


@register("avgif", "num bool", "real", kind="aggregate")
def _avgif(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("avg", cast(a[0].sql, "DOUBLE"), where=a[1].sql)


def _json_list(values: exp.Expr) -> exp.Expr:
    return coalesce(cast(fn("to_json", values), "JSON"), cast(s("[]"), "JSON"))


def _element(a: Arg) -> exp.Expr:
    return dynamic_element(a)


def _set_of(a: Arg, where: exp.Expr, distinct: bool) -> exp.Expr:
    """make_set/make_list values; a dynamic array input contributes its elements."""
    if a.type != "dynamic":
        return agg("list", _element(a), distinct=distinct, where=where)
    v = a.sql
    elems = case([(fn("json_type", v).eq(s("ARRAY")), cast(v, "JSON[]"))],
                 exp.Array(expressions=[v]))
    flat = fn("flatten", agg("list", elems, where=where))
    return fn("list_distinct", flat) if distinct else flat


def _collect(a: Args, distinct: bool, conditional: bool) -> exp.Expr:
    """make_set/make_list (and their _if forms): values as a dynamic array, nulls ignored,
    capped by the optional last argument."""
    cond = _not_null(a[0])
    if conditional:
        cond = exp.And(this=cond, expression=a[1].sql)
    values = _set_of(a[0], cond, distinct)
    cap = 2 if conditional else 1
    if len(a) > cap:
        values = fn("list_slice", values, exp.Literal.number(1), a[cap].sql)
    return _json_list(values)


@register("make_set", "any long?", "dynamic", kind="aggregate", aliases=("makeset",))
def _make_set(ctx: LowerContext, a: Args) -> exp.Expr:
    """Distinct values as a dynamic array (nulls ignored)."""
    return _collect(a, distinct=True, conditional=False)


@register("make_set_if", "any bool long?", "dynamic", kind="aggregate")
def _make_set_if(ctx: LowerContext, a: Args) -> exp.Expr:
    return _collect(a, distinct=True, conditional=True)


@register("make_list", "any long?", "dynamic", kind="aggregate", aliases=("makelist",))
def _make_list(ctx: LowerContext, a: Args) -> exp.Expr:
    return _collect(a, distinct=False, conditional=False)


@register("make_list_if", "any bool long?", "dynamic", kind="aggregate")
def _make_list_if(ctx: LowerContext, a: Args) -> exp.Expr:
    return _collect(a, distinct=False, conditional=True)


@register("make_list_with_nulls", "any", "dynamic", kind="aggregate")
def _make_list_with_nulls(ctx: LowerContext, a: Args) -> exp.Expr:
    return _json_list(agg("list", _element(a[0])))


@register("make_bag", "dynamic long?", "dynamic", kind="aggregate")
def _make_bag(ctx: LowerContext, a: Args) -> exp.Expr:
    """Merges the property bags of the group (for a repeated key, one of its values)."""
    bags = agg("list", a[0].sql, where=exp.EQ(this=fn("json_type", a[0].sql),
                                              expression=s("OBJECT")))
    merge = exp.Lambda(this=fn("json_merge_patch", exp.column("x"), exp.column("y")),
                       expressions=[exp.to_identifier("x"), exp.to_identifier("y")])
    return coalesce(cast(fn("list_reduce", bags, merge), "JSON"), cast(s("{}"), "JSON"))


@register("any", "any any*", _same, kind="aggregate", aliases=("take_any",))
def _any(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("any_value", a[0].sql)


def _take_anyif(ctx: LowerContext, a: Args) -> exp.Expr:
    """A value of a row where the predicate is true, preferring non-null (and non-empty) values;
    null ('' for strings) when there is none."""
    x = a[0]
    prefer = _not_null(x)
    if x.type == "string":
        prefer = exp.And(this=prefer, expression=exp.NEQ(this=x.sql, expression=s("")))
    out = coalesce(agg("any_value", x.sql, where=exp.And(this=exp.Paren(this=a[1].sql),
                                                          expression=prefer)),
                   agg("any_value", x.sql, where=a[1].sql))
    return coalesce(out, s("")) if x.type == "string" else out


# two registrations: Kusto names an unnamed take_anyif(x) 'x' but anyif(x) 'anyif_x'
register("take_anyif", "any bool", _same, kind="aggregate")(_take_anyif)
register("anyif", "any bool", _same, kind="aggregate")(_take_anyif)


@register("arg_max", "any any any*", _same, kind="aggregate", aliases=("argmax",))
def _arg_max(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("max", a[0].sql)


@register("arg_min", "any any any*", _same, kind="aggregate", aliases=("argmin",))
def _arg_min(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("min", a[0].sql)


@register("stdev", "num", "real", kind="aggregate")
def _stdev(ctx: LowerContext, a: Args) -> exp.Expr:
    """Sample standard deviation; 0 for an empty group (Kusto's default) or a single value."""
    return coalesce(agg("stddev_samp", cast(a[0].sql, "DOUBLE")), cast(n(0), "DOUBLE"))


@register("variance", "num", "real", kind="aggregate")
def _variance(ctx: LowerContext, a: Args) -> exp.Expr:
    """Sample variance; 0 for an empty group (Kusto's default) or a single value."""
    return coalesce(agg("var_samp", cast(a[0].sql, "DOUBLE")), cast(n(0), "DOUBLE"))


PERCENTILE_TYPES = {"int": "long", "long": "long", "real": "real", "decimal": "real",
                    "datetime": "datetime", "timespan": "timespan"}
"""Kusto's percentile result type per input type (Kusto.Language Aggregates.cs)."""


def _percentile_type(a: Args) -> str:
    return PERCENTILE_TYPES.get(a[0].type, "real")


def _fractions(ctx: LowerContext, fname: str, args: Args) -> list[float]:
    """The constant percentages of a percentile call, as fractions 0..1."""
    out: list[float] = []
    for x in args:
        values = x.const if x.type == "dynamic" and x.is_const else [x.const]
        if not x.is_const or not isinstance(values, list):
            raise ctx.semantic_error(f"{fname}(): the percentiles must be constants")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
                raise ctx.semantic_error(f"{fname}(): a percentile must be a number from 0 to "
                                         f"100, got {v!r}")
            out.append(float(v) / 100.0)
    return out


def _percentile_value(ctx: LowerContext, fname: str, a: Args, q: exp.Expr) -> exp.Expr:
    x = a[0]
    if x.type not in PERCENTILE_TYPES:
        raise ctx.semantic_error(f"{fname}(): expects a number, datetime or timespan, got "
                                 f"{x.type}")
    value = cast(x.sql, "BIGINT") if x.type == "int" else \
        cast(x.sql, "DOUBLE") if x.type == "decimal" else x.sql
    return agg("quantile_disc", value, q)


def percentile_name_fragment(value: object) -> str:
    """The part of a percentile column's name for a percentage, as Kusto.Language builds it (the
    constant's text with every character but letters and digits replaced by '_').

    >>> percentile_name_fragment(95), percentile_name_fragment(99.5), percentile_name_fragment(50.0)
    ('95', '99_5', '50')
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "".join(c if c.isalnum() else "_" for c in str(value))


def percentile_columns(ctx: LowerContext, a: Args) -> list[tuple[str, exp.Expr]]:
    """For ``summarize ... percentiles(x, p1, p2, ...)``: one (name fragment, aggregate) per
    percentage; Kusto names the columns ``percentile_<x>_<fragment>`` and gives them the type
    ``PERCENTILE_TYPES[x.type]``. (The compiler does not call this yet.)"""
    out = []
    for arg in a[1:]:
        for q in _fractions(ctx, "percentiles", [arg]):
            const = arg.const
            out.append((percentile_name_fragment(const),
                        _percentile_value(ctx, "percentiles", a, exp.Literal.number(q))))
    return out


@register("percentile", "any num", _percentile_type, kind="aggregate")
def _percentile(ctx: LowerContext, a: Args) -> exp.Expr:
    """Nearest-rank percentile (the smallest value with P% of the values at or below it), via
    DuckDB's exact quantile_disc; Kusto estimates it with T-Digest, which is exact on small
    inputs and within 1% of the rank otherwise. The result has the value's type (int: long)."""
    (q,) = _fractions(ctx, "percentile", a[1:])
    return _percentile_value(ctx, "percentile", a, exp.Literal.number(q))


@register("percentiles", "any num num*", _percentile_type, kind="aggregate")
def _percentiles(ctx: LowerContext, a: Args) -> exp.Expr:
    """percentiles() with one percentage (one column, as percentile()). Several percentages
    give several columns, which summarize cannot produce yet."""
    qs = _fractions(ctx, "percentiles", a[1:])
    if len(qs) > 1:
        raise UnsupportedError("percentiles() with several percentages (one column each) is not "
                               "supported yet; use percentiles_array() or one percentile() per "
                               "percentage")
    return _percentile_value(ctx, "percentiles", a, exp.Literal.number(qs[0]))


@register("percentiles_array", "any any any*", "dynamic", kind="aggregate")
def _percentiles_array(ctx: LowerContext, a: Args) -> exp.Expr:
    """Nearest-rank percentiles as one dynamic array; the percentages are constants, given one
    by one or as a dynamic array. Datetimes and timespans appear in their text forms."""
    qs = _fractions(ctx, "percentiles_array", a[1:])
    values = _percentile_value(ctx, "percentiles_array", a,
                               exp.Array(expressions=[exp.Literal.number(q) for q in qs]))
    if a[0].type in ("datetime", "timespan"):
        values = fn("list_transform", values, lambda_(["__v"], to_string(
            Arg(exp.column("__v"), a[0].type))))
    return cast(fn("to_json", values), "JSON")
