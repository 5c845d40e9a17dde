"""``join`` (every kind, ``innerunique`` by default) and ``lookup``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scope import Col, Env, Rel, unique_name
from huntsman.kql import ast as A
from huntsman.kql.functions.convert import json_text
from huntsman.kql.functions.sql import Arg, alias, and_, coalesce, col, s
from huntsman.kql.types import NUMERIC

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

KIND_ALIASES = {"anti": "leftanti", "leftantisemi": "leftanti", "rightantisemi": "rightanti"}
L, R = "__l", "__r"


def join_keys(c: Compiler, left: Rel, right: Rel, on: list[A.Expr],
              node: A.Operator) -> list[tuple[Col, Col]]:
    keys: list[tuple[Col, Col]] = []

    def side(e: A.Expr) -> tuple[str, str] | None:
        if isinstance(e, A.Member) and isinstance(e.obj, A.Name) and \
                e.obj.name in ("$left", "$right"):
            return e.obj.name, e.name
        return None

    for cond in _flatten_and(on):
        if isinstance(cond, A.Name):
            lc, rc = left.col(cond.name), right.col(cond.name)
            if lc is None or rc is None:
                where = "left" if lc is None else "right"
                raise c.semantic_error(f"join: the {where} side has no column named "
                                       f"'{cond.name}'", cond.pos)
            keys.append((lc, rc))
            continue
        if isinstance(cond, A.Binary) and cond.op == "==":
            a, b = side(cond.left), side(cond.right)
            if a and b and a[0] != b[0]:
                (ls, ln), (_, rn) = (a, b) if a[0] == "$left" else (b, a)
                del ls
                lc, rc = left.col(ln), right.col(rn)
                if lc is None:
                    raise c.semantic_error(
                        f"Failed to resolve column or scalar expression named '{ln}' on the "
                        f"left side of the join", cond.pos)
                if rc is None:
                    raise c.semantic_error(
                        f"Failed to resolve column or scalar expression named '{rn}' on the "
                        f"right side of the join", cond.pos)
                keys.append((lc, rc))
                continue
        raise c.semantic_error("join: each condition must be a column name or an equality "
                               "$left.a == $right.b", cond.pos)
    if not keys:
        raise c.semantic_error("join needs at least one key", node.pos)
    for lc, rc in keys:
        if lc.type != rc.type and not (lc.type in NUMERIC and rc.type in NUMERIC) and \
                "dynamic" not in (lc.type, rc.type):
            raise c.semantic_error(f"join: key '{lc.name}' ({lc.type}) cannot be compared "
                                   f"with '{rc.name}' ({rc.type})", node.pos)
    return keys


def _key_sql(k: Col, alias: str) -> exp.Expr:
    if k.type == "dynamic":
        return json_text(Arg(col(k.sql, alias), "dynamic"))
    return col(k.sql, alias)


def _on(keys: list[tuple[Col, Col]], la: str = L, ra: str = R) -> exp.Expr:
    return and_(*[exp.EQ(this=_key_sql(lc, la), expression=_key_sql(rc, ra))
                  for lc, rc in keys])


def _aliased(c: Compiler, rel: Rel, alias: str) -> exp.Table:
    return exp.Table(this=c.src(rel), alias=exp.TableAlias(this=exp.to_identifier(alias,
                                                                                  quoted=True)))


def _flatten_and(on: list[A.Expr]) -> list[A.Expr]:
    out: list[A.Expr] = []
    for e in on:
        if isinstance(e, A.Binary) and e.op == "and":
            out += _flatten_and([e.left, e.right])
        else:
            out.append(e)
    return out


def _dedup_left(c: Compiler, rel: Rel, keys: list[Col]) -> Rel:
    """innerunique: keep one (arbitrary) left row per key."""
    w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                   partition_by=[col(k.sql) for k in keys])
    sel = exp.select(exp.Star()).from_(c.src(rel), copy=False).qualify(exp.EQ(this=w,
                                                                 expression=exp.Literal.number(1)), copy=False)
    return c.add(sel, rel.cols, None, rel.physical)


def joined_columns(c: Compiler, sides: list[tuple[list[Col], str, bool]], names: list[str],
                   taken: set[str]) -> tuple[list[exp.Expr], list[Col]]:
    """The select list of a join: each side's columns under its alias, clashing names suffixed
    as Kusto does (``k1``); strings of a side that may be missing are padded with ''."""
    sels: list[exp.Expr] = []
    cols: list[Col] = []
    for rel_cols, side, pad in sides:
        for x in rel_cols:
            name = unique_name(x.name, names)
            names.append(name)
            phys = c.namer.physical(name, taken)
            v: exp.Expr = col(x.sql, side)
            if pad and x.type == "string":
                v = coalesce(v, s(""))
            sels.append(alias(v, phys))
            cols.append(Col(name, x.type, phys))
    return sels, cols


def _project(c: Compiler, left: Rel, right: Rel, right_cols: list[Col], kind: str,
             on: exp.Expr, join_kind: str, side: str | None) -> Rel:
    taken: set[str] = set()
    names: list[str] = []
    pad_left = kind in ("rightouter", "fullouter")
    pad_right = kind in ("leftouter", "fullouter")
    sels, cols = joined_columns(c, [(left.cols, L, pad_left), (right_cols, R, pad_right)],
                                names, taken)
    sel = exp.select(*sels).from_(_aliased(c, left, L), copy=False)
    sel = sel.join(_aliased(c, right, R), on=on,
                   join_type=join_kind, copy=False)
    return c.add(sel, cols)


def compile_join(c: Compiler, left: Rel, op: A.Join, env: Env) -> Rel:
    kind = KIND_ALIASES.get(op.kind, op.kind)
    right = c.tabular(op.right, env)
    keys = join_keys(c, left, right, op.on, op)
    if kind == "innerunique":
        left = _dedup_left(c, left, [lk for lk, _ in keys])
        kind = "inner"
    if kind in ("leftsemi", "leftanti", "rightsemi", "rightanti"):
        keep, other = (left, right) if kind.startswith("left") else (right, left)
        ka, kb = (L, R)
        pairs = keys if kind.startswith("left") else [(rk, lk) for lk, rk in keys]
        taken: set[str] = set()
        sels, cols = [], []
        for x in keep.cols:
            phys = c.namer.physical(x.name, taken)
            sels.append(alias(col(x.sql, ka), phys))
            cols.append(Col(x.name, x.type, phys))
        sel = exp.select(*sels).from_(_aliased(c, keep, ka), copy=False)
        sel = sel.join(_aliased(c, other, kb),
                       on=_on(pairs, ka, kb), join_type="SEMI" if "semi" in kind else "ANTI", copy=False)
        return c.add(sel, cols)
    join_type = {"inner": "INNER", "leftouter": "LEFT", "rightouter": "RIGHT",
                 "fullouter": "FULL"}.get(kind)
    if join_type is None:
        raise c.unsupported(f"join kind '{op.kind}' is not supported", op)
    return _project(c, left, right, right.cols, kind, _on(keys), join_type, None)


def compile_lookup(c: Compiler, left: Rel, op: A.Lookup, env: Env) -> Rel:
    if op.kind not in ("leftouter", "inner"):
        raise c.semantic_error(f"lookup: kind must be 'leftouter' or 'inner', not '{op.kind}'",
                               op.pos)
    right = c.tabular(op.right, env)
    keys = join_keys(c, left, right, op.on, op)
    right_keys = {rk.name for _, rk in keys}
    right_cols = [x for x in right.cols if x.name not in right_keys]
    kind = "leftouter" if op.kind == "leftouter" else "inner"
    return _project(c, left, right, right_cols, kind, _on(keys),
                    "LEFT" if kind == "leftouter" else "INNER", None)
