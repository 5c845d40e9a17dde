"""``summarize``: GROUP BY with Kusto's output names; multi-column aggregates via structs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, Rel, unique_name
from huntsman.kql import ast as A
from huntsman.kql.functions import ALIASES, FUNCTIONS
from huntsman.kql.functions.sql import alias, case, cast_k, coalesce, col, fn, s

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

MULTI = {"arg_max", "arg_min", "take_any", "any"}


def compile_summarize(c: Compiler, rel: Rel, op: A.Summarize, env: Env) -> Rel:
    fast = _latest_row_per_key(c, rel, op)
    if fast is not None:
        return fast
    row = ScalarCompiler(c, rel, env)
    agg = ScalarCompiler(c, rel, env, aggregate=True)
    taken: set[str] = set()
    names: list[str] = []
    cols: list[Col] = []
    sels: list[exp.Expr] = []
    group: list[exp.Expr] = []

    for ne in op.by:
        a = row.compile(ne.expr)
        if a.type == "dynamic":
            raise c.semantic_error("summarize: grouping by a dynamic value is not allowed; "
                                   "convert it with tostring() first", ne.pos)
        name = ne.names[0] if ne.names else c.default_name(ne.expr, a, names, None)
        if name in names:
            raise c.semantic_error(f"summarize: the column '{name}' is defined more than once",
                                   ne.pos)
        names.append(name)
        phys = c.namer.physical(name, taken)
        cols.append(Col(name, a.type, phys))
        sels.append(alias(a.sql, phys))
        group.append(exp.Literal.number(len(group) + 1))

    part = c.partition(rel)
    if part is not None:  # inside mv-apply: one group set per record
        taken.add(part.lower())
        sels.append(col(part))
        group.append(exp.Literal.number(len(group) + 1))
    by_names = set(names)
    unpack: list[tuple[str, list[Col], list[str]]] = []  # (struct column, output cols, fields)

    for ne in _expand_percentiles(c, op.aggs):
        e = ne.expr
        fname = ALIASES.get(e.name, e.name) if isinstance(e, A.Call) else None
        if isinstance(e, A.Call) and fname in MULTI and _is_multi(e):
            struct_phys, out_cols, fields, sel = _multi(c, row, rel, e, ne, names, taken,
                                                        by_names)
            sels.append(sel)
            unpack.append((struct_phys, out_cols, fields))
            continue
        if isinstance(e, A.Call) and e.name not in FUNCTIONS and env.lookup(e.name) is None:
            raise c.semantic_error(f"Unknown function: '{e.name}'", e.pos)
        if not _contains_aggregate(e):
            raise c.semantic_error("summarize: each expression before 'by' must be an "
                                   "aggregation such as count() or sum(x)", ne.pos)
        a = agg.compile(e)
        name = ne.names[0] if ne.names else _agg_name(c, e, a, names)
        if name in names:
            if ne.names:
                raise c.semantic_error(
                    f"summarize: the column '{name}' is defined more than once", ne.pos)
            name = unique_name(name, names)
        names.append(name)
        phys = c.namer.physical(name, taken)
        cols.append(Col(name, a.type, phys))
        sels.append(alias(a.sql, phys))

    sel = exp.select(*sels).from_(c.src(rel), copy=False)
    if group:
        sel = sel.group_by(*group, copy=False)
    out = c.add(sel, [x for x in cols], physical=set(taken))
    if part is not None and not op.by and c.partition_source is not None:
        out = _every_record(c, out, rel, sels, part)
    if not unpack:
        return out
    # second step: unpack the struct columns of arg_max/arg_min/take_any
    final_cols: list[Col] = []
    outs: list[exp.Expr] = []
    taken2: set[str] = set()
    if part is not None:
        taken2.add(part.lower())
        outs.append(col(part))
    for x in cols:
        final_cols.append(Col(x.name, x.type, c.namer.physical(x.name, taken2)))
        outs.append(alias(col(x.sql), final_cols[-1].sql))
    for struct_phys, out_cols, fields in unpack:
        for oc, field in zip(out_cols, fields, strict=True):
            phys = c.namer.physical(oc.name, taken2)
            v: exp.Expr = fn("struct_extract", col(struct_phys), s(field))
            if oc.type == "string":
                v = coalesce(v, s(""))
            outs.append(alias(v, phys))
            final_cols.append(Col(oc.name, oc.type, phys))
    return c.add(exp.select(*outs).from_(c.src(out), copy=False), final_cols,
                 physical=set(taken2))


def _every_record(c: Compiler, grouped: Rel, rel: Rel, sels: list[exp.Expr],
                  part: str) -> Rel:
    """Inside mv-apply, ``summarize`` without ``by`` gives one row per record, also for a
    record whose subtable is empty: such a record gets the aggregates' values over no rows."""
    source = c.partition_source
    assert source is not None
    agg_sels = [x.copy() for x in sels if isinstance(x, exp.Alias)]
    empty = c.add(exp.select(*agg_sels).from_(c.src(rel), copy=False).where(exp.false(),
                                                                           copy=False),
                  [], physical=set(grouped.physical))
    S, G, E = "__rec", "__grp", "__none"
    outs: list[exp.Expr] = [alias(col(part, S), part)]
    for x in agg_sels:
        name = x.alias
        outs.append(alias(case([(exp.Is(this=col(part, G), expression=exp.Null()),
                                 col(name, E))], col(name, G)), name))
    sel = exp.select(*outs).from_(exp.Table(this=c.src(source), alias=exp.TableAlias(
        this=exp.to_identifier(S, quoted=True))), copy=False).join(
        exp.Table(this=c.src(grouped), alias=exp.TableAlias(this=exp.to_identifier(
            G, quoted=True))), on=exp.EQ(this=col(part, S), expression=col(part, G)),
        join_type="LEFT", copy=False).join(
        exp.Table(this=c.src(empty), alias=exp.TableAlias(this=exp.to_identifier(
            E, quoted=True))), join_type="CROSS", copy=False)
    return c.add(sel, grouped.cols, physical=set(grouped.physical))


