"""The fast path of ``mv-apply`` (see :mod:`huntsman.compiler.mv_apply`): the common subquery
shapes compiled to DuckDB list functions over each record's array, with no numbering, window or
join back.

Each step adds one list column to the record (``_plan``); the last one is unnested, or, after a
``summarize`` without ``by`` or ``count``, read as list aggregates (``_emit``). Expressions of
the subquery are compiled as usual against the subtable's columns and then bound to the element
of a lambda (``_bind_fields``); a shape or expression this module does not handle raises
``_NoFast`` and the caller takes the general path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlglot import exp

from huntsman.compiler.expand import _as_list, _as_text_list, _text_fast_path
from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, Rel, unique_name
from huntsman.compiler.summarize import MULTI, _agg_name
from huntsman.errors import KqlError
from huntsman.kql import ast as A
from huntsman.kql.functions import ALIASES, FUNCTIONS
from huntsman.kql.functions.convert import convert, json_value, to_string
from huntsman.kql.functions.dynamic_fns import field, fresh, ref, struct
from huntsman.kql.functions.sql import Arg, alias, and_, coalesce, col, fn, lambda_, n, s

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

FAST_PATH = True
"""Compile the common subquery shapes (``where``, ``take``, ``top``/``sort`` by one key,
``extend``, ``project``, then optionally ``summarize`` without ``by`` or ``count``) to DuckDB
list functions on each record's array, with no numbering, window or join back. The tests turn
it off to compare the two paths."""

_LIST_AGGS = {"sum": "list_sum", "min": "list_min", "max": "list_max", "avg": "list_avg"}
"""Aggregates with a list function of the same meaning (nulls ignored, null on no values)."""


class _NoFast(Exception):
    """The subquery has a shape the fast path does not compile: use the general path."""


@dataclass
class _Elems:
    """Each record's subtable as one list column: the elements are the bare values of the only
    element column (``bare``) or structs keyed by the element columns' physical names."""

    cols: list[Col]  # the subtable's columns: the record's (physical) and the elements'
    fields: list[str]  # physical names of the element columns (struct keys)
    lst: str = ""  # the list column of the current step
    bare: bool = True
    row: list[tuple[Col, exp.Expr]] | None = None  # after summarize/count: one row per record


def try_fast(c: Compiler, rel: Rel, op: A.MvApply, env: Env) -> Rel | None:
    """``op`` compiled with list functions, or None when its shape needs the general path (or
    it is nested in another mv-apply, or has an error for the general path to report)."""
    if not FAST_PATH or c.partition_col is not None:
        return None
    try:
        steps, el, taken = _plan(c, rel, op, env)
    except (_NoFast, KqlError):  # the general path reports the user's errors
        return None
    cur = rel
    for sels in steps:
        cur = c.add(exp.select(exp.Star(), *sels).from_(c.src(cur), copy=False), rel.cols,
                    physical=set(taken))
    return _emit(c, rel, op, cur, el)


