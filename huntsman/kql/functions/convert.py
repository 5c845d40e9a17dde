"""Conversions between Kusto types, as SQL: ``tostring``, ``tolong``, ``todynamic`` ...

These are both the implementations of the ``to*`` functions and the implicit conversions the
compiler applies (a dynamic compared with a string is converted with ``to_string``).
"""

from __future__ import annotations

from sqlglot import exp

from huntsman.kql.functions.sql import (
    Arg,
    case,
    cast,
    cast_k,
    coalesce,
    fn,
    literal,
    n,
    s,
)


def json_text(a: Arg) -> exp.Expr:
    """A dynamic value unwrapped as text: strings without quotes, other JSON as JSON text."""
    if a.json is not None:
        base, path = a.json
        return fn("json_extract_string", base, s(path))
    return fn("json_extract_string", a.sql, s("$"))


def json_value(a: Arg) -> exp.Expr:
    """A dynamic value as a JSON expression (member chains become one ``json_extract``)."""
    if a.json is not None:
        base, path = a.json
        return fn("json_extract", base, s(path))
    return a.sql


def format_real(e: exp.Expr) -> exp.Expr:
    """A real as Kusto prints it: whole values without '.0'."""
    whole = exp.And(this=exp.EQ(this=e, expression=fn("trunc", e)),
                    expression=exp.LT(this=fn("abs", e), expression=n(1e15)))
    return case([(whole, cast(cast(e, "BIGINT"), "VARCHAR"))], cast(e, "VARCHAR"))


def format_datetime_sql(e: exp.Expr) -> exp.Expr:
    """Kusto's text form: ISO 8601 with seven fraction digits and 'Z'."""
    frac = fn("lpad", cast(exp.Mod(this=fn("microsecond", e), expression=n(1000000)), "VARCHAR"),
              n(6), s("0"))
    return fn("concat", fn("strftime", e, s("%Y-%m-%dT%H:%M:%S.")), frac, s("0Z"))


def format_timespan_sql(e: exp.Expr) -> exp.Expr:
    """``[-][d.]hh:mm:ss[.fffffff]`` from microseconds."""
    a = fn("abs", e)
    days = exp.IntDiv(this=a, expression=n(86_400_000_000))
    hours = exp.Mod(this=exp.IntDiv(this=a, expression=n(3_600_000_000)), expression=n(24))
    mins = exp.Mod(this=exp.IntDiv(this=a, expression=n(60_000_000)), expression=n(60))
    secs = exp.Mod(this=exp.IntDiv(this=a, expression=n(1_000_000)), expression=n(60))
    frac = exp.Mod(this=a, expression=n(1_000_000))

    def two(x: exp.Expr) -> exp.Expr:
        return fn("lpad", cast(x, "VARCHAR"), n(2), s("0"))

    parts: list[exp.Expr] = [
        case([(exp.LT(this=e, expression=n(0)), s("-"))], s("")),
        case([(exp.GT(this=days, expression=n(0)),
               exp.DPipe(this=cast(days, "VARCHAR"), expression=s(".")))], s("")),
        two(hours), s(":"), two(mins), s(":"), two(secs),
        case([(exp.GT(this=frac, expression=n(0)),
               exp.DPipe(this=s("."), expression=exp.DPipe(
                   this=fn("lpad", cast(frac, "VARCHAR"), n(6), s("0")), expression=s("0"))))],
             s("")),
    ]
    out = parts[0]
    for p in parts[1:]:
        out = exp.DPipe(this=out, expression=p)
    return out


DATETIME_FORMATS = [
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%m-%d-%Y %H:%M:%S", "%m-%d-%Y",
    "%a, %d %b %Y %H:%M:%S GMT", "%d %b %Y %H:%M:%S", "%Y%m%d",
]
"""Text forms ``todatetime`` accepts besides ISO 8601 (US month-first, RFC 822)."""


def to_string(a: Arg) -> exp.Expr:
    """``tostring(a)``: never null (null becomes '')."""
    t = a.type
    if t == "string":
        return a.sql
    if a.is_const and a.const is None:
        return s("")
    if t == "dynamic":
        inner = json_text(a)
    elif t == "real":
        inner = format_real(a.sql)
    elif t == "datetime":
        inner = format_datetime_sql(a.sql)
    elif t == "timespan":
        inner = format_timespan_sql(a.sql)
    elif t == "bool":
        inner = case([(a.sql, s("True"))], s("False"))
        return case([(exp.Is(this=a.sql, expression=exp.Null()), s(""))], inner)
    else:
        inner = cast(a.sql, "VARCHAR")
    return coalesce(inner, s(""))


