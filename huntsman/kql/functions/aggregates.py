"""Aggregation functions (used in ``summarize``) and their lowering to DuckDB aggregates.

``arg_max``/``arg_min``/``take_any`` with several or ``*`` arguments return several columns;
the compiler expands them (see ``visit_Summarize``); here they are registered for their
signature and single-column form.
"""

from __future__ import annotations

from sqlglot import exp

from huntsman.kql.functions import LowerContext, register
from huntsman.kql.functions.scalar import dynamic_element
from huntsman.kql.functions.sql import Arg, case, cast, coalesce, fn, n, s
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
    return coalesce(agg("count_if", a[0].sql), cast(exp.Literal.number(0), "BIGINT"))


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
    out = agg("sum", a[0].sql, where=a[1].sql)
    return cast(out, "BIGINT") if a[0].type in ("int", "long") else out


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


@register("make_set", "any long?", "dynamic", kind="aggregate", aliases=("makeset",))
def _make_set(ctx: LowerContext, a: Args) -> exp.Expr:
    """Distinct values as a dynamic array (nulls ignored)."""
    values = _set_of(a[0], _not_null(a[0]), True)
    if len(a) > 1:
        values = fn("list_slice", values, exp.Literal.number(1), a[1].sql)
    return _json_list(values)


@register("make_set_if", "any bool long?", "dynamic", kind="aggregate")
def _make_set_if(ctx: LowerContext, a: Args) -> exp.Expr:
    cond = exp.And(this=_not_null(a[0]), expression=a[1].sql)
    values = _set_of(a[0], cond, True)
    if len(a) > 2:
        values = fn("list_slice", values, exp.Literal.number(1), a[2].sql)
    return _json_list(values)


@register("make_list", "any long?", "dynamic", kind="aggregate", aliases=("makelist",))
def _make_list(ctx: LowerContext, a: Args) -> exp.Expr:
    values = _set_of(a[0], _not_null(a[0]), False)
    if len(a) > 1:
        values = fn("list_slice", values, exp.Literal.number(1), a[1].sql)
    return _json_list(values)


@register("make_list_if", "any bool long?", "dynamic", kind="aggregate")
def _make_list_if(ctx: LowerContext, a: Args) -> exp.Expr:
    cond = exp.And(this=_not_null(a[0]), expression=a[1].sql)
    values = _set_of(a[0], cond, False)
    if len(a) > 2:
        values = fn("list_slice", values, exp.Literal.number(1), a[2].sql)
    return _json_list(values)


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


@register("anyif", "any bool", _same, kind="aggregate", aliases=("take_anyif",))
def _anyif(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("any_value", a[0].sql, where=a[1].sql)


@register("arg_max", "any any any*", _same, kind="aggregate", aliases=("argmax",))
def _arg_max(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("max", a[0].sql)


@register("arg_min", "any any any*", _same, kind="aggregate", aliases=("argmin",))
def _arg_min(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("min", a[0].sql)


@register("stdev", "num", "real", kind="aggregate")
def _stdev(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("stddev_samp", cast(a[0].sql, "DOUBLE"))


@register("variance", "num", "real", kind="aggregate")
def _variance(ctx: LowerContext, a: Args) -> exp.Expr:
    return agg("var_samp", cast(a[0].sql, "DOUBLE"))


@register("percentile", "num num", "real", kind="aggregate")
def _percentile(ctx: LowerContext, a: Args) -> exp.Expr:
    """Nearest-rank percentile (as Kusto), via DuckDB's quantile_disc."""
    if not a[1].is_const:
        raise ctx.semantic_error("percentile(): the percentage must be a constant")
    return agg("quantile_disc", a[0].sql, exp.Literal.number(float(a[1].const) / 100.0))
