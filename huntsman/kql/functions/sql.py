"""Small builders of sqlglot expressions shared by the function library and the compiler.

Nothing here formats SQL text: every value becomes a sqlglot literal node, so user strings can
never become SQL syntax.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlglot import exp

from huntsman.kql.types import SQL_TYPES

NOCONST: Any = object()
"""Marker: the argument is not a compile-time constant."""


@dataclass(frozen=True)
class Arg:
    """A compiled scalar expression: its SQL, its Kusto type, and what is known at compile time.

    ``const`` is the Python value when the expression is a literal (``NOCONST`` otherwise);
    ``name`` the column name when the expression is a plain column reference (for default
    result names); ``json`` the (base, path) of a dynamic member chain such as ``d.a[0]``.
    """

    sql: exp.Expr
    type: str
    const: Any = NOCONST
    name: str | None = None
    json: tuple[exp.Expr, str] | None = field(default=None, compare=False)

    @property
    def is_const(self) -> bool:
        return self.const is not NOCONST


def fn(name: str, *args: exp.Expr) -> exp.Expr:
    """A call of a DuckDB function by its exact name."""
    return exp.Anonymous(this=name, expressions=list(args))


@cache
def _datatype(sql_type: str) -> exp.DataType:
    return exp.DataType.build(sql_type, dialect="duckdb")


def cast(e: exp.Expr, sql_type: str, safe: bool = False) -> exp.Expr:
    to = _datatype(sql_type).copy()
    return exp.TryCast(this=e, to=to) if safe else exp.Cast(this=e, to=to)


def cast_k(e: exp.Expr, kusto_type: str, safe: bool = False) -> exp.Expr:
    return cast(e, SQL_TYPES[kusto_type], safe)


def s(value: str) -> exp.Expr:
    return exp.Literal.string(value)


def n(value: int | float) -> exp.Expr:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return cast(s(str(value)), "DOUBLE")
    if isinstance(value, int) and value < 0:
        return exp.Neg(this=exp.Literal.number(-value))
    return exp.Literal.number(value)


def null(kusto_type: str) -> exp.Expr:
    return cast_k(exp.Null(), kusto_type)


def empty_string() -> exp.Expr:
    return s("")


def literal(value: Any, kusto_type: str) -> exp.Expr:
    """SQL for a Kusto constant of ``kusto_type`` (timespans given in ticks)."""
    if value is None:
        return empty_string() if kusto_type == "string" else null(kusto_type)
    if kusto_type == "string":
        return s(value)
    if kusto_type == "bool":
        return exp.Boolean(this=bool(value))
    if kusto_type in ("long", "int"):
        return cast_k(n(int(value)), kusto_type)
    if kusto_type == "real":
        return cast(n(float(value)), "DOUBLE")
    if kusto_type == "decimal":
        return cast_k(s(repr(value)), "decimal")
    if kusto_type == "timespan":
        return cast(n(ticks_to_us(value)), "BIGINT")
    if kusto_type == "datetime":
        assert isinstance(value, datetime)
        return cast(s(value.isoformat(sep=" ")), "TIMESTAMP")
    if kusto_type == "guid":
        return cast(s(str(value)), "UUID")
    if kusto_type == "dynamic":
        return cast(s(json.dumps(value, separators=(",", ":"), ensure_ascii=False)), "JSON")
    raise ValueError(f"no literal for type {kusto_type}")


def ticks_to_us(ticks: int) -> int:
    # round half away from zero, as .NET does for tick → µs
    q, r = divmod(abs(ticks), 10)
    us = q + (1 if r >= 5 else 0)
    return -us if ticks < 0 else us


def coalesce(*args: exp.Expr) -> exp.Expr:
    return exp.Coalesce(this=args[0], expressions=list(args[1:]))


def _bool_operand(e: exp.Expr) -> exp.Expr:
    return exp.Paren(this=e) if isinstance(e, (exp.Connector, exp.Not)) else e


def and_(*args: exp.Expr) -> exp.Expr:
    out = _bool_operand(args[0])
    for a in args[1:]:
        out = exp.And(this=out, expression=_bool_operand(a))
    return out


def or_(*args: exp.Expr) -> exp.Expr:
    out = _bool_operand(args[0])
    for a in args[1:]:
        out = exp.Or(this=out, expression=_bool_operand(a))
    return out


def paren(e: exp.Expr) -> exp.Expr:
    return exp.Paren(this=e)


def case(whens: list[tuple[exp.Expr, exp.Expr]],
         default: exp.Expr | None) -> exp.Expr:
    c = exp.Case()
    for cond, val in whens:
        c = c.when(cond, val)
    if default is not None:
        c = c.else_(default)
    return c


def lambda_(params: list[str], body: exp.Expr) -> exp.Expr:
    return exp.Lambda(this=body, expressions=[exp.to_identifier(p) for p in params])


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=exp.to_identifier(name, quoted=True),
                      table=exp.to_identifier(table, quoted=True) if table else None)


def alias(e: exp.Expr, name: str) -> exp.Expr:
    """``e AS "name"`` (the name always quoted)."""
    return exp.Alias(this=e, alias=exp.to_identifier(name, quoted=True))