def to_dynamic(a: Arg) -> exp.Expr:
    """``todynamic``/``parse_json``: JSON text becomes JSON; other strings a dynamic string."""
    t = a.type
    if t == "dynamic":
        return json_value(a)
    if t == "string":
        if a.is_const:
            import json as _json
            try:
                value = _json.loads(a.const)
            except ValueError:
                value = a.const
            return literal(None if a.const == "" else value, "dynamic")
        parsed = cast(a.sql, "JSON", safe=True)
        return case([(exp.EQ(this=a.sql, expression=s("")), cast(exp.Null(), "JSON"))],
                    coalesce(parsed, cast(fn("to_json", a.sql), "JSON")))
    if t == "datetime":
        return cast(fn("to_json", format_datetime_sql(a.sql)), "JSON")
    if t == "timespan":
        return cast(fn("to_json", format_timespan_sql(a.sql)), "JSON")
    return cast(fn("to_json", a.sql), "JSON")


def to_number(a: Arg, kusto_type: str) -> exp.Expr:
    """``tolong``/``toint``/``toreal``: failures give null."""
    t = a.type
    if t == kusto_type:
        return a.sql
    if t == "dynamic":
        return cast_k(json_text(a), kusto_type, safe=True)
    if t == "string":
        if kusto_type in ("long", "int"):
            # Kusto parses "1.5" as a long by truncation only via toreal; "12" -> 12
            return cast_k(fn("trim", a.sql), kusto_type, safe=True)
        return cast_k(fn("trim", a.sql), kusto_type, safe=True)
    if t == "bool":
        return cast_k(a.sql, kusto_type)
    if t == "datetime":
        # ticks since 0001-01-01, as Kusto does
        ticks = exp.Add(this=exp.Mul(this=fn("epoch_us", a.sql), expression=n(10)),
                        expression=n(621355968000000000))
        return cast_k(ticks, kusto_type, safe=True)
    if t == "timespan":
        return cast_k(exp.Mul(this=a.sql, expression=n(10)), kusto_type, safe=True)
    if t in ("real", "decimal") and kusto_type in ("long", "int"):
        return cast_k(fn("trunc", a.sql), kusto_type, safe=True)
    return cast_k(a.sql, kusto_type, safe=True)


def to_bool(a: Arg) -> exp.Expr:
    t = a.type
    if t == "bool":
        return a.sql
    text = json_text(a) if t == "dynamic" else a.sql
    if t in ("string", "dynamic"):
        low = fn("lower", fn("trim", text))
        return case([(exp.In(this=low, expressions=[s("true"), s("1")]), exp.true()),
                     (exp.In(this=low, expressions=[s("false"), s("0")]), exp.false())],
                    cast(exp.Null(), "BOOLEAN"))
    if t in ("long", "int", "real", "decimal"):
        return exp.NEQ(this=a.sql, expression=n(0))
    return cast(exp.Null(), "BOOLEAN")


def to_datetime(a: Arg) -> exp.Expr:
    t = a.type
    if t == "datetime":
        return a.sql
    if t in ("string", "dynamic"):
        text = fn("trim", json_text(a) if t == "dynamic" else a.sql)
        iso = cast(fn("replace", fn("replace", text, s("Z"), s("")), s("T"), s(" ")),
                   "TIMESTAMP", safe=True)
        formats = exp.Array(expressions=[s(f) for f in DATETIME_FORMATS])
        return coalesce(iso, cast(fn("try_strptime", text, formats), "TIMESTAMP"))
    if t in ("long", "int"):
        # Kusto: a long is ticks since 0001-01-01
        us = exp.IntDiv(this=exp.Sub(this=a.sql, expression=n(621355968000000000)),
                        expression=n(10))
        return fn("make_timestamp", us)
    return cast(exp.Null(), "TIMESTAMP")


def to_timespan(a: Arg) -> exp.Expr:
    t = a.type
    if t == "timespan":
        return a.sql
    if t in ("long", "int"):
        return exp.IntDiv(this=a.sql, expression=n(10))
    return cast(exp.Null(), "BIGINT")


def to_guid(a: Arg) -> exp.Expr:
    if a.type == "guid":
        return a.sql
    text = json_text(a) if a.type == "dynamic" else to_string(a)
    return cast(text, "UUID", safe=True)


def convert(a: Arg, target: str) -> exp.Expr:
    """Convert ``a`` to the Kusto type ``target`` (explicitly or implicitly)."""
    if a.type == target:
        return a.sql if a.json is None else json_value(a)
    if target == "string":
        return to_string(a)
    if target == "dynamic":
        return to_dynamic(a)
    if target in ("long", "int", "real", "decimal"):
        return to_number(a, target)
    if target == "bool":
        return to_bool(a)
    if target == "datetime":
        return to_datetime(a)
    if target == "timespan":
        return to_timespan(a)
    if target == "guid":
        return to_guid(a)
    raise ValueError(target)