def _is_multi(e: A.Call) -> bool:
    fname = ALIASES.get(e.name, e.name)
    if fname in ("arg_max", "arg_min"):
        return True
    return any(isinstance(a, A.Star) for a in e.args) or len(e.args) > 1


def _multi(c: Compiler, row: ScalarCompiler, rel: Rel, e: A.Call, ne: A.NamedExpr,
           names: list[str], taken: set[str], by_names: set[str]
           ) -> tuple[str, list[Col], list[str], exp.Expr]:
    fname = ALIASES.get(e.name, e.name)
    is_arg = fname in ("arg_max", "arg_min")
    args = e.args
    if is_arg and len(args) < 1:
        raise c.semantic_error(f"{e.name}() expects an expression to maximize", e.pos)
    key = row.compile(args[0]) if is_arg else None
    items: list[tuple[str, exp.Expr, str]] = []  # (name, sql, type)
    key_name = None
    if is_arg:
        assert key is not None
        key_name = ne.names[0] if ne.names else (
            c.default_name(args[0], key, names, None))
        items.append((key_name, key.sql, key.type))
    rest = args[1:] if is_arg else args
    for a_node in rest:
        if isinstance(a_node, A.Star):
            for col_ in rel.cols:
                if col_.name in by_names or col_.name == key_name:
                    continue
                if any(it[0] == col_.name for it in items):
                    continue
                items.append((col_.name, col(col_.sql), col_.type))
        else:
            a = row.compile(a_node)
            nm = c.default_name(a_node, a, [it[0] for it in items], None)
            items.append((nm, a.sql, a.type))
    out_cols: list[Col] = []
    fields: list[str] = []
    struct_args = []
    for i, (nm, sql, t) in enumerate(items):
        final = unique_name(nm, names) if nm in names else nm
        names.append(final)
        field = f"f{i}"
        fields.append(field)
        out_cols.append(Col(final, t, ""))
        struct_args.append(exp.PropertyEQ(this=exp.to_identifier(field), expression=sql))
    struct = exp.Struct(expressions=struct_args)
    if is_arg:
        assert key is not None
        # a group whose keys are all null still yields a row (Kusto keeps one)
        agg_sql = coalesce(exp.Anonymous(this="arg_max" if fname == "arg_max" else "arg_min",
                                         expressions=[struct, key.sql]),
                           exp.Anonymous(this="any_value", expressions=[struct.copy()]))
    else:
        agg_sql = exp.Anonymous(this="any_value", expressions=[struct])
    phys = c.namer.physical("__struct", taken)
    return phys, out_cols, fields, alias(agg_sql, phys)


def _contains_aggregate(e: A.Expr) -> bool:
    if isinstance(e, A.Call):
        f = FUNCTIONS.get(e.name)
        if f is not None and f.kind == "aggregate":
            return True
        return any(_contains_aggregate(a) for a in e.args if isinstance(a, A.Expr))
    if isinstance(e, A.Binary):
        return _contains_aggregate(e.left) or _contains_aggregate(e.right)
    if isinstance(e, A.Unary):
        return _contains_aggregate(e.operand)
    if isinstance(e, (A.Member, A.Index)):
        return _contains_aggregate(e.obj)
    return False