def _plan(c: Compiler, rel: Rel, op: A.MvApply, env: Env
          ) -> tuple[list[list[exp.Expr]], _Elems, set[str]]:
    """The select lists of the steps that compute the final element list (each step adds
    columns to the record), and the final state. Compiles nothing into the query."""
    taken = set(rel.physical)
    sc = ScalarCompiler(c, rel, env)
    limit = sc.compile(op.limit).sql if op.limit is not None else None
    pre: list[exp.Expr] = []
    lists: list[exp.Expr] = []
    cols = list(rel.cols)
    fields: list[str] = []
    for ne, to_type in op.columns:
        a = sc.compile(ne.expr)
        name = ne.names[0] if ne.names else (a.name or ne.expr.name)  # type: ignore[attr-defined]
        if a.type != "dynamic":
            raise _NoFast
        v = json_value(a)
        t = to_type or "dynamic"
        x = fresh("x")
        if t == "string":
            fast = c.namer.physical("__mvtext", taken)
            pre.append(alias(_text_fast_path(a), fast))
            # no per-element coalesce for the usual array of non-null texts
            plain = and_(exp.GT(this=fn("len", col(fast)), expression=n(0)),
                         fn("list_count", col(fast)).eq(fn("len", col(fast))))
            lst: exp.Expr = exp.Case(ifs=[exp.If(this=plain, true=col(fast))], default=fn(
                "list_transform", _as_text_list(col(fast), v, "bag"),
                lambda_([x], coalesce(ref(x), s("")))))
        elif t == "dynamic":
            lst = _as_list(v, "bag")
        else:
            lst = fn("list_transform", _as_list(v, "bag"),
                     lambda_([x], convert(Arg(ref(x), "dynamic"), t)))
        if limit is not None:
            lst = fn("list_slice", lst, n(1), limit.copy())
        lists.append(lst)
        phys = c.namer.physical(name, taken)
        fields.append(phys)
        new = Col(name, t, phys)
        idx = next((i for i, x2 in enumerate(cols) if x2.name == name), None)
        if idx is None:
            cols.append(new)
        else:
            cols[idx] = new
    steps: list[list[exp.Expr]] = [pre] if pre else []
    el = _Elems(cols, fields)
    if len(lists) == 1 and not op.itemindex:
        el.lst = c.namer.physical("__mvl", taken)
        steps.append([alias(lists[0], el.lst)])
    else:
        names = [c.namer.physical("__mvl", taken) for _ in lists]
        steps.append([alias(lst, nm) for lst, nm in zip(lists, names, strict=True)])
        i = fresh("i")
        parts: dict[str, exp.Expr] = {}
        for f, nm, (_, to_type) in zip(fields, names, op.columns, strict=True):
            item = fn("list_extract", col(nm), exp.Add(this=ref(i), expression=n(1)))
            # the shorter arrays are padded with nulls ("" for a string)
            parts[f] = coalesce(item, s("")) if to_type == "string" else item
        if op.itemindex:
            phys = c.namer.physical(op.itemindex, taken)
            el.fields.append(phys)
            el.cols.append(Col(op.itemindex, "long", phys))
            parts[phys] = ref(i)
        longest = fn("greatest", *[fn("len", col(nm)) for nm in names]) if len(names) > 1 \
            else fn("len", col(names[0]))
        el.lst = c.namer.physical("__mvl", taken)
        el.bare = False
        steps.append([alias(fn("list_transform", fn("range", n(0), longest),
                                lambda_([i], struct(**parts))), el.lst)])
    for sub_op in op.subquery:
        if el.row is not None:
            raise _NoFast  # only summarize/count may end the subquery
        pre_step: list[exp.Expr] = []
        new_list = _fast_op(c, el, sub_op, env, taken, pre_step)
        if pre_step:
            steps.append(pre_step)
        if new_list is not None:
            el.lst = c.namer.physical("__mvl", taken)
            steps.append([alias(new_list, el.lst)])
    return steps, el, taken


def _fast_op(c: Compiler, el: _Elems, op: A.Operator, env: Env, taken: set[str],
             pre: list[exp.Expr]) -> exp.Expr | None:
    """The next element list after ``op`` (None when ``op`` ends in a row per record);
    columns it needs computed one step earlier are added to ``pre``."""
    lst: exp.Expr = col(el.lst)
    if isinstance(op, A.Where):
        body, p = _per_element(c, el, lambda sc: sc.predicate(op.predicate), env)
        return fn("list_filter", lst, lambda_([p], body))
    if isinstance(op, (A.Take, A.Top)):
        count = ScalarCompiler(c, None, env).compile(op.count)
        if count.type not in ("long", "int") or not isinstance(count.const, int) \
                or count.const < 0:
            raise _NoFast
        if isinstance(op, A.Top) and count.const == 1:
            return _first(c, el, op.key, env, taken, pre)
        ordered = lst if isinstance(op, A.Take) else _sorted(c, el, op.key, env)
        return fn("list_slice", ordered, n(1), n(count.const))
    if isinstance(op, A.Sort):
        if len(op.keys) != 1:
            raise _NoFast
        return _sorted(c, el, op.keys[0], env)
    if isinstance(op, (A.Extend, A.Project)):
        return _reshape(c, el, op, env, taken)
    if isinstance(op, A.Count):
        cnt = Col(op.name, "long", c.namer.physical(op.name, taken))
        el.cols, el.row = [cnt], [(cnt, fn("len", lst))]
        return None
    if isinstance(op, A.Summarize):
        _summarize(c, el, op, env, taken)
        return None
    raise _NoFast


