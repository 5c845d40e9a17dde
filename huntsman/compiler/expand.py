"""``mv-expand`` (arrays and bags, lockstep, ``to typeof``, ``with_itemindex``, ``limit``) and
``parse``/``parse-where`` (``kind=simple``, ``regex`` and ``relaxed``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, Rel
from huntsman.kql import ast as A
from huntsman.kql.functions.convert import convert, json_value, to_string
from huntsman.kql.functions.sql import (
    Arg,
    alias,
    and_,
    case,
    cast,
    coalesce,
    col,
    fn,
    lambda_,
    n,
    s,
)

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler


def _as_list(v: exp.Expr, bagexpansion: str) -> exp.Expr:
    """A dynamic value as a list of JSON elements (a bag becomes one-key bags or pairs)."""
    jt = fn("json_type", v)
    key_path = fn("concat", s('$."'), fn("replace", exp.column("k"), s('"'), s('\\"')), s('"'))
    if bagexpansion == "array":
        elem = fn("json_array", exp.column("k"), fn("json_extract", v, key_path))
    else:
        elem = fn("json_object", exp.column("k"), fn("json_extract", v, key_path))
    bag = fn("list_transform", fn("json_keys", v), lambda_(["k"], elem))
    # arrays, the common case, cost one parse: the cast fails (null) for anything else
    other = case([(jt.eq(s("OBJECT")), bag)], exp.Array(expressions=[v.copy()]))
    return coalesce(cast(v.copy(), "JSON[]", safe=True), other)


def _text_fast_path(a: Arg) -> exp.Expr:
    """For ``to typeof(string)``: an array's elements as text in one pass, with a ``[*]`` path
    on the value's own JSON root (``json_extract_string(Fields, '$.Tags[*]')``, no
    intermediate JSON value and no cast per element). Empty for anything but a non-empty
    array."""
    root, path = a.json if a.json is not None else (a.sql, "$")
    return fn("json_extract_string", root.copy(), s(path + "[*]"))


def _as_text_list(fast: exp.Expr, v: exp.Expr, bagexpansion: str) -> exp.Expr:
    """The elements as text: the fast path's (a column computed one step earlier, so that it
    is evaluated once) unless it is empty; then the general path, element by element (a bag,
    a scalar, null, an empty array)."""
    slow = fn("list_transform", _as_list(v, bagexpansion), lambda_(
        ["x"], fn("json_extract_string", exp.column("x"), s("$"))))
    return case([(exp.GT(this=fn("len", fast), expression=n(0)), fast.copy())], slow)


def compile_mv_expand(c: Compiler, rel: Rel, op: A.MvExpand, env: Env) -> Rel:
    sc = ScalarCompiler(c, rel, env)
    cols = list(rel.cols)
    taken = set(rel.physical)
    lists: list[tuple[str, exp.Expr]] = []
    targets: list[tuple[int | None, str, str | None]] = []  # (index in cols, name, to-type)
    limit = sc.compile(op.limit).sql if op.limit is not None else None
    pre: list[exp.Expr] = []  # fast-path lists, one step before the unnest
    for ne, to_type in op.columns:
        a = sc.compile(ne.expr)
        if ne.names:
            name = ne.names[0]
        elif isinstance(ne.expr, A.Name):
            name = a.name or ne.expr.name
        else:
            name = c.default_name(ne.expr, a, [x.name for x in cols], None)
        if a.type != "dynamic":
            raise c.semantic_error(f"mv-expand: '{name}' is of type {a.type}; it expands only "
                                   f"dynamic arrays or property bags", ne.pos)
        v = json_value(a)
        if to_type == "string":
            fast = c.namer.physical("__mvtext", taken)
            pre.append(alias(_text_fast_path(a), fast))
            lst = _as_text_list(col(fast), v, op.bagexpansion)
        else:
            lst = _as_list(v, op.bagexpansion)
        if limit is not None:
            lst = fn("list_slice", lst, n(1), limit)
        phys = c.namer.physical(name, taken)
        lists.append((phys, lst))
        idx = next((i for i, x in enumerate(cols) if x.name == name), None)
        targets.append((idx, name, to_type))
    if pre:
        rel = c.add(exp.select(exp.Star(), *pre).from_(c.src(rel), copy=False), cols, rel,
                    set(taken))
    sels: list[exp.Expr] = [exp.Star()]
    for phys, lst in lists:
        sels.append(alias(fn("unnest", lst), phys))
    index_phys = None
    if op.itemindex:
        index_phys = c.namer.physical(op.itemindex, taken)
        longest = fn("greatest", *[fn("len", lst) for _, lst in lists]) if len(lists) > 1 \
            else fn("len", lists[0][1])
        sels.append(alias(fn("unnest", fn("range", n(0), longest)), index_phys))
    step = c.add(exp.select(*sels).from_(c.src(rel), copy=False), cols, rel, set(taken))
    step.order = None
    # second step: convert the expanded JSON elements to their requested types
    conv: list[exp.Expr] = [exp.Star()]
    out_cols = list(cols)
    for (phys, _), (idx, name, to_type) in zip(lists, targets, strict=True):
        t = to_type or "dynamic"
        raw = Arg(col(phys), "dynamic")
        if t == "string":  # already text (see _as_text_list)
            cphys = c.namer.physical(name, taken)
            conv.append(alias(coalesce(col(phys), s("")), cphys))
            new = Col(name, t, cphys)
        elif t == "dynamic":
            new = Col(name, "dynamic", phys)
        else:
            cphys = c.namer.physical(name, taken)
            conv.append(alias(convert(raw, t), cphys))
            new = Col(name, t, cphys)
        if idx is None:
            out_cols.append(new)
        else:
            out_cols[idx] = new
    if index_phys and op.itemindex:
        out_cols.append(Col(op.itemindex, "long", index_phys))
    if len(conv) == 1:
        return Rel(step.source, out_cols, step.physical)
    return c.add(exp.select(*conv).from_(c.src(step), copy=False), out_cols, None, set(taken))


_TYPE_REGEX = {
    "long": r"(\-?\d+)", "int": r"(\-?\d+)",
    "real": r"(\-?\d+(?:\.\d*)?(?:[eE][+\-]?\d+)?)",
    "decimal": r"(\-?\d+(?:\.\d*)?)", "bool": r"(true|false|True|False|TRUE|FALSE|0|1)",
}


def parse_regex(op: A.ParseOp) -> tuple[str, list[tuple[str, str]]]:
    """The RE2 pattern for a parse pattern and its capture columns (name, type).

    ``kind=relaxed`` matches like ``simple`` but captures every typed column as text (a value
    that does not convert becomes null instead of failing the match)."""
    parts: list[str] = []
    captures: list[tuple[str, str]] = []
    pattern = op.pattern
    relaxed = op.kind == "relaxed"
    for i, p in enumerate(pattern):
        last = i == len(pattern) - 1
        if isinstance(p, str):
            parts.append(p if op.kind == "regex" else re.escape(p))
        elif p[0] == "*":
            if last and op.kind != "regex":
                continue  # the match is not anchored at the end: a final ".*" only costs time
            parts.append(".*?" if not last else ".*")
        else:
            _, name, t = p
            captures.append((name, t))
            if t in _TYPE_REGEX:
                # relaxed: the typed text if it is there, else anything (converted to null)
                parts.append(_TYPE_REGEX[t] if not relaxed else
                             "(" + _TYPE_REGEX[t][1:-1] + "|" + (".*" if last else ".*?") + ")")
            elif (last and op.kind != "regex") or op.kind == "regex":
                parts.append("(.*)" if op.kind == "regex" or last else "(.*?)")
            else:
                parts.append("(.*?)")
    flags = ""
    if op.flags:
        flags = "(?" + "".join(f for f in op.flags if f in "imsU") + ")"
    anchor = "" if op.kind == "regex" else "^"
    end = "$" if pattern and not isinstance(pattern[-1], str) and op.kind != "regex" and \
        pattern[-1][0] == "col" and (pattern[-1][2] == "string" or relaxed) else ""
    return flags + anchor + "".join(parts) + end, captures


def compile_parse(c: Compiler, rel: Rel, op: A.ParseOp, env: Env) -> Rel:
    """``parse``/``parse-where``: one regex match per row; the typed columns are converted and a
    conversion failure fails the whole match (except with ``kind=relaxed``, where only that
    column is null). ``parse-where`` keeps only the rows that matched."""
    sc = ScalarCompiler(c, rel, env)
    src = sc.compile(op.source)
    text = to_string(src) if src.type != "string" else src.sql
    regex, captures = parse_regex(op)
    if not captures and not op.where:
        return rel
    taken = set(rel.physical)
    group_names = [f"g{i}" for i in range(len(captures))]
    struct_phys = c.namer.physical("__parsed", taken)
    matched_phys = c.namer.physical("__matched", taken)
    # regexp_extract gives "" for every group of a text that does not match: with only string
    # captures (and no parse-where) the match flag is not needed, and the regex runs once
    need_flag = op.where or any(t != "string" for _, t in captures)
    sels0: list[exp.Expr] = [exp.Star()]
    if need_flag:
        sels0.append(alias(fn("regexp_matches", text, s(regex)), matched_phys))
    if captures:
        sels0.append(alias(fn("regexp_extract", text.copy(), s(regex),
                              exp.Array(expressions=[s(g) for g in group_names])), struct_phys))
    step = c.add(exp.select(*sels0).from_(c.src(rel), copy=False), rel.cols, rel, set(taken))
    # the typed values (null when the text does not convert)
    typed: dict[str, str] = {}
    conv: list[exp.Expr] = [exp.Star()]
    for (_name, t), g in zip(captures, group_names, strict=True):
        if t == "string":
            continue
        raw = fn("struct_extract", col(struct_phys), s(g))
        phys = c.namer.physical("__typed", taken)
        conv.append(alias(convert(Arg(raw, "string"), t), phys))
        typed[g] = phys
    if typed:
        step = c.add(exp.select(*conv).from_(c.src(step), copy=False), rel.cols, step,
                     set(taken))
    ok: exp.Expr = col(matched_phys)
    if typed and op.kind != "relaxed":
        ok = and_(ok, *[exp.Not(this=exp.Is(this=col(p), expression=exp.Null()))
                        for p in typed.values()])
    cols = list(rel.cols)
    sels: list[exp.Expr] = [exp.Star()]
    for (name, t), g in zip(captures, group_names, strict=True):
        if t == "string":
            raw = fn("struct_extract", col(struct_phys), s(g))
            v: exp.Expr = case([(ok.copy(), raw)], s("")) if need_flag else coalesce(raw, s(""))
        else:
            v = case([(ok.copy(), col(typed[g]))], cast(exp.Null(), _sql_type(t)))
        phys = c.namer.physical(name, taken)
        sels.append(alias(v, phys))
        new = Col(name, t, phys)
        for i, x in enumerate(cols):
            if x.name == name:
                cols[i] = new
                break
        else:
            cols.append(new)
    out = exp.select(*sels).from_(c.src(step), copy=False)
    if op.where:
        out = out.where(ok.copy(), copy=False)
    return c.add(out, cols, step, set(taken))


def _sql_type(t: str) -> str:
    from huntsman.kql.types import SQL_TYPES
    return SQL_TYPES[t]
