"""``mv-apply``: expand each record's arrays into a subtable, run a subquery on every subtable,
and return the union of the results next to the record's other columns.

The records are numbered first (a materialized CTE, so that the numbering is computed once);
``mv-expand`` then makes one row per element, carrying that hidden row id. The subquery's
operators run on the expanded rows with the compiler in *partition* mode
(:meth:`Compiler.partition`): ``take``, ``top``, ``summarize``, ``count``, ``distinct``,
``sample`` and the window functions work per row id, so each record's subtable is processed on
its own. The result is joined back to the numbered records for the columns the subquery dropped.

The common subqueries take a fast path instead (:mod:`huntsman.compiler.mv_apply_fast`): each record's array stays a
DuckDB list, and ``where``, ``take``, ``top``/``sort`` by one key, ``extend`` and ``project``
become ``list_filter``, ``list_slice``, ``list_min``/``list_position`` or
``list_grade_up``/``list_select`` and ``list_transform`` over it; a final ``summarize`` without
``by`` (count, sum, min, max, avg, make_list, make_set, dcount, countif, take_any and their
``_if`` forms) or ``count`` becomes list aggregates, and the rest is one ``unnest``. No
numbering, no window, no join back. Any other shape (and any expression that needs a window,
an aggregate of its own or a subquery) takes the general path.

The result schema follows Kusto.Language's binder: the input columns (less those expanded under
their own name), then the subquery's columns, a column of the same name replacing the input's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.expand import compile_mv_expand
from huntsman.compiler.mv_apply_fast import result_columns, try_fast
from huntsman.compiler.scope import Col, Env, Rel
from huntsman.kql import ast as A
from huntsman.kql.functions.sql import alias, col

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

ALLOWED = (A.Where, A.Project, A.ProjectAway, A.ProjectKeep, A.ProjectRename, A.ProjectReorder,
           A.Extend, A.Summarize, A.Count, A.Take, A.Sort, A.Top, A.Distinct, A.MvExpand,
           A.ParseOp, A.ParseKv, A.Serialize, A.Sample, A.MvApply)


def compile_mv_apply(c: Compiler, rel: Rel, op: A.MvApply, env: Env) -> Rel:
    for sub_op in op.subquery:
        if not isinstance(sub_op, ALLOWED):
            name = re.sub(r"(?<!^)(?=[A-Z])", "-", type(sub_op).__name__).lower()
            raise c.unsupported(f"mv-apply: the '{name}' operator is not supported inside the "
                                f"mv-apply subquery", sub_op)
    for ne, _ in op.columns:
        if not ne.names and not isinstance(ne.expr, A.Name):
            raise c.semantic_error("mv-apply: name an expanded expression that is not a "
                                   "column (Name = expression)", ne.pos)
    fast = try_fast(c, rel, op, env)
    if fast is not None:
        return fast
    # number the records once
    taken = set(rel.physical)
    rid = c.namer.physical("__rid", taken)
    w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                   order=exp.Order(expressions=[o.copy() for o in rel.order]) if rel.order
                   else None)
    numbered = c.add(exp.select(exp.Star(), alias(w, rid)).from_(c.src(rel), copy=False),
                     rel.cols, rel, set(taken), materialized=True)
    # expand (with a hidden item index when none is asked for, to keep the array order)
    index = op.itemindex or "__mvidx"
    expand = A.MvExpand(op.columns, index, op.limit, "bag", pos=op.pos)
    expanded = compile_mv_expand(c, numbered, expand, env)
    index_col = expanded.col(index)
    assert index_col is not None
    cols = expanded.cols if op.itemindex else [x for x in expanded.cols if x.name != index]
    sub = Rel(expanded.source, cols, expanded.physical | {rid.lower()},
              [exp.Ordered(this=col(rid), desc=False, nulls_first=False),
               exp.Ordered(this=col(index_col.sql), desc=False, nulls_first=False)],
              serialized=True)
    outer, outer_source = c.partition_col, c.partition_source
    c.partition_col, c.partition_source = rid, numbered
    try:
        for sub_op in op.subquery:
            if isinstance(sub_op, A.Count):
                # count gives a row for an empty subtable too, as summarize count() does
                sub_op = A.Summarize([A.NamedExpr(A.Call("count", [], pos=sub_op.pos),
                                                  [sub_op.name], sub_op.pos)], [],
                                     pos=sub_op.pos)
            method = getattr(c, f"visit_{type(sub_op).__name__}")
            sub = method(sub, sub_op, env)
    finally:
        c.partition_col, c.partition_source = outer, outer_source
    if c.partition(sub) is None and rid.lower() not in sub.physical:
        raise c.unsupported("mv-apply: the subquery lost the record identity", op)
    result = result_columns(rel, op, list(sub.cols))
    need_base = any(side == "base" for _, _, side in result)
    S, B = "__sub", "__rec"
    otaken: set[str] = set()
    sels: list[exp.Expr] = []
    out_cols: list[Col] = []
    for name, x, side in result:
        phys = c.namer.physical(name, otaken)
        sels.append(alias(col(x.sql, S if side == "sub" else B), phys))
        out_cols.append(Col(name, x.type, phys))
    keep_rid = outer is not None and outer.lower() in rel.physical
    join = need_base or keep_rid
    if keep_rid:  # a nested mv-apply: carry the enclosing record id along
        assert outer is not None
        sels.append(alias(col(outer, B), outer))
        otaken.add(outer.lower())
    sel = exp.select(*sels).from_(exp.Table(this=c.src(sub), alias=exp.TableAlias(
        this=exp.to_identifier(S, quoted=True))), copy=False)
    if join:
        sel = sel.join(exp.Table(this=c.src(numbered), alias=exp.TableAlias(
            this=exp.to_identifier(B, quoted=True))), on=exp.EQ(
            this=col(rid, S), expression=col(rid, B)), join_type="INNER", copy=False)
    return c.add(sel, out_cols, physical=otaken)
