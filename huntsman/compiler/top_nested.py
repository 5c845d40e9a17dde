"""``top-nested``: hierarchical aggregation with a top-N selection at each level.

Level k partitions the records that made the top of every earlier level by the previous levels'
values, aggregates per value of its own expression and keeps the N best values of each
partition. The result has two columns per level: the value (named after the expression) and its
aggregate (``aggregated_<name>`` unless named).

``with others = C``: a record that misses the top at some level k falls into an "others"
bucket of its partition. Its row shows the earlier levels' values and aggregates; from level k
on, a level with ``with others`` shows ``C`` and the aggregate over the whole bucket, a level
without it shows null. A bucket appears only when some level at or below k has ``with others``
(so the Kusto documentation's example: ``KANSAS | | | All Other End Locations | 24891.08``).

SQL: the level expressions are computed once per record; each level is an aggregate over the
records still in the top (ranked with ``row_number()`` per partition), joined back to the
records to mark who stays in; the output is the union of the full paths and of the buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, Rel, unique_name
from huntsman.compiler.summarize import _contains_aggregate
from huntsman.kql import ast as A
from huntsman.kql.functions.convert import convert
from huntsman.kql.functions.sql import alias, and_, cast_k, col, literal, n

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler


@dataclass
class _Level:
    vname: str  # output name of the value column
    aname: str  # output name of the aggregate column
    vtype: str
    v: str  # hidden physical column with the level's value
    count: exp.Expr | None
    others: exp.Expr | None
    agg: A.Expr
    desc: bool
    flag: str = ""  # hidden: the record is still in the top after this level
    a: str = ""  # hidden: the level's aggregate for the record's path


def compile_top_nested(c: Compiler, rel: Rel, op: A.TopNested, env: Env) -> Rel:
    if c.partition(rel) is not None:
        raise c.unsupported("top-nested is not supported inside mv-apply", op)
    row = ScalarCompiler(c, rel, env)
    const = ScalarCompiler(c, None, env)
    taken = set(rel.physical)
    names: list[str] = []
    sels: list[exp.Expr] = [exp.Star()]
    levels: list[_Level] = []
    for cl in op.clauses:
        a = row.compile(cl.expr.expr)
        if a.type == "dynamic":
            raise c.semantic_error("top-nested: a level's value cannot be dynamic; convert it "
                                   "with tostring() first", cl.expr.pos)
        vname = cl.expr.names[0] if cl.expr.names else c.default_name(cl.expr.expr, a, [],
                                                                        "Column1")
        vname = unique_name(vname, names)
        names.append(vname)
        aname = cl.agg.names[0] if cl.agg.names else f"aggregated_{vname}"
        aname = unique_name(aname, names)
        names.append(aname)
        if not _contains_aggregate(cl.agg.expr):
            raise c.semantic_error("top-nested: 'by' needs an aggregation such as sum(x) or "
                                   "count()", cl.agg.pos)
        count = None
        if cl.count is not None:
            cnt = const.compile(cl.count)
            if cnt.type not in ("long", "int"):
                raise c.semantic_error("top-nested: the number of values must be a whole "
                                       "number", op.pos)
            count = cnt.sql
        others = None
        if cl.others is not None:
            o = const.compile(cl.others)
            if not o.is_const:
                raise c.semantic_error("top-nested: 'with others' needs a constant", op.pos)
            if o.const is None:
                others = literal(None, a.type)
            elif o.type != a.type:
                try:
                    others = convert(o, a.type) if o.type != "string" or a.type == "string" \
                        else cast_k(o.sql, a.type, safe=True)
                except ValueError:
                    raise c.semantic_error(f"top-nested: 'with others' value of type {o.type} "
                                           f"does not match the level's type {a.type}",
                                           op.pos) from None
            else:
                others = o.sql
        vphys = c.namer.physical(f"__tn_v_{vname}", taken)
        sels.append(alias(a.sql, vphys))
        levels.append(_Level(vname, aname, a.type, vphys, count, others, cl.agg.expr, cl.desc))
    base = c.add(exp.select(*sels).from_(c.src(rel), copy=False), rel.cols, physical=set(taken))
    agg_sc = ScalarCompiler(c, base, env, aggregate=True)
    agg_types: list[str] = []
    cur = base
    status_prev: str | None = None  # the flag: still in the top after the previous level
    level_rels: list[tuple[Rel, str, str]] = []  # (aggregate CTE, its value col, its agg col)
    for k, lv in enumerate(levels):
        prefix = [levels[j].v for j in range(k)]
        agg = agg_sc.compile(lv.agg)
        agg_types.append(agg.type)
        a_phys = c.namer.physical(f"__tn_a{k}", taken)
        rn_phys = c.namer.physical(f"__tn_rn{k}", taken)
        gsel: list[exp.Expr] = [col(p) for p in prefix] + [col(lv.v),
                                                            alias(agg.sql, a_phys)]
        g = exp.select(*gsel).from_(c.src(cur), copy=False)
        if status_prev is not None:
            g = g.where(col(status_prev), copy=False)
        g = g.group_by(*[exp.Literal.number(i + 1) for i in range(k + 1)], copy=False)
        grouped = c.add(g, [], physical=set(taken))
        w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                       partition_by=[col(p) for p in prefix] or None,
                       order=exp.Order(expressions=[exp.Ordered(
                           this=col(a_phys), desc=lv.desc,
                           nulls_first=not lv.desc)]))
        ranked = c.add(exp.select(exp.Star(), alias(w, rn_phys)).from_(c.src(grouped),
                                                                       copy=False),
                       [], physical=set(taken))
        level_rels.append((ranked, lv.v, a_phys))
        # mark the records that stay in the top at this level
        st = c.namer.physical(f"__tn_in{k}", taken)
        R, G = "__r", "__g"
        on: list[exp.Expr] = [exp.NullSafeEQ(this=col(p, R), expression=col(p, G))
                              for p in prefix + [lv.v]]
        if status_prev is not None:
            on.append(col(status_prev, R))
        keep: exp.Expr = exp.Not(this=exp.Is(this=col(rn_phys, G), expression=exp.Null()))
        if lv.count is not None:
            keep = and_(keep, exp.LTE(this=col(rn_phys, G),
                                      expression=exp.Paren(this=lv.count)))
        marked = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier(R, quoted=True)),
                            alias(exp.Coalesce(this=keep, expressions=[exp.false()]), st),
                            alias(col(a_phys, G), a_phys)).from_(
            exp.Table(this=c.src(cur), alias=exp.TableAlias(this=exp.to_identifier(
                R, quoted=True))), copy=False).join(
            exp.Table(this=c.src(ranked), alias=exp.TableAlias(this=exp.to_identifier(
                G, quoted=True))), on=and_(*on), join_type="LEFT", copy=False)
        cur = c.add(marked, rel.cols, physical=set(taken))
        lv.flag = st
        lv.a = a_phys
        status_prev = st

    # output: full paths, then the "others" buckets
    otaken: set[str] = set()
    out_cols: list[Col] = []
    for lv, at in zip(levels, agg_types, strict=True):
        out_cols.append(Col(lv.vname, lv.vtype,
                            c.namer.physical(lv.vname, otaken)))
        out_cols.append(Col(lv.aname, at, c.namer.physical(lv.aname, otaken)))
    last = levels[-1]
    full_sels: list[exp.Expr] = []
    for i, lv in enumerate(levels):
        full_sels.append(alias(col(lv.v), out_cols[2 * i].sql))
        full_sels.append(alias(col(lv.a), out_cols[2 * i + 1].sql))
    parts: list[exp.Expr] = [exp.select(*full_sels).from_(c.src(cur), copy=False).where(
        col(last.flag), copy=False).distinct(copy=False)]
    for j in range(len(levels)):
        if not any(levels[m].others is not None for m in range(j, len(levels))):
            continue
        # records in the top of levels < j that miss level j
        cond: list[exp.Expr] = [exp.Not(this=col(levels[j].flag))]
        if j > 0:
            cond.insert(0, col(levels[j - 1].flag))
        bsels: list[exp.Expr] = []
        group: list[exp.Expr] = []
        for i in range(j):
            lv = levels[i]
            bsels.append(alias(col(lv.v), out_cols[2 * i].sql))
            bsels.append(alias(col(lv.a), out_cols[2 * i + 1].sql))
            group += [col(lv.v), col(lv.a)]
        for m in range(j, len(levels)):
            lv = levels[m]
            vtype, at = lv.vtype, agg_types[m]
            if lv.others is None:
                bsels.append(alias(literal(None, vtype), out_cols[2 * m].sql))
                bsels.append(alias(literal(None, at), out_cols[2 * m + 1].sql))
            else:
                bsels.append(alias(lv.others.copy(), out_cols[2 * m].sql))
                a = agg_sc.compile(lv.agg)
                bsels.append(alias(a.sql, out_cols[2 * m + 1].sql))
        b = exp.select(*bsels).from_(c.src(cur), copy=False).where(and_(*cond), copy=False)
        if group:
            b = b.group_by(*group, copy=False)
        else:
            # no earlier level: one bucket, present only when some record fell in it
            b = b.having(exp.GT(this=exp.Count(this=exp.Star()), expression=n(0)), copy=False)
        parts.append(b)
    union: exp.Expr = parts[0]
    for part in parts[1:]:
        union = exp.Union(this=union, expression=part, distinct=False)
    out = c.add(union, out_cols)
    out.order = None
    return out


__all__ = ["compile_top_nested"]