def _sub_rel(el: _Elems) -> Rel:
    return Rel("__mvsub", list(el.cols), {x.sql.lower() for x in el.cols})


def _per_element(c: Compiler, el: _Elems, compile_: Callable[[ScalarCompiler], exp.Expr],
                 env: Env) -> tuple[exp.Expr, str]:
    """An expression compiled against the subtable, as the body of a lambda over one element
    (its parameter name returned too). Windows, aggregates and subqueries cannot be in a
    lambda: those shapes take the general path."""
    sc = ScalarCompiler(c, _sub_rel(el), env)
    body = compile_(sc)
    p = fresh("e")
    return _bind_fields(el, body, ref(p)), p


def _bind_fields(el: _Elems, body: exp.Expr, elem: exp.Expr) -> exp.Expr:
    for node in body.walk():
        if isinstance(node, (exp.Window, exp.AggFunc, exp.Subquery, exp.Select)):
            raise _NoFast
    fields = {f.lower() for f in el.fields}

    def sub(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in fields:
            return elem.copy() if el.bare else field(elem.copy(), node.name)
        return node
    return body.transform(sub)


def _sorted(c: Compiler, el: _Elems, key: A.SortKey, env: Env) -> exp.Expr:
    """The element list in the order of one sort key (nulls as Kusto places them)."""
    nulls_first = key.nulls_first if key.nulls_first is not None else not key.desc
    order, nulls = s("DESC" if key.desc else "ASC"), s("NULLS FIRST" if nulls_first
                                                        else "NULLS LAST")
    lst = col(el.lst)

    def compile_key(sc: ScalarCompiler) -> exp.Expr:
        a = sc.compile(key.expr)
        return to_string(a) if a.type == "dynamic" else a.sql
    body, p = _per_element(c, el, compile_key, env)
    if el.bare and isinstance(body, exp.Column) and body.name == p:
        return fn("list_sort", lst, order, nulls)  # by the element itself
    keys = fn("list_transform", lst, lambda_([p], body))
    return fn("list_select", lst.copy(), fn("list_grade_up", keys, order, nulls))


def _first(c: Compiler, el: _Elems, key: A.SortKey, env: Env, taken: set[str],
           pre: list[exp.Expr]) -> exp.Expr:
    """``top 1 by key``: the element with the least (greatest) key, found with
    ``list_min``/``list_max`` and ``list_position`` instead of sorting the list."""
    nulls_first = key.nulls_first if key.nulls_first is not None else not key.desc
    extreme = "list_max" if key.desc else "list_min"
    lst = col(el.lst)

    types: list[str] = []

    def compile_key(sc: ScalarCompiler) -> exp.Expr:
        a = sc.compile(key.expr)
        types.append(a.type)
        return to_string(a) if a.type == "dynamic" else a.sql
    body, p = _per_element(c, el, compile_key, env)
    nulls_first = nulls_first and types[0] not in ("string", "dynamic")  # never null

    def has_null(values: exp.Expr) -> exp.Expr:
        return exp.LT(this=fn("list_count", values), expression=fn("len", values.copy()))
    if el.bare and isinstance(body, exp.Column) and body.name == p:
        best: exp.Expr = fn(extreme, lst.copy())
        if nulls_first:
            best = exp.Case(ifs=[exp.If(this=has_null(lst.copy()), true=exp.Null())],
                            default=best)
        chosen: exp.Expr = exp.Array(expressions=[best])
    else:
        keys = c.namer.physical("__mvkeys", taken)
        pre.append(alias(fn("list_transform", lst.copy(), lambda_([p], body)), keys))
        pos = fn("list_position", col(keys), fn(extreme, col(keys)))
        if nulls_first:
            pos = exp.Case(ifs=[exp.If(this=has_null(col(keys)), true=fn(
                "list_position", col(keys), exp.Null()))], default=pos)
        chosen = fn("list_select", lst.copy(), exp.Array(expressions=[pos]))
    return exp.Case(ifs=[exp.If(this=fn("len", lst.copy()).eq(n(0)), true=lst.copy())],
                    default=chosen)


def _reshape(c: Compiler, el: _Elems, op: A.Extend | A.Project, env: Env,
             taken: set[str]) -> exp.Expr:
    """``extend``/``project`` as one new struct per element. A record column kept as it is
    stays a record column."""
    rel = _sub_rel(el)
    sc = ScalarCompiler(c, rel, env)
    p = fresh("e")
    values: dict[str, exp.Expr] = {}  # element fields of the result
    cols = list(el.cols) if isinstance(op, A.Extend) else []
    if isinstance(op, A.Extend):
        for f in el.fields:
            values[f] = ref(f)
    names_seen: list[str] = []
    for ne in op.exprs:
        if isinstance(ne.expr, A.Star) or len(ne.names) > 1:
            raise _NoFast
        if isinstance(op, A.Extend) and ({x.name for x in _names(ne.expr)} & set(names_seen)):
            raise _NoFast  # uses a column this same extend defines
        a = sc.compile(ne.expr)
        names = [x.name for x in cols]
        name = ne.names[0] if ne.names else c.default_name(ne.expr, a, names, None)
        if isinstance(op, A.Project) and name in names:
            raise _NoFast
        src = a.sql
        if isinstance(src, exp.Column) and not src.table and \
                src.name.lower() not in {f.lower() for f in el.fields} and a.json is None:
            new = Col(name, a.type, src.name)  # a record column, unchanged
        else:
            phys = c.namer.physical(name, taken)
            values[phys] = src
            new = Col(name, a.type, phys)
        names_seen.append(name)
        idx = next((i for i, x in enumerate(cols) if x.name == name), None)
        if idx is None:
            cols.append(new)
        else:
            cols[idx] = new
    fields = [x.sql for x in cols if x.sql in values]
    body = struct(**{f: values[f] for f in fields}) if fields else struct(__none=exp.null())
    body = _bind_fields(el, body, ref(p))
    el.cols, el.fields, el.bare = cols, fields or ["__none"], False
    return fn("list_transform", col(el.lst), lambda_([p], body))


_N = TypeVar("_N")


def _names(e: A.Expr) -> list[A.Name]:
    return _nodes(e, A.Name)


def _nodes(e: Any, kind: type[_N]) -> list[_N]:
    """Every node of type ``kind`` in a syntax tree, in document order."""
    out: list[_N] = []

    def walk(x: Any) -> None:
        if isinstance(x, kind):
            out.append(x)
        if isinstance(x, list):
            for v in x:
                walk(v)
        elif hasattr(x, "__dataclass_fields__"):
            for f in x.__dataclass_fields__:
                if f != "pos":
                    walk(getattr(x, f))
    walk(e)
    return out


def _summarize(c: Compiler, el: _Elems, op: A.Summarize, env: Env, taken: set[str]) -> None:
    """``summarize`` without ``by``: each aggregate becomes a list function of the elements."""
    if op.by or op.params or not all(_listable(ne.expr) for ne in op.aggs):
        raise _NoFast
    agg = ScalarCompiler(c, _sub_rel(el), env, aggregate=True)
    names: list[str] = []
    row: list[tuple[Col, exp.Expr]] = []
    for ne in op.aggs:
        e = ne.expr
        if not isinstance(e, A.Call) or len(ne.names) > 1 or \
                ALIASES.get(e.name, e.name) in MULTI or e.name == "percentiles":
            raise _NoFast
        a = agg.compile(e)
        name = ne.names[0] if ne.names else _agg_name(c, e, a, names)
        if name in names:
            if ne.names:
                raise _NoFast
            name = unique_name(name, names)
        names.append(name)
        phys = c.namer.physical(name, taken)
        row.append((Col(name, a.type, phys), _listify(el, a.sql)))
    el.cols, el.row = [x for x, _ in row], row


def _listify(el: _Elems, e: exp.Expr) -> exp.Expr:
    """An aggregate expression over the subtable's rows as list functions of the element
    list: ``sum(x)`` becomes ``list_sum(list_transform(l, e -> x))``, a ``FILTER`` a
    ``list_filter``; any other aggregate takes the general path."""
    lst = col(el.lst)

    def values(x: exp.Expr, cond: exp.Expr | None) -> exp.Expr:
        src: exp.Expr = lst.copy()
        if cond is not None:
            p = fresh("e")
            src = fn("list_filter", src, lambda_([p], _bind_fields(el, cond, ref(p))))
        p = fresh("e")
        return fn("list_transform", src, lambda_([p], _bind_fields(el, x, ref(p))))

    def rows(cond: exp.Expr | None) -> exp.Expr:
        if cond is None:
            return lst.copy()
        p = fresh("e")
        return fn("list_filter", lst.copy(), lambda_([p], _bind_fields(el, cond, ref(p))))

    def one(node: exp.Expr, cond: exp.Expr | None) -> exp.Expr:
        kind = _agg_kind(node)
        args = node.expressions if isinstance(node, exp.Anonymous) else [node.this]
        if kind is None or len(args) != 1 or node.args.get("order") is not None:
            raise _NoFast
        arg = args[0]
        distinct = isinstance(arg, exp.Distinct)
        if distinct:
            if len(arg.expressions) != 1 or kind not in ("count", "list"):
                raise _NoFast
            arg = arg.expressions[0]
        if kind == "count":
            if isinstance(arg, exp.Star):
                return fn("len", rows(cond))
            if distinct:
                return fn("len", fn("list_distinct", values(arg, cond)))
            return fn("list_count", values(arg, cond))
        if kind == "count_if":
            return fn("len", rows(arg if cond is None else exp.and_(cond, arg)))
        if kind == "list":
            v = values(arg, cond)
            return fn("list_distinct", v) if distinct else v
        if kind == "any_value":
            y = fresh("y")
            return fn("list_extract", fn("list_filter", values(arg, cond), lambda_(
                [y], exp.Not(this=exp.Is(this=ref(y), expression=exp.Null())))), n(1))
        return fn(_LIST_AGGS[kind], values(arg, cond))

    def sub(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Filter) and isinstance(node.expression, exp.Where):
            inner = node.this
            if isinstance(inner, exp.IgnoreNulls):
                inner = inner.this
            return one(inner, node.expression.this)
        if isinstance(node, exp.IgnoreNulls) and _agg_kind(node.this) is not None:
            return one(node.this, None)
        if isinstance(node, (exp.AggFunc, exp.Window)) or _agg_kind(node) is not None:
            return one(node, None)
        return node
    return _check_outside(el, e.copy().transform(sub))


_AGG_CLASSES: dict[type[exp.Expr], str] = {
    exp.Count: "count", exp.CountIf: "count_if", exp.ArrayAgg: "list", exp.Sum: "sum",
    exp.Min: "min", exp.Max: "max", exp.Avg: "avg", exp.AnyValue: "any_value"}
_AGG_NAMES = {"count", "count_if", "countif", "list", "array_agg", "sum", "min", "max", "avg",
              "mean", "any_value"}


def _agg_kind(node: exp.Expr) -> str | None:
    """Which aggregate of :func:`_listify` a node calls, if any."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name not in _AGG_NAMES:
            return None
        return {"countif": "count_if", "array_agg": "list", "mean": "avg"}.get(name, name)
    return _AGG_CLASSES.get(type(node))


def _check_outside(el: _Elems, e: exp.Expr) -> exp.Expr:
    """An aggregate's result must not read an element column outside a list function."""
    fields = {f.lower() for f in el.fields}
    for node in e.walk():
        if isinstance(node, (exp.Window, exp.Subquery, exp.Select)):
            raise _NoFast
    for node in e.walk():
        if isinstance(node, exp.Column) and not node.table and \
                node.name.lower() in fields and node.find_ancestor(exp.Lambda) is None:
            raise _NoFast
    return e


def result_columns(rel: Rel, op: A.MvApply, sub: list[Col]) -> list[tuple[str, Col, str]]:
    """mv-apply's result schema, as Kusto.Language's binder gives it: (name, column, side
    ``base`` or ``sub``) for the input columns not expanded in place, then the subquery's
    (one of the subquery's replaces an input column of its name, in its place)."""
    applied = {ne.expr.name for ne, _ in op.columns
               if not ne.names and isinstance(ne.expr, A.Name)}
    result: list[tuple[str, Col, str]] = [(x.name, x, "base") for x in rel.cols
                                          if x.name not in applied]
    for x in sub:
        for i, (name, _, _) in enumerate(result):
            if name == x.name:
                result[i] = (x.name, x, "sub")
                break
        else:
            result.append((x.name, x, "sub"))
    return result


def _emit(c: Compiler, rel: Rel, op: A.MvApply, cur: Rel, el: _Elems) -> Rel:
    """The result: the record's columns not expanded in place, then the subquery's."""
    result = result_columns(rel, op, el.cols)
    fields = {f.lower() for f in el.fields}
    row = {x.sql: v for x, v in el.row} if el.row is not None else {}
    src = cur
    elem: exp.Expr = exp.Null()
    if el.row is None:
        # unnest drops the records whose list is empty (cheaper than a filter on its length,
        # which DuckDB would push below the list's computation and so compute it twice)
        taken = set(cur.physical) | {el.lst.lower()}
        e_col = c.namer.physical("__mve", taken)
        src = c.add(exp.select(exp.Star(), alias(fn("unnest", col(el.lst)), e_col)).from_(
            c.src(cur), copy=False), rel.cols, physical=taken)
        elem = col(e_col)
    otaken: set[str] = set()
    sels: list[exp.Expr] = []
    out_cols: list[Col] = []
    for name, x, side in result:
        if side == "sub" and x.sql in row:
            value = row[x.sql]
        elif side == "sub" and x.sql.lower() in fields:
            value = elem.copy() if el.bare else field(elem.copy(), x.sql)
        else:
            value = col(x.sql)
        phys = c.namer.physical(name, otaken)
        sels.append(alias(value, phys))
        out_cols.append(Col(name, x.type, phys))
    return c.add(exp.select(*sels).from_(c.src(src), copy=False), out_cols, physical=otaken)


_FAST_AGGREGATES = {"count", "countif", "sum", "min", "max", "avg", "make_list", "make_set",
                    "dcount", "take_any", "any", "make_list_if", "make_set_if", "sumif",
                    "avgif", "minif", "maxif"}
"""The aggregates :func:`_listify` may turn into list functions (it checks their SQL too)."""


def _listable(e: A.Expr) -> bool:
    """Every aggregate called in ``e`` is one of :data:`_FAST_AGGREGATES`."""
    for x in _calls(e):
        f = FUNCTIONS.get(ALIASES.get(x.name, x.name))
        if f is None or (f.kind != "scalar" and x.name not in _FAST_AGGREGATES
                         and f.name not in _FAST_AGGREGATES):
            return False
    return True


def _calls(e: Any) -> list[A.Call]:
    return _nodes(e, A.Call)
