"""``make-series``: aggregates per (by-group, axis bin) laid out as dynamic arrays.

The axis is binned with ``bin_at(Axis, step, start)``; ``from``/``to`` bound it (``to`` is
exclusive). Without ``from`` the series start at the first bin that has data (the binning is then
``bin(Axis, step)``), without ``to`` they end with the last bin that has data; the range is the
same for every series. The legacy form ``on Axis in range(start, stop, step)`` bins with
``bin()`` and includes ``stop``. Absent bins hold the ``default=`` value (0 unless given).

SQL shape (one CTE each): the axis parameters (start, number of bins), the input rows inside the
range with their bin index, the aggregates per group and bin, the distinct groups, the dense grid
group × bin, and the arrays, built with ``array_agg(... ORDER BY bin)`` over the grid left-joined
to the aggregates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, Rel, unique_name
from huntsman.compiler.summarize import _agg_name, _contains_aggregate
from huntsman.kql import ast as A
from huntsman.kql.functions import FUNCTIONS
from huntsman.kql.functions.convert import convert
from huntsman.kql.functions.scalar import dynamic_element
from huntsman.kql.functions.sql import Arg, alias, and_, case, cast, cast_k, col, fn, literal, n
from huntsman.kql.types import INTEGRAL, NUMERIC

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

AXIS_TYPES = {"datetime", "timespan", "long", "int", "real", "decimal"}


def position(a: Arg) -> exp.Expr:
    """An axis value as a number: microseconds since the epoch for a datetime."""
    if a.type == "datetime":
        return fn("epoch_us", a.sql)
    if a.type == "decimal":
        return cast(a.sql, "DOUBLE")
    return a.sql


def from_position(v: exp.Expr, axis_type: str) -> exp.Expr:
    if axis_type == "datetime":
        return fn("make_timestamp", cast(v, "BIGINT"))
    if axis_type in ("timespan", "long"):
        return cast(v, "BIGINT")
    if axis_type == "int":
        return cast(v, "INTEGER")
    return cast(v, "DOUBLE")


def step_value(c: Compiler, step: Arg, axis_type: str, node: A.Operator) -> exp.Expr:
    if axis_type in ("datetime", "timespan"):
        if step.type != "timespan":
            raise c.semantic_error(f"make-series: the step of a {axis_type} axis must be a "
                                   f"timespan, not {step.type}", node.pos)
        return step.sql
    if step.type not in NUMERIC:
        raise c.semantic_error(f"make-series: the step of a numeric axis must be a number, "
                               f"not {step.type}", node.pos)
    return step.sql


def _bound(c: Compiler, sc: ScalarCompiler, e: A.Expr, axis_type: str, what: str,
           node: A.Operator) -> Arg:
    a = sc.compile(e)
    if a.type == axis_type:
        return a
    if a.type in NUMERIC and axis_type in NUMERIC:
        return Arg(cast_k(a.sql, axis_type), axis_type, a.const)
    if a.type == "dynamic" or a.type == "string":
        try:
            return Arg(convert(a, axis_type), axis_type)
        except ValueError:
            pass
    raise c.semantic_error(f"make-series: '{what}' must be of the axis type {axis_type}, "
                           f"not {a.type}", node.pos)


def _floor_div(num: exp.Expr, step: exp.Expr, integral: bool) -> exp.Expr:
    if integral:
        return exp.IntDiv(this=exp.Paren(this=num), expression=exp.Paren(this=step))
    return cast(fn("floor", exp.Div(this=cast(exp.Paren(this=num), "DOUBLE"),
                                    expression=exp.Paren(this=step))), "BIGINT")


def compile_make_series(c: Compiler, rel: Rel, op: A.MakeSeries, env: Env) -> Rel:
    kind = str(op.params.get("kind", ""))
    if kind not in ("", "nonempty"):
        raise c.semantic_error(f"make-series: unknown kind '{kind}' (only kind=nonempty)",
                               op.pos)
    row = ScalarCompiler(c, rel, env)
    const = ScalarCompiler(c, None, env)
    axis = row.compile(op.axis.expr)
    atype = axis.type
    if atype not in AXIS_TYPES:
        raise c.semantic_error(f"make-series: the axis must be a datetime, timespan or number, "
                               f"not {atype}", op.pos)
    step = const.compile(op.step)
    if step.is_const and isinstance(step.const, (int, float)) and step.const <= 0:
        raise c.semantic_error("make-series: the step must be greater than zero", op.pos)
    st = step_value(c, step, atype, op)
    integral = atype in ("datetime", "timespan", "long", "int") and \
        (step.type == "timespan" or step.type in INTEGRAL)
    step_num: exp.Expr = st if integral or step.type == "real" else cast(st, "DOUBLE")

    taken = set(rel.physical)
    p_start = c.namer.physical("__ms_start", taken)
    p_count = c.namer.physical("__ms_count", taken)
    x = position(axis)

    def bin_of(v: exp.Expr) -> exp.Expr:
        """bin(v, step) on positions (epoch-aligned for datetimes)."""
        return exp.Mul(this=exp.Paren(this=_floor_div(v, step_num, integral)),
                       expression=exp.Paren(this=step_num.copy()))

    start_pos: exp.Expr | None = None
    end_pos: exp.Expr | None = None
    if op.start is not None:
        start_pos = position(_bound(c, const, op.start, atype, "from", op))
        if op.in_range:
            start_pos = bin_of(start_pos)
    if op.end is not None:
        end_pos = position(_bound(c, const, op.end, atype, "to", op))
        if op.in_range:
            end_pos = exp.Add(this=bin_of(end_pos), expression=step_num.copy())

    # ---- the axis parameters: start position and number of bins
    in_range: list[exp.Expr] = [exp.Not(this=exp.Is(this=x.copy(), expression=exp.Null()))]
    if start_pos is not None:
        in_range.append(exp.GTE(this=x.copy(), expression=start_pos.copy()))
    if end_pos is not None:
        in_range.append(exp.LT(this=x.copy(), expression=end_pos.copy()))
    data_bound = start_pos is None or end_pos is None
    s_expr = start_pos if start_pos is not None else bin_of(fn("min", x.copy()))
    if end_pos is not None:
        span = exp.Sub(this=exp.Paren(this=end_pos.copy()), expression=exp.Paren(this=s_expr.copy()))
        count: exp.Expr = cast(fn("ceil", exp.Div(this=cast(exp.Paren(this=span), "DOUBLE"),
                                                  expression=exp.Paren(this=step_num.copy()))),
                               "BIGINT")
        count = fn("greatest", count, n(0))
    else:
        span = exp.Sub(this=fn("max", x.copy()), expression=exp.Paren(this=s_expr.copy()))
        count = exp.Add(this=_floor_div(span, step_num.copy(), integral), expression=n(1))
    params = exp.select(alias(s_expr, p_start), alias(count, p_count))
    if data_bound:
        params = params.from_(c.src(rel), copy=False).where(and_(*in_range), copy=False)
    p_rel = c.add(params, [], physical={p_start.lower(), p_count.lower()})
    p_src = c.src(p_rel)

    # ---- input rows inside the range, with their bin index
    idx_phys = c.namer.physical("__ms_idx", taken)
    offset = exp.Sub(this=exp.Paren(this=x.copy()), expression=col(p_start))
    idx = _floor_div(offset, step_num.copy(), integral)
    base_sel = exp.select(exp.Column(this=exp.Star(), table=c.src(rel)),
                          alias(idx, idx_phys)).from_(c.src(rel), copy=False).join(
        p_src, join_type="CROSS", copy=False)
    conds = in_range + [exp.GTE(this=x.copy(), expression=col(p_start)),
                        exp.LT(this=idx.copy(), expression=col(p_count))]
    base_sel = base_sel.where(and_(*conds), copy=False)
    base = c.add(base_sel, rel.cols, physical=set(taken))

    # ---- aggregates per group and bin
    brow = ScalarCompiler(c, base, env)
    bagg = ScalarCompiler(c, base, env, aggregate=True)
    names: list[str] = []
    by_cols: list[Col] = []
    sels: list[exp.Expr] = []
    group_phys: list[str] = []
    gtaken: set[str] = set()
    for ne in op.by:
        a = brow.compile(ne.expr)
        if a.type == "dynamic":
            raise c.semantic_error("make-series: grouping by a dynamic value is not allowed; "
                                   "convert it with tostring() first", ne.pos)
        name = ne.names[0] if ne.names else c.default_name(ne.expr, a, names, None)
        if name in names:
            raise c.semantic_error(f"make-series: the column '{name}' is defined more than "
                                   f"once", ne.pos)
        names.append(name)
        phys = c.namer.physical(name, gtaken)
        by_cols.append(Col(name, a.type, phys))
        group_phys.append(phys)
        sels.append(alias(a.sql, phys))
    gidx = c.namer.physical("__ms_idx", gtaken)
    sels.append(alias(col(idx_phys), gidx))
    agg_cols: list[tuple[Col, exp.Expr]] = []  # (output column, default value SQL)
    for item in op.aggs:
        ne = item.expr
        e = ne.expr
        if isinstance(e, A.Call) and e.name not in FUNCTIONS and env.lookup(e.name) is None:
            raise c.semantic_error(f"Unknown function: '{e.name}'", e.pos)
        a = bagg.compile(e)
        if not _contains_aggregate(e) and not a.is_const:
            raise c.semantic_error("make-series: each expression before 'on' must be an "
                                   "aggregation such as count() or avg(x)", ne.pos)
        if a.type == "dynamic":
            raise c.semantic_error("make-series: the aggregation must return a scalar value, "
                                   "not dynamic", ne.pos)
        name = ne.names[0] if ne.names else _agg_name(c, e, a, names)
        if name in names:
            if ne.names:
                raise c.semantic_error(f"make-series: the column '{name}' is defined more "
                                       f"than once", ne.pos)
            name = unique_name(name, names)
        names.append(name)
        phys = c.namer.physical(name, gtaken)
        sels.append(alias(a.sql, phys))
        default = _default(c, const, item.default, a.type, op)
        agg_cols.append((Col(name, a.type, phys), default))
    agg_sel = exp.select(*sels).from_(c.src(base), copy=False).group_by(
        *[exp.Literal.number(i + 1) for i in range(len(group_phys) + 1)], copy=False)
    agg_rel = c.add(agg_sel, [], physical=set(gtaken))

    # ---- the groups (one dummy column so that a query without `by` has one group)
    one = c.namer.physical("__ms_group", gtaken)
    g_sel = exp.select(*[col(p) for p in group_phys], alias(n(1), one)).from_(
        c.src(agg_rel), copy=False).distinct(copy=False)
    groups: exp.Expr = g_sel
    if kind == "nonempty":
        empty = exp.select(*[alias(literal(None, bc.type), bc.sql) for bc in by_cols],
                           alias(n(1), one)).where(exp.Not(this=exp.Exists(
                               this=exp.select(n(1)).from_(c.src(agg_rel), copy=False))),
                               copy=False)
        groups = exp.Union(this=g_sel, expression=empty, distinct=False)
    g_rel = c.add(groups, [], physical=set(gtaken))

    # ---- the dense grid: every group × every bin
    k_phys = c.namer.physical("__ms_k", gtaken)
    grid_sel = exp.select(exp.Column(this=exp.Star(), table=c.src(g_rel)),
                          alias(fn("unnest", fn("range", col(p_count))), k_phys)).from_(
        c.src(g_rel), copy=False).join(p_src.copy(), join_type="CROSS", copy=False)
    grid = c.add(grid_sel, [], physical=set(gtaken))

    # ---- the arrays
    G, AG = "__g", "__a"
    on: list[exp.Expr] = [exp.EQ(this=col(gidx, AG), expression=col(k_phys, G))]
    for p in group_phys:
        on.append(exp.NullSafeEQ(this=col(p, AG), expression=col(p, G)))
    order = [exp.Ordered(this=col(k_phys, G), desc=False, nulls_first=False)]

    def array(v: exp.Expr) -> exp.Expr:
        return fn("to_json", exp.ArrayAgg(this=exp.Order(this=v, expressions=[
            o.copy() for o in order])))

    out_cols: list[Col] = []
    otaken: set[str] = set()
    outs: list[exp.Expr] = []
    for bc in by_cols:
        phys = c.namer.physical(bc.name, otaken)
        outs.append(alias(col(bc.sql, G), phys))
        out_cols.append(Col(bc.name, bc.type, phys))
    absent = exp.Is(this=col(gidx, AG), expression=exp.Null())
    for ac, default in agg_cols:
        v = case([(absent.copy(), default)], col(ac.sql, AG))
        elem = dynamic_element(Arg(v, ac.type))
        phys = c.namer.physical(ac.name, otaken)
        outs.append(alias(array(elem), phys))
        out_cols.append(Col(ac.name, "dynamic", phys))
    axis_name = c.default_name(op.axis.expr, axis, names, None)
    k_pos = exp.Add(this=col(p_start), expression=exp.Mul(this=col(k_phys, G),
                                                             expression=exp.Paren(
                                                                 this=step_num.copy())))
    axis_value = Arg(from_position(k_pos, atype), atype)
    phys = c.namer.physical(axis_name, otaken)
    outs.append(alias(array(dynamic_element(axis_value)), phys))
    out_cols.append(Col(axis_name, "dynamic", phys))
    final = exp.select(*outs).from_(exp.Table(this=c.src(grid), alias=exp.TableAlias(
        this=exp.to_identifier(G, quoted=True))), copy=False).join(
        exp.Table(this=c.src(agg_rel), alias=exp.TableAlias(
            this=exp.to_identifier(AG, quoted=True))), on=and_(*on), join_type="LEFT",
        copy=False).join(p_src.copy(), join_type="CROSS", copy=False).group_by(
        *[col(p, G) for p in group_phys], col(one, G), copy=False)
    return c.add(final, out_cols)


def _default(c: Compiler, sc: ScalarCompiler, e: A.Expr | None, agg_type: str,
             node: A.Operator) -> exp.Expr:
    if e is None:
        return literal(0, agg_type) if agg_type in NUMERIC else literal(None, agg_type)
    a = sc.compile(e)
    if not a.is_const:
        raise c.semantic_error("make-series: the default value must be a constant", node.pos)
    if a.const is None:
        return literal(None, agg_type)
    if a.type == agg_type:
        return a.sql
    if a.type in NUMERIC and agg_type in NUMERIC:
        return cast_k(a.sql, agg_type)
    raise c.semantic_error(f"make-series: the default value of type {a.type} does not match "
                           f"the aggregation's type {agg_type}", node.pos)