def _latest_row_per_key(c: Compiler, rel: Rel, op: A.Summarize) -> Rel | None:
    """``summarize arg_max(T, *) by k`` (the most common hunting idiom) as one window:
    ``QUALIFY row_number() OVER (PARTITION BY k ORDER BY T DESC NULLS LAST) = 1``, which keeps
    whole rows without packing every column into a struct. Only plain column names qualify;
    anything else takes the general path."""
    if len(op.aggs) != 1 or not op.by or op.aggs[0].names:
        return None
    e = op.aggs[0].expr
    if not (isinstance(e, A.Call) and ALIASES.get(e.name, e.name) in ("arg_max", "arg_min")
            and len(e.args) >= 2):
        return None
    if not all(isinstance(ne.expr, A.Name) and not ne.names for ne in op.by):
        return None
    if not all(isinstance(a, (A.Name, A.Star)) for a in e.args) or isinstance(e.args[0], A.Star):
        return None
    by_cols = [rel.col(ne.expr.name) for ne in op.by]  # type: ignore[attr-defined]
    key = rel.col(e.args[0].name)  # type: ignore[attr-defined]
    if key is None or any(b is None for b in by_cols) or key.type == "dynamic" or \
            len({b.name for b in by_cols if b}) != len(by_cols):
        return None
    keys = [b for b in by_cols if b is not None]
    if any(b.type == "dynamic" for b in keys) or key in keys:
        return None
    rest: list[Col] = []
    for a in e.args[1:]:
        if isinstance(a, A.Star):
            rest += [x for x in rel.cols if x not in keys and x != key and x not in rest]
        else:
            x = rel.col(a.name)  # type: ignore[attr-defined]
            if x is None or x in keys or x == key or x in rest:
                return None
            rest.append(x)
    desc = ALIASES.get(e.name, e.name) == "arg_max"
    w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                   partition_by=[col(k.sql) for k in keys],
                   order=exp.Order(expressions=[exp.Ordered(this=col(key.sql), desc=desc,
                                                            nulls_first=False)]))
    sel = exp.select(exp.Star()).from_(c.src(rel), copy=False).qualify(
        exp.EQ(this=w, expression=exp.Literal.number(1)), copy=False)
    return c.add(sel, keys + [key] + rest, physical=set(rel.physical))


def _expand_percentiles(c: Compiler, aggs: list[A.NamedExpr]) -> list[A.NamedExpr]:
    """``percentiles(x, 50, 95)`` is one column per percentage: ``percentile_x_50`` ..."""
    out: list[A.NamedExpr] = []
    for ne in aggs:
        e = ne.expr
        if not (isinstance(e, A.Call) and e.name == "percentiles" and len(e.args) > 2):
            out.append(ne)
            continue
        if len(ne.names) not in (0, len(e.args) - 1):
            raise c.semantic_error("percentiles(): name one column per percentage", ne.pos)
        for i, p in enumerate(e.args[1:]):
            call = A.Call("percentile", [e.args[0], p], pos=e.pos)
            out.append(A.NamedExpr(call, [ne.names[i]] if ne.names else [], ne.pos))
    return out


def _agg_name(c: Compiler, e: A.Expr, a: object, names: list[str]) -> str:
    from huntsman.kql.functions import default_result_name

    if isinstance(e, A.Call) and FUNCTIONS.get(e.name) is not None and \
            FUNCTIONS[e.name].kind == "aggregate":
        first = e.args[0] if e.args else None
        first_name = c.path_name(first) if isinstance(first, (A.Name, A.Member, A.Index)) \
            else None
        fname = e.name
        rule_name = default_result_name(fname, first_name)
        if fname == "count":
            return f"count_{first_name or ''}"
        if fname in ("percentile", "percentiles") and len(e.args) == 2 and \
                isinstance(e.args[1], A.Literal):
            from huntsman.kql.functions.aggregates import percentile_name_fragment
            return f"percentile_{first_name or ''}_{percentile_name_fragment(e.args[1].value)}"
        if fname == "percentiles_array":
            return f"percentiles_{first_name or ''}"
        if fname in ("take_any",) and first_name:
            return first_name
        if rule_name is not None and (rule_name.endswith("_") or first_name is not None
                                      or "_" in rule_name):
            return rule_name
        base = {"makeset": "set_", "makelist": "list_"}.get(fname)
        if base:
            return base + (first_name or "")
    i = 1
    while f"Column{i}" in names:
        i += 1
    return f"Column{i}"


__all__ = ["compile_summarize", "cast_k"]
