"""``search`` and ``find``: a predicate over many tables and every column.

Search predicates may hold bare string *terms*: ``"err"`` is ``* has "err"``, ``"err*"``
``hasprefix``, ``"*err"`` ``hassuffix``, ``"*err*"`` ``contains``, ``"a*b"`` the regex
``\\ba.*b\\b``, ``Col:"err"`` limits a term to one column and ``search *`` matches everything.
``kind=case_sensitive`` makes every string comparison case-sensitive.

``search`` returns ``$table`` (the source table's name) and the columns of its sources unified
by name as ``union`` does. ``find`` returns ``source_`` (or its ``withsource=`` name) and, with
``project-smart`` (the default), the columns common to the tables it searched plus the columns
the predicate names, the rest packed into a ``pack_`` bag; with ``project`` the listed columns
(``Col:type`` to convert) and ``pack_all()`` for the rest. Both follow Kusto.Language's binder.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, FunctionBinding, Rel
from huntsman.compiler.union import _let_names, compile_union
from huntsman.kql import ast as A
from huntsman.kql.functions.convert import convert, to_string
from huntsman.kql.functions.scalar import dynamic_element
from huntsman.kql.functions.sql import Arg, alias, col, fn, literal, or_, s

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

CS_OPS = {"has", "!has", "hasprefix", "!hasprefix", "hassuffix", "!hassuffix", "contains",
          "!contains", "startswith", "!startswith", "endswith", "!endswith"}


def case_sensitive(e: A.Expr) -> A.Expr:
    """The predicate with every case-insensitive string operator made case-sensitive."""
    if isinstance(e, A.Binary):
        op = e.op
        if op in CS_OPS:
            op = op + "_cs"
        elif op == "=~":
            op = "=="
        elif op == "!~":
            op = "!="
        return A.Binary(op, case_sensitive(e.left), case_sensitive(e.right), pos=e.pos)
    if isinstance(e, A.Call) and e.name == "not":
        return A.Call(e.name, [case_sensitive(a) for a in e.args], e.arg_names, pos=e.pos)
    if isinstance(e, A.InExpr) and e.op in ("in~", "!in~"):
        return A.InExpr(e.op[:-1], e.left, e.items, e.subquery, pos=e.pos)
    return e


def term_operator(term: str) -> tuple[str, str]:
    """The string operator and needle of a search term (``"err*"`` → hasprefix "err")."""
    starts, ends = term.startswith("*"), term.endswith("*")
    core = term.strip("*")
    if "*" in core:
        return "matches regex", r"\b" + ".*".join(re.escape(p) for p in core.split("*")) + r"\b"
    if starts and ends:
        return "contains", core
    if starts:
        return "hassuffix", core
    if ends:
        return "hasprefix", core
    return "has", core


def term_match(sc: ScalarCompiler, term: A.SearchTerm, cs: bool) -> exp.Expr:
    """A search term over one column or over every column of the row scope."""
    if term.term.strip("*") == "":
        return exp.true()
    op, needle = term_operator(term.term)
    if op == "matches regex":
        if not cs:
            needle = "(?i)" + needle
    elif cs:
        op += "_cs"
    rel = sc.rel
    if term.column is not None:
        targets = [sc.compile(A.Name(term.column, pos=term.pos))]
    else:
        targets = [Arg(col(c.sql, sc.table_alias), c.type) for c in (rel.cols if rel else [])]
    needle_arg = Arg(s(needle), "string", needle)
    hits = []
    for t in targets:
        text = t if t.type == "string" else Arg(to_string(t), "string")
        hits.append(sc.string_match(op, text, needle_arg, term))
    return or_(*hits) if hits else exp.false()


def source_label(rel: Rel) -> str:
    if rel.alias:
        return rel.alias
    return rel.source if not rel.source.startswith("__") else "union_arg0"


def _predicate(c: Compiler, rel: Rel, e: A.Expr, kind: str, env: Env) -> exp.Expr:
    cs = kind == "case_sensitive"
    sc = ScalarCompiler(c, rel, env, window_ok=True)
    sc.search_cs = cs
    return sc.predicate(case_sensitive(e) if cs else e)


def compile_search(c: Compiler, rel: Rel, op: A.Search, env: Env) -> Rel:
    pred = _predicate(c, rel, op.predicate, op.kind, env)
    taken = set(rel.physical)
    tcol = Col("$table", "string", c.namer.physical("__table", taken))
    sel = exp.select(alias(s(source_label(rel)), tcol.sql), exp.Star()).from_(
        c.src(rel), copy=False).where(pred, copy=False)
    return c.add(sel, [tcol, *rel.cols], rel, set(taken))


def compile_search_source(c: Compiler, node: A.SearchSource, env: Env) -> Rel:
    tables = node.tables or [A.TableRef(name, pos=node.pos) for name in c.table_names()]
    rel = compile_union(c, [], tables, "outer", "$table", False, env, node)
    pred = _predicate(c, rel, node.predicate, node.kind, env)
    sel = exp.select(exp.Star()).from_(c.src(rel), copy=False).where(pred, copy=False)
    return c.add(sel, rel.cols, rel, rel.physical)


# ---------------------------------------------------------------- find


def _walk(e: object, names: list[str]) -> bool:
    """Collects the column names the predicate uses; True when it reads every column."""
    implicit = False
    if isinstance(e, A.SearchTerm):
        if e.column is not None:
            names.append(e.column)
            return False
        return True
    if isinstance(e, A.Star):
        return True
    if isinstance(e, A.Name):
        names.append(e.name)
        return False
    if isinstance(e, A.Expr):
        for v in vars(e).values():
            if isinstance(v, list):
                for x in v:
                    implicit |= _walk(x, names)
            else:
                implicit |= _walk(v, names)
    return implicit


def _find_tables(c: Compiler, node: A.Find, env: Env) -> list[tuple[str, Rel]]:
    out: list[tuple[str, Rel]] = []
    if node.tables is not None:
        sources = node.tables
    else:
        # every table, and the views (`let v = view () {...}`) in scope
        views = [n for n in _let_names(env) if isinstance(env.lookup(n), FunctionBinding)]
        sources = [A.TableRef(name, pos=node.pos) for name in [*c.table_names(), *views]]
    for i, t in enumerate(sources):
        if isinstance(t, A.TableRef) and "*" in t.name:
            names = [n for n in c.table_names() if fnmatch.fnmatchcase(n, t.name)]
            names += [n for n in _let_names(env) if fnmatch.fnmatchcase(n, t.name)]
            for name in sorted(set(names)):
                out.append((name, c.tabular(A.TableRef(name, pos=t.pos), env)))
            continue
        rel = c.tabular(t, env)
        label = t.name if isinstance(t, A.TableRef) else (rel.alias or f"union_arg{i}")
        out.append((label, rel))
    return out


def compile_find(c: Compiler, node: A.Find, env: Env) -> Rel:
    tables = _find_tables(c, node, env)
    if not tables:
        raise c.semantic_error("find: no table to search", node.pos)
    refs: list[str] = []
    implicit = _walk(node.predicate, refs)
    known = {x.name for _, r in tables for x in r.cols}
    refs = list(dict.fromkeys(r for r in refs if r in known))
    if len(tables) == 1 or implicit:
        used = tables
    else:
        used = [(label, r) for label, r in tables if any(r.col(n) for n in refs)]
    if not used:
        raise c.semantic_error("find: no table has a column that the predicate uses",
                               node.pos)
    types: dict[str, str] = {}
    for _, r in used:
        for x in r.cols:
            types.setdefault(x.name, x.type)
    source = node.withsource or "source_"
    # output columns (name, type)
    outs: list[tuple[str, str]] = []
    pack = False
    if node.project is None:
        first = used[0][1]
        for x in first.cols:
            if all((r.col(x.name) is not None and r.col(x.name).type == x.type)  # type: ignore[union-attr]
                   for _, r in used[1:]):
                outs.append((x.name, x.type))
        for name in refs:
            if name not in [o for o, _ in outs]:
                outs.append((name, types[name]))
        names = {o for o, _ in outs}
        pack = any(x.name not in names for _, r in used for x in r.cols)
    else:
        for name, t in node.project:
            if name not in types:
                raise c.semantic_error(f"find: no table has a column named '{name}'", node.pos)
            outs.append((name, t or types[name]))
        pack = node.pack
    if node.project_away:
        if node.project_away == ["*"]:
            outs = []
            pack = pack and node.pack
        else:
            outs = [o for o in outs if o[0] not in node.project_away]
    taken: set[str] = set()
    cols = [Col(source, "string", c.namer.physical(source, taken))]
    for name, t in outs:
        cols.append(Col(name, t, c.namer.physical(name, taken)))
    if pack:
        cols.append(Col("pack_", "dynamic", c.namer.physical("pack_", taken)))
    selects: list[exp.Expr] = []
    out_names = {o for o, _ in outs}
    for label, r in used:
        # missing referenced columns read as nulls
        missing = [n for n in refs if r.col(n) is None]
        scope = r
        if missing:
            mtaken = set(r.physical)
            extra = [Col(n, types[n], c.namer.physical(n, mtaken)) for n in missing]
            scope = c.add(exp.select(exp.Star(), *[alias(literal(None, x.type), x.sql)
                                                   for x in extra]).from_(c.src(r), copy=False),
                          r.cols + extra, r, mtaken)
        pred = _predicate(c, scope, node.predicate, "default", env)
        sels: list[exp.Expr] = [alias(s(label), cols[0].sql)]
        for oc in cols[1:]:
            if oc.name == "pack_" and pack and oc is cols[-1]:
                rest = [x for x in r.cols if x.name not in out_names]
                parts: list[exp.Expr] = []
                for x in rest:
                    parts += [s(x.name), dynamic_element(Arg(col(x.sql), x.type))]
                sels.append(alias(fn("json_object", *parts), oc.sql))
                continue
            found = r.col(oc.name)
            if found is None:
                v = literal(None, oc.type)
            elif found.type == oc.type:
                v = col(found.sql)
            else:
                try:
                    v = convert(Arg(col(found.sql), found.type), oc.type)
                except ValueError:
                    v = literal(None, oc.type)
            sels.append(alias(v, oc.sql))
        selects.append(exp.select(*sels).from_(c.src(scope), copy=False).where(pred,
                                                                              copy=False))
    union: exp.Expr = selects[0]
    for sel in selects[1:]:
        union = exp.Union(this=union, expression=sel, distinct=False)
    return c.add(union, cols)
