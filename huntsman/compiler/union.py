"""``union``: columns matched by name, ``kind=outer`` by default, wildcards, ``withsource``."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from huntsman.compiler.scope import (
    Col,
    Env,
    FunctionBinding,
    Rel,
    RelBinding,
    TabularBinding,
    unique_name,
)
from huntsman.errors import KqlSemanticError
from huntsman.kql import ast as A
from huntsman.kql.functions.sql import alias, col, literal, s

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler


def _expand(c: Compiler, t: A.Tabular, env: Env, fuzzy: bool,
            index: int) -> list[tuple[str, Rel]]:
    if isinstance(t, A.TableRef) and "*" in t.name:
        names = [n for n in c.table_names() if fnmatch.fnmatchcase(n, t.name)]
        names += [n for n in _let_names(env) if fnmatch.fnmatchcase(n, t.name)]
        return [(n, c.tabular(A.TableRef(n, pos=t.pos), env)) for n in sorted(set(names))]
    label = t.name if isinstance(t, A.TableRef) else f"union_arg{index}"
    try:
        rel = c.tabular(t, env)
        return [(rel.alias or label, rel)]
    except KqlSemanticError:
        if fuzzy:
            return []
        raise


def _let_names(env: Env) -> list[str]:
    out: list[str] = []
    e: Env | None = env
    while e is not None:
        out += [k for k, v in e.names.items() if isinstance(v, (TabularBinding, RelBinding))
                or (isinstance(v, FunctionBinding) and v.fn.view and not v.fn.params)]
        e = e.parent
    return out


def compile_union(c: Compiler, first: list[tuple[str, Rel]], tables: list[A.Tabular],
                  kind: str, withsource: str | None, fuzzy: bool, env: Env, node: Any) -> Rel:
    branches = [(rel.alias or label, rel) for label, rel in first]
    for i, t in enumerate(tables):
        branches += _expand(c, t, env, fuzzy, i + len(first))
    if not branches:
        raise c.semantic_error("union: no table matched", getattr(node, "pos", None))
    # output schema: by name; same name with different types gets a type suffix (x_long)
    types_by_name: dict[str, list[str]] = {}
    order: list[str] = []
    for _, rel in branches:
        for x in rel.cols:
            if x.name not in types_by_name:
                types_by_name[x.name] = []
                order.append(x.name)
            if x.type not in types_by_name[x.name]:
                types_by_name[x.name].append(x.type)
    out_names: list[tuple[str, str, str]] = []  # (output name, source name, type)
    # a type-suffixed name that another column already has gets a number (x_long1)
    used = [name for name in order if len(types_by_name[name]) == 1]
    for name in order:
        ts = types_by_name[name]
        if kind == "inner" and not all(rel.col(name) is not None for _, rel in branches):
            continue
        if len(ts) == 1:
            out_names.append((name, name, ts[0]))
        else:
            for ktype in ts:
                out = unique_name(f"{name}_{ktype}", used)
                used.append(out)
                out_names.append((out, name, ktype))
    taken: set[str] = set()
    cols: list[Col] = []
    if withsource:
        cols.append(Col(withsource, "string", c.namer.physical(withsource, taken)))
    for out, _, ktype in out_names:
        cols.append(Col(out, ktype, c.namer.physical(out, taken)))
    selects: list[exp.Expr] = []
    for label, rel in branches:
        sels: list[exp.Expr] = []
        if withsource:
            sels.append(alias(s(label), cols[0].sql))
        for (_, src, ktype), oc in zip(out_names, cols[1:] if withsource else cols,
                                       strict=True):
            found = rel.col(src)
            v = col(found.sql) if found is not None and found.type == ktype \
                else literal(None, ktype)
            sels.append(alias(v, oc.sql))
        selects.append(exp.select(*sels).from_(c.src(rel), copy=False))
    union: exp.Expr = selects[0]
    for sel in selects[1:]:
        union = exp.Union(this=union, expression=sel, distinct=False)
    return c.add(union, cols)
