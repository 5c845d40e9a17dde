"""Scalar KQL functions and their lowering to DuckDB SQL."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlglot import exp

from huntsman.kql.functions import LowerContext, register
from huntsman.kql.functions.convert import (
    convert,
    json_text,
    json_value,
    to_bool,
    to_datetime,
    to_dynamic,
    to_number,
    to_string,
    to_timespan,
)
from huntsman.kql.functions.sql import (
    Arg,
    and_,
    case,
    cast,
    coalesce,
    fn,
    lambda_,
    literal,
    n,
    or_,
    s,
    ticks_to_us,
)
from huntsman.kql.types import NUMERIC, SQL_TYPES

Args = list[Arg]
US_PER = {"year": None, "quarter": None, "month": None, "week": 604_800_000_000,
          "day": 86_400_000_000, "hour": 3_600_000_000, "minute": 60_000_000,
          "second": 1_000_000, "millisecond": 1_000, "microsecond": 1, "nanosecond": 1}


def p(e: exp.Expr) -> exp.Expr:
    """``e`` parenthesized when it is an operator expression: sqlglot adds no parentheses, and an
    argument's SQL may be any expression (``x + 1``)."""
    return exp.Paren(this=e) if isinstance(e, (exp.Binary, exp.Neg, exp.Not)) else e


def _const_str(ctx: LowerContext, a: Arg, what: str) -> str:
    if not a.is_const or not isinstance(a.const, str):
        raise ctx.semantic_error(f"{what} must be a constant string")
    return a.const


def _part(ctx: LowerContext, a: Arg, fname: str) -> str:
    p = _const_str(ctx, a, f"{fname}(): the period").lower().strip()
    aliases = {"yy": "year", "yyyy": "year", "qq": "quarter", "q": "quarter", "mm": "month",
               "m": "month", "wk": "week", "ww": "week", "dd": "day", "d": "day",
               "hh": "hour", "mi": "minute", "n": "minute", "ss": "second", "s": "second",
               "ms": "millisecond", "mcs": "microsecond", "ns": "nanosecond",
               "weekofyear": "week", "dayofyear": "dayofyear"}
    p = aliases.get(p, p)
    if p not in US_PER:
        raise ctx.semantic_error(f"{fname}(): unknown period '{p}'")
    return p


# ---------------------------------------------------------------- time


@register("now", "timespan?", "datetime")
def _now(ctx: LowerContext, a: Args) -> exp.Expr:
    """The query's fixed 'now' (evaluated once per query), plus an optional offset."""
    if a and a[0].is_const and a[0].const is not None:
        return literal(ctx.now + timedelta(microseconds=ticks_to_us(a[0].const)), "datetime")
    base = literal(ctx.now, "datetime")
    return fn("add", base, fn("to_microseconds", a[0].sql)) if a else base


@register("ago", "timespan", "datetime")
def _ago(ctx: LowerContext, a: Args) -> exp.Expr:
    """now() minus a timespan."""
    if a[0].is_const and a[0].const is not None:
        return literal(ctx.now - timedelta(microseconds=ticks_to_us(a[0].const)), "datetime")
    return exp.Sub(this=literal(ctx.now, "datetime"),
                   expression=fn("to_microseconds", a[0].sql))


def floor_multiple(x: exp.Expr, size: exp.Expr) -> exp.Expr:
    """x rounded down to a multiple of size (integers), correct for negative x."""
    x, size = p(x), p(size)
    return exp.Sub(this=x, expression=exp.Mod(
        this=exp.Paren(this=exp.Add(this=exp.Mod(this=x, expression=size), expression=size)),
        expression=size))


def _bin_type(a: Args) -> str:
    return a[0].type


@register("bin", "any any", _bin_type, aliases=("floor",))
def _bin(ctx: LowerContext, a: Args) -> exp.Expr:
    """Round down to a multiple of the bin size, from the epoch (numbers keep their type)."""
    v, size = a
    if size.is_const and isinstance(size.const, (int, float)) and size.const <= 0:
        return literal(None, v.type)
    if v.type == "datetime":
        if size.type != "timespan":
            raise ctx.semantic_error("bin(): a datetime is binned by a timespan")
        us = fn("epoch_us", v.sql)
        return fn("make_timestamp", floor_multiple(us, size.sql))
    if v.type == "timespan":
        return floor_multiple(v.sql, to_timespan(size) if size.type != "timespan" else size.sql)
    if v.type in ("long", "int"):
        if size.type in ("long", "int"):
            return floor_multiple(v.sql, size.sql)
        return cast(exp.Mul(this=fn("floor", exp.Div(this=p(v.sql), expression=p(size.sql))),
                            expression=p(size.sql)), "BIGINT")
    if v.type in ("real", "decimal"):
        return exp.Mul(this=fn("floor", exp.Div(this=p(v.sql), expression=p(size.sql))),
                       expression=p(size.sql))
    raise ctx.semantic_error(f"bin(): cannot bin a value of type {v.type}")


def _bin_at_type(a: Args) -> str:
    if a[0].type in ("datetime", "timespan"):
        return a[0].type
    if all(x.type in ("int", "long") for x in a):
        return "long"
    return "decimal" if any(x.type == "decimal" for x in a) and not any(
        x.type == "real" for x in a) else "real"


@register("bin_at", "any any any", _bin_at_type)
def _bin_at(ctx: LowerContext, a: Args) -> exp.Expr:
    """bin() aligned to a fixed point: ``fixed + floor((value - fixed) / size) * size``.

    Numbers give the widest of the three types; a timespan or datetime value needs a fixed point
    of the same type and a timespan bin size (a number as a timespan's size counts ticks)."""
    v, size, at = a
    numeric = ("int", "long", "real", "decimal")
    if v.type in ("datetime", "timespan"):
        if at.type != v.type:
            raise ctx.semantic_error(f"bin_at(): the fixed point must be a {v.type}, like the "
                                     f"value")
        if size.type == "timespan":
            step = size.sql
        elif size.type in ("int", "long") and v.type == "timespan":
            step = to_timespan(size)
        else:
            raise ctx.semantic_error(f"bin_at(): a {v.type} is binned by a timespan")
        if size.is_const and isinstance(size.const, int) and size.const <= 0:
            return literal(None, v.type)
        if v.type == "datetime":
            off = exp.Sub(this=fn("epoch_us", v.sql), expression=fn("epoch_us", at.sql))
            return fn("make_timestamp", exp.Add(this=floor_multiple(off, step),
                                                expression=fn("epoch_us", at.sql)))
        off = exp.Sub(this=p(v.sql), expression=p(at.sql))
        return exp.Add(this=floor_multiple(off, step), expression=p(at.sql))
    if not all(x.type in numeric for x in a):
        raise ctx.semantic_error("bin_at(): expects numbers, timespans or datetimes, got "
                                 + ", ".join(x.type for x in a))
    if size.is_const and isinstance(size.const, (int, float)) and size.const <= 0:
        return literal(None, _bin_at_type(a))
    off = exp.Sub(this=p(v.sql), expression=p(at.sql))
    if _bin_at_type(a) == "long":
        return exp.Add(this=floor_multiple(off, size.sql), expression=p(at.sql))
    t = SQL_TYPES[_bin_at_type(a)]
    steps = fn("floor", exp.Div(this=cast(exp.Paren(this=off), t), expression=p(size.sql)))
    return cast(exp.Add(this=exp.Mul(this=steps, expression=p(size.sql)), expression=p(at.sql)), t)


@register("datetime_add", "string long datetime", "datetime")
def _datetime_add(ctx: LowerContext, a: Args) -> exp.Expr:
    part = _part(ctx, a[0], "datetime_add")
    amount = p(a[1].sql)
    funcs = {"year": "to_years", "month": "to_months", "week": "to_weeks", "day": "to_days",
             "hour": "to_hours", "minute": "to_minutes", "second": "to_seconds",
             "millisecond": "to_milliseconds", "microsecond": "to_microseconds"}
    if part == "quarter":
        return exp.Add(this=a[2].sql, expression=fn("to_months", exp.Mul(this=amount,
                                                                          expression=n(3))))
    if part == "nanosecond":
        return exp.Add(this=a[2].sql, expression=fn("to_microseconds",
                                                    exp.IntDiv(this=amount, expression=n(1000))))
    return exp.Add(this=a[2].sql, expression=fn(funcs[part], cast(amount, "INTEGER")
                                                if part in ("year", "month") else amount))


@register("datetime_diff", "string datetime datetime", "long")
def _datetime_diff(ctx: LowerContext, a: Args) -> exp.Expr:
    """Calendar periods between two datetimes (first minus second), as Kusto counts them."""
    part = _part(ctx, a[0], "datetime_diff")
    if part in ("week", "millisecond", "microsecond", "nanosecond"):
        unit = {"week": 604_800_000_000, "millisecond": 1000, "microsecond": 1,
                "nanosecond": 1}[part]
        # weeks start on Sunday; 1970-01-01 was a Thursday, so shift by 4 days
        shift = n(4 * 86_400_000_000) if part == "week" else n(0)

        def index(d: exp.Expr) -> exp.Expr:
            us = exp.Add(this=fn("epoch_us", d), expression=shift)
            return fn("floor", exp.Div(this=cast(us, "DOUBLE"), expression=n(unit))) \
                if unit > 1 else us
        diff = cast(exp.Sub(this=index(a[1].sql), expression=index(a[2].sql)), "BIGINT")
        return exp.Mul(this=diff, expression=n(1000)) if part == "nanosecond" else diff
    return fn("date_diff", s(part), a[2].sql, a[1].sql)


def _startof(unit: str) -> exp.Expr | None:
    return None


@register("startofday", "datetime long?", "datetime")
def _startofday(ctx: LowerContext, a: Args) -> exp.Expr:
    out = fn("date_trunc", s("day"), a[0].sql)
    return exp.Add(this=out, expression=fn("to_days", cast(a[1].sql, "INTEGER"))) \
        if len(a) > 1 else out


@register("startofweek", "datetime long?", "datetime")
def _startofweek(ctx: LowerContext, a: Args) -> exp.Expr:
    """Weeks start on Sunday in Kusto."""
    day = fn("date_trunc", s("day"), a[0].sql)
    out = exp.Sub(this=day, expression=fn("to_days", cast(fn("dayofweek", a[0].sql), "INTEGER")))
    return exp.Add(this=out, expression=fn("to_weeks", cast(a[1].sql, "INTEGER"))) \
        if len(a) > 1 else out


@register("startofmonth", "datetime long?", "datetime")
def _startofmonth(ctx: LowerContext, a: Args) -> exp.Expr:
    out = fn("date_trunc", s("month"), a[0].sql)
    return exp.Add(this=out, expression=fn("to_months", cast(a[1].sql, "INTEGER"))) \
        if len(a) > 1 else out


@register("startofyear", "datetime long?", "datetime")
def _startofyear(ctx: LowerContext, a: Args) -> exp.Expr:
    out = fn("date_trunc", s("year"), a[0].sql)
    return exp.Add(this=out, expression=fn("to_years", cast(a[1].sql, "INTEGER"))) \
        if len(a) > 1 else out


def _endof(start: exp.Expr, step: str) -> exp.Expr:
    return exp.Sub(this=exp.Add(this=start, expression=fn(step, n(1))),
                   expression=fn("to_microseconds", n(1)))


@register("endofday", "datetime long?", "datetime")
def _endofday(ctx: LowerContext, a: Args) -> exp.Expr:
    return _endof(_startofday(ctx, a), "to_days")


@register("endofweek", "datetime long?", "datetime")
def _endofweek(ctx: LowerContext, a: Args) -> exp.Expr:
    return _endof(_startofweek(ctx, a), "to_weeks")


@register("endofmonth", "datetime long?", "datetime")
def _endofmonth(ctx: LowerContext, a: Args) -> exp.Expr:
    return _endof(_startofmonth(ctx, a), "to_months")


@register("endofyear", "datetime long?", "datetime")
def _endofyear(ctx: LowerContext, a: Args) -> exp.Expr:
    return _endof(_startofyear(ctx, a), "to_years")


@register("dayofweek", "datetime", "timespan")
def _dayofweek(ctx: LowerContext, a: Args) -> exp.Expr:
    """Days since the preceding Sunday, as a timespan."""
    return exp.Mul(this=cast(fn("dayofweek", a[0].sql), "BIGINT"), expression=n(86_400_000_000))


@register("dayofmonth", "datetime", "int")
def _dayofmonth(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("day", a[0].sql), "INTEGER")


@register("dayofyear", "datetime", "int")
def _dayofyear(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("dayofyear", a[0].sql), "INTEGER")


@register("hourofday", "datetime", "int")
def _hourofday(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("hour", a[0].sql), "INTEGER")


@register("monthofyear", "datetime", "int", aliases=("getmonth",))
def _monthofyear(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("month", a[0].sql), "INTEGER")


@register("getyear", "datetime", "int")
def _getyear(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("year", a[0].sql), "INTEGER")


@register("datetime_part", "string datetime", "int", aliases=("datepart",))
def _datetime_part(ctx: LowerContext, a: Args) -> exp.Expr:
    part = _const_str(ctx, a[0], "datetime_part(): the part").lower()
    parts = {"year": "year", "quarter": "quarter", "month": "month", "week_of_year": "weekofyear",
             "day": "day", "dayofyear": "dayofyear", "hour": "hour", "minute": "minute",
             "second": "second", "millisecond": "millisecond", "microsecond": "microsecond",
             "nanosecond": "nanosecond"}
    if part not in parts:
        raise ctx.semantic_error(f"datetime_part(): unknown part '{part}'")
    if part == "millisecond":
        return cast(exp.Mod(this=fn("millisecond", a[1].sql), expression=n(1000)), "INTEGER")
    if part == "microsecond":
        return cast(exp.Mod(this=fn("microsecond", a[1].sql), expression=n(1_000_000)), "INTEGER")
    if part == "nanosecond":
        return cast(exp.Mul(this=exp.Mod(this=fn("microsecond", a[1].sql),
                                         expression=n(1_000_000)), expression=n(1000)), "INTEGER")
    return cast(fn(parts[part], a[1].sql), "INTEGER")


_DT_FORMAT_TOKENS = [
    ("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("M", "%-m"), ("dd", "%d"), ("d", "%-d"),
    ("HH", "%H"), ("H", "%-H"), ("hh", "%I"), ("h", "%-I"), ("mm", "%M"), ("m", "%-M"),
    ("ss", "%S"), ("s", "%-S"), ("tt", "%p"), ("y", "%-y"),
]


@register("format_datetime", "datetime string", "string")
def _format_datetime(ctx: LowerContext, a: Args) -> exp.Expr:
    """.NET-style format specifiers (yyyy MM dd HH hh mm ss f..fffffff tt) on a datetime."""
    fmt = _const_str(ctx, a[1], "format_datetime(): the format")
    pieces: list[exp.Expr] = []
    buf = ""
    i = 0
    while i < len(fmt):
        m = re.match(r"f{1,7}|F{1,7}", fmt[i:])
        if m:
            if buf:
                pieces.append(fn("strftime", a[0].sql, s(buf)))
                buf = ""
            k = len(m.group(0))
            digits = exp.DPipe(this=fn("lpad", cast(exp.Mod(this=fn("microsecond", a[0].sql),
                                                            expression=n(1_000_000)),
                                                    "VARCHAR"), n(6), s("0")), expression=s("0"))
            pieces.append(fn("substr", digits, n(1), n(k)))
            i += k
            continue
        for tok, rep in _DT_FORMAT_TOKENS:
            if fmt.startswith(tok, i):
                buf += rep
                i += len(tok)
                break
        else:
            ch = fmt[i]
            buf += "%%" if ch == "%" else ch
            i += 1
    if buf:
        pieces.append(fn("strftime", a[0].sql, s(buf)))
    out = pieces[0] if pieces else s("")
    for p in pieces[1:]:
        out = exp.DPipe(this=out, expression=p)
    return coalesce(out, s(""))


@register("make_datetime", "num num num num? num? num?", "datetime")
def _make_datetime(ctx: LowerContext, a: Args) -> exp.Expr:
    """A datetime from its parts; null when a part is out of range (year 1-9999, month 1-12, a
    day of that month, hour 0-23, minute 0-59, second 0 to below 60)."""
    ints = [cast(fn("trunc", p(x.sql)), "BIGINT") if x.type in ("real", "decimal") else x.sql
            for x in a[:5]] + [n(0)] * (5 - min(len(a), 5))
    sec = cast(a[5].sql, "DOUBLE") if len(a) > 5 else n(0.0)
    y, mo, d, h, mi = ints
    valid = and_(exp.Between(this=y, low=n(1), high=n(9999)),
                 exp.Between(this=mo, low=n(1), high=n(12)),
                 exp.Between(this=h, low=n(0), high=n(23)),
                 exp.Between(this=mi, low=n(0), high=n(59)),
                 exp.GTE(this=sec, expression=n(0)), exp.LT(this=sec, expression=n(60)))
    made = fn("try", fn("make_timestamp", y, mo, d, h, mi, sec))
    return case([(valid, made)], cast(exp.Null(), "TIMESTAMP"))


@register("unixtime_seconds_todatetime", "num", "datetime")
def _unix_s(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("try", fn("make_timestamp", cast(exp.Mul(this=p(a[0].sql), expression=n(1_000_000)),
                                               "BIGINT")))


@register("unixtime_milliseconds_todatetime", "num", "datetime")
def _unix_ms(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("try", fn("make_timestamp", cast(exp.Mul(this=p(a[0].sql), expression=n(1000)),
                                               "BIGINT")))


# ---------------------------------------------------------------- conversion


@register("tostring", "any", "string")  # unnamed: keeps the argument's name
def _tostring(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_string(a[0])


@register("toint", "any", "int")
def _toint(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_number(a[0], "int")


@register("tolong", "any", "long")
def _tolong(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_number(a[0], "long")


@register("toreal", "any", "real", aliases=("todouble",))
def _toreal(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_number(a[0], "real")


@register("todecimal", "any", "decimal")
def _todecimal(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_number(a[0], "decimal")


@register("tobool", "any", "bool", aliases=("toboolean",))
def _tobool(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_bool(a[0])


@register("todatetime", "any", "datetime")
def _todatetime(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_datetime(a[0])


@register("toguid", "any", "guid")
def _toguid(ctx: LowerContext, a: Args) -> exp.Expr:
    """A guid from the first 32 hex digits of a string (hyphens ignored, the rest of the text
    ignored); null when they are not 32 hex digits."""
    x = a[0]
    if x.type == "guid":
        return x.sql
    if x.type not in ("string", "dynamic"):
        raise ctx.semantic_error(f"toguid(): expects a string or dynamic value, got {x.type}")
    text = fn("replace", json_text(x) if x.type == "dynamic" else x.sql, s("-"), s(""))
    ok = fn("regexp_matches", text, s("^[0-9a-fA-F]{32}"))
    return case([(ok, cast(fn("left", text, n(32)), "UUID"))], cast(exp.Null(), "UUID"))


@register("todynamic", "any", "dynamic", aliases=("parse_json", "parsejson", "toobject"))
def _todynamic(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_dynamic(a[0])


# ---------------------------------------------------------------- strings


@register("strcat", "any any*", "string")
def _strcat(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("concat", *[to_string(x) for x in a])


@register("strcat_delim", "any any any any*", "string")
def _strcat_delim(ctx: LowerContext, a: Args) -> exp.Expr:
    """2 to 64 values joined by a delimiter; all converted to strings (null becomes '')."""
    if len(a) > 65:
        raise ctx.semantic_error("strcat_delim(): expects at most 64 values to concatenate")
    return fn("concat_ws", to_string(a[0]), *[to_string(x) for x in a[1:]])


@register("strlen", "string", "long")
def _strlen(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("length", a[0].sql), "BIGINT")


@register("string_size", "string", "long")
def _string_size(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("strlen", a[0].sql), "BIGINT")


@register("substring", "string long long?", "string")
def _substring(ctx: LowerContext, a: Args) -> exp.Expr:
    """0-based start (negative counts from the end); a start past the end gives ''."""
    raw = a[1].sql
    from_end = exp.Add(this=fn("length", a[0].sql), expression=raw)
    start = exp.Add(this=fn("greatest", case([(exp.LT(this=raw, expression=n(0)), from_end)],
                                             raw), n(0)), expression=n(1))
    if len(a) > 2:
        length = fn("greatest", a[2].sql, n(0))
        return coalesce(fn("substring", a[0].sql, start, length), s(""))
    return coalesce(fn("substring", a[0].sql, start), s(""))


@register("tolower", "string", "string")
def _tolower(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("lower", a[0].sql)


@register("toupper", "string", "string")
def _toupper(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("upper", a[0].sql)


@register("reverse", "any", "string")
def _reverse(ctx: LowerContext, a: Args) -> exp.Expr:
    """The characters in reverse order; non-strings are converted to strings first."""
    return fn("reverse", to_string(a[0]))


@register("split", "string string long?", "dynamic")
def _split(ctx: LowerContext, a: Args) -> exp.Expr:
    """A dynamic array of the parts; with an index, an array of that one part (or empty)."""
    parts = fn("string_split", a[0].sql, a[1].sql)
    if len(a) == 2:
        return cast(fn("to_json", parts), "JSON")
    idx = a[2].sql
    inside = and_(exp.GTE(this=idx, expression=n(0)),
                  exp.LT(this=idx, expression=fn("len", parts)))
    one = exp.Array(expressions=[fn("list_extract", parts, exp.Add(this=idx, expression=n(1)))])
    return cast(fn("to_json", case([(inside, one)], cast(exp.Array(expressions=[]),
                                                          "VARCHAR[]"))), "JSON")


def _extract_type(a: Args) -> str:
    if len(a) > 3:
        t = a[3].const
        return t if isinstance(t, str) else "string"
    return "string"


@register("extract", "string long string any?", _extract_type)
def _extract(ctx: LowerContext, a: Args) -> exp.Expr:
    """RE2 capture group of the first match; '' (or null when typed) when nothing matches."""
    regex = a[0].sql
    if not a[1].is_const or not isinstance(a[1].const, int):
        raise ctx.semantic_error("extract(): the capture group must be a constant number")
    group = n(a[1].const)
    text = a[2].sql
    matched = fn("regexp_extract", text, regex, group)
    if len(a) > 3 and _extract_type(a) != "string":
        t = _extract_type(a)
        hit = fn("regexp_matches", text, regex)
        return case([(hit, convert(Arg(matched, "string"), t))], literal(None, t))
    return coalesce(matched, s(""))


def capture_groups(pattern: str) -> list[str | None]:
    """The capture groups of an RE2 pattern, in order: their names (None when unnamed)."""
    groups: list[str | None] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1
            if pattern.startswith("^", i):
                i += 1
            if pattern.startswith("]", i):
                i += 1
            continue
        elif c == "(":
            m = re.match(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", pattern[i:])
            if m:
                groups.append(m.group(1))
            elif not pattern.startswith("(?", i):
                groups.append(None)
        i += 1
    return groups


@register("extract_all", "string any string?", "dynamic")
def _extract_all(ctx: LowerContext, a: Args) -> exp.Expr:
    """All matches of a regex with 1 to 16 capture groups: with one selected group an array of
    its values, with several an array of arrays; null when nothing matches. The optional
    captureGroups array selects groups by number or name."""
    regex = _const_str(ctx, a[0], "extract_all(): the regular expression")
    groups = capture_groups(regex)
    if not 1 <= len(groups) <= 16:
        raise ctx.semantic_error("extract_all(): the regular expression must have between 1 and "
                                 "16 capture groups")
    if len(a) == 3:
        sel = a[1]
        if sel.type != "dynamic" or not sel.is_const or not isinstance(sel.const, list) \
                or not sel.const:
            raise ctx.semantic_error("extract_all(): captureGroups must be a constant dynamic "
                                     "array of group numbers or names")
        picked = []
        for g in sel.const:
            if isinstance(g, bool):
                raise ctx.semantic_error(f"extract_all(): invalid capture group {g!r}")
            if isinstance(g, int) and 1 <= g <= len(groups):
                picked.append(g)
            elif isinstance(g, str) and g in groups:
                picked.append(groups.index(g) + 1)
            else:
                raise ctx.semantic_error(f"extract_all(): invalid capture group {g!r}")
        source = a[2]
    else:
        if a[1].type != "string":
            raise ctx.semantic_error(f"extract_all(): the source must be a string, got "
                                     f"{a[1].type}")
        picked = list(range(1, len(groups) + 1))
        source = a[1]
    lists = [fn("regexp_extract_all", source.sql, s(regex), n(g)) for g in picked]
    if len(lists) == 1:
        values = lists[0]
    else:
        i = exp.column("__i")
        values = fn("list_transform", fn("range", n(1), exp.Add(
            this=fn("len", lists[0]), expression=n(1))), lambda_(["__i"], exp.Array(
                expressions=[fn("list_extract", lst, i) for lst in lists])))
    return case([(exp.EQ(this=fn("len", lists[0]), expression=n(0)), cast(exp.Null(), "JSON"))],
                cast(fn("to_json", values), "JSON"))


@register("replace_string", "string string string", "string")
def _replace_string(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("replace", a[0].sql, a[1].sql, a[2].sql)


@register("replace_regex", "string string string", "string")
def _replace_regex(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("regexp_replace", a[0].sql, a[1].sql, a[2].sql, s("g"))


@register("replace", "string string string", "string")
def _replace(ctx: LowerContext, a: Args) -> exp.Expr:
    """Legacy: replace(regex, rewrite, text)."""
    return fn("regexp_replace", a[2].sql, a[0].sql, a[1].sql, s("g"))


def _trim_regex(ctx: LowerContext, a: Args, start: bool, end: bool) -> exp.Expr:
    pat = _const_str(ctx, a[0], "trim(): the regular expression")
    alts = []
    if start:
        alts.append(f"^(?:{pat})+")
    if end:
        alts.append(f"(?:{pat})+$")
    return fn("regexp_replace", to_string(a[1]), s("|".join(alts)), s(""), s("g"))


@register("trim", "string any", "string")
def _trim(ctx: LowerContext, a: Args) -> exp.Expr:
    """Removes leading and trailing matches of a regular expression."""
    return _trim_regex(ctx, a, True, True)


@register("trim_start", "string any", "string")
def _trim_start(ctx: LowerContext, a: Args) -> exp.Expr:
    return _trim_regex(ctx, a, True, False)


@register("trim_end", "string any", "string")
def _trim_end(ctx: LowerContext, a: Args) -> exp.Expr:
    return _trim_regex(ctx, a, False, True)


@register("indexof", "any any long? long? long?", "long")
def _indexof(ctx: LowerContext, a: Args) -> exp.Expr:
    """0-based position of the occurrence-th match of ``match`` (non-strings are converted to
    strings), searching ``length`` characters (-1: to the end) from ``start`` (negative: from the
    end); -1 when not found; null when the start is before the text, length < -1 or occurrence
    < 0. Each further occurrence is searched from one character after the previous one, in a
    window of the same length (the documented examples agree with this reading)."""
    text, look = to_string(a[0]), to_string(a[1])
    raw_start = p(a[2].sql) if len(a) > 2 else n(0)
    length = p(a[3].sql) if len(a) > 3 else n(-1)
    occurrence = 1
    if len(a) > 4:
        if not a[4].is_const or not isinstance(a[4].const, int):
            raise ctx.semantic_error("indexof(): the occurrence must be a constant number")
        occurrence = a[4].const
    if occurrence < 0:
        return cast(exp.Null(), "BIGINT")
    if occurrence == 0:
        return cast(n(-1), "BIGINT")
    size = fn("length", text)
    start = case([(exp.LT(this=raw_start, expression=n(0)),
                   exp.Add(this=size, expression=raw_start))], raw_start)

    def find(pos: exp.Expr) -> exp.Expr:
        """The first match at or after ``pos`` lying inside the window, or -1."""
        rest = exp.Sub(this=size, expression=p(pos))
        count = case([(exp.EQ(this=length, expression=n(-1)), rest)],
                     fn("least", length, rest))
        window = fn("substr", text, exp.Add(this=pos, expression=n(1)),
                    fn("greatest", count, n(0)))
        hit = fn("instr", window, look)
        found = case([(exp.GT(this=pos, expression=size), n(-1)),
                      (exp.EQ(this=hit, expression=n(0)), n(-1))],
                     exp.Add(this=pos, expression=exp.Sub(this=hit, expression=n(1))))
        return found

    begin = exp.column("__s")
    if occurrence == 1:
        found = find(begin)
    else:
        acc = exp.column("__a")
        step = case([(exp.EQ(this=exp.column("__k"), expression=n(0)), find(begin)),
                     (exp.LT(this=acc, expression=n(0)), acc)],
                    find(exp.Add(this=acc, expression=n(1))))
        found = fn("list_reduce", fn("range", n(occurrence)), lambda_(["__a", "__k"], step),
                   cast(n(-1), "BIGINT"))
    bound = fn("list_extract", fn("list_transform", exp.Array(expressions=[start]),
                                  lambda_(["__s"], found)), n(1))
    invalid = or_(exp.LT(this=start, expression=n(0)), exp.LT(this=length, expression=n(-1)))
    return cast(case([(invalid, cast(exp.Null(), "BIGINT"))], bound), "BIGINT")


@register("countof", "string string string?", "long")
def _countof(ctx: LowerContext, a: Args) -> exp.Expr:
    """Occurrences of a substring (overlapping) or of a regex (kind='regex', not overlapping)."""
    kind = "normal"
    if len(a) > 2:
        if not a[2].is_const or a[2].const not in ("normal", "regex"):
            raise ctx.semantic_error("countof(): kind must be the literal 'normal' or 'regex'")
        kind = a[2].const
    if kind == "regex":
        return cast(fn("len", fn("regexp_extract_all", a[0].sql, a[1].sql)), "BIGINT")
    text, look = a[0].sql, a[1].sql
    body = exp.EQ(this=fn("substring", text, exp.Add(this=exp.column("i"), expression=n(1)),
                          fn("length", look)), expression=look)
    hits = fn("list_filter", fn("range", n(0), fn("length", text)), lambda_(["i"], body))
    return cast(case([(exp.EQ(this=look, expression=s("")), n(0))], fn("len", hits)), "BIGINT")


@register("base64_decode_tostring", "string", "string")
def _b64decode(ctx: LowerContext, a: Args) -> exp.Expr:
    return coalesce(fn("try", fn("decode", fn("from_base64", a[0].sql))), s(""))


@register("base64_encode_tostring", "string", "string")
def _b64encode(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("to_base64", fn("encode", a[0].sql))


@register("hash_md5", "any", "string")
def _md5(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("md5", to_string(a[0]))


@register("hash_sha256", "any", "string")
def _sha256(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("sha256", to_string(a[0]))


@register("url_decode", "string", "string")
def _url_decode(ctx: LowerContext, a: Args) -> exp.Expr:
    return coalesce(fn("try", fn("url_decode", a[0].sql)), s(""))


def _lower_escapes(encoded: exp.Expr) -> exp.Expr:
    """Percent-escapes with lowercase hex digits ('%3A' becomes '%3a'), as Kusto prints them."""
    part = exp.column("__p")
    fixed = case([(exp.EQ(this=exp.column("__n"), expression=n(1)), part)],
                 exp.DPipe(this=fn("lower", fn("left", part, n(2))),
                           expression=fn("substr", part, n(3))))
    return fn("array_to_string", fn("list_transform", fn("string_split", encoded, s("%")),
                                    lambda_(["__p", "__n"], fixed)), s("%"))


@register("url_encode", "string", "string")
def _url_encode(ctx: LowerContext, a: Args) -> exp.Expr:
    """Percent-encoding with lowercase hex digits and spaces as '+' (form encoding)."""
    return fn("replace", _lower_escapes(fn("url_encode", a[0].sql)), s("%20"), s("+"))


@register("url_encode_component", "string", "string")
def _url_encode_component(ctx: LowerContext, a: Args) -> exp.Expr:
    """Percent-encoding with lowercase hex digits and spaces as '%20'."""
    return _lower_escapes(fn("url_encode", a[0].sql))


# ---------------------------------------------------------------- logic and nulls


def _branch_type(args: list[Arg]) -> str:
    types = [x.type for x in args if not (x.is_const and x.const is None)]
    if not types:
        return args[0].type
    if all(t in NUMERIC for t in types):
        from huntsman.kql.types import numeric_result
        out = types[0]
        for t in types[1:]:
            out = numeric_result(out, t)
        return out
    return types[0]


def _unify(ctx: LowerContext, args: list[Arg], fname: str) -> tuple[str, list[exp.Expr]]:
    t = _branch_type(args)
    out = []
    for x in args:
        if x.type == t or (x.is_const and x.const is None):
            out.append(x.sql if x.type == t else literal(None, t))
        elif x.type in NUMERIC and t in NUMERIC or t == "dynamic" or x.type == "dynamic":
            out.append(convert(x, t))
        else:
            raise ctx.semantic_error(
                f"{fname}(): all results must have the same type, got {t} and {x.type}")
    return t, out


@register("iff", "bool any any", lambda a: _branch_type(a[1:]), aliases=("iif",))
def _iff(ctx: LowerContext, a: Args) -> exp.Expr:
    """The second argument when the condition is true, else the third (null counts as false)."""
    _, (then, other) = _unify(ctx, a[1:], "iff")
    return case([(a[0].sql, then)], other)


def _case_type(a: Args) -> str:
    return _branch_type([x for i, x in enumerate(a) if i % 2 == 1 or i == len(a) - 1])


@register("case", "any any any any*", _case_type)
def _case(ctx: LowerContext, a: Args) -> exp.Expr:
    if len(a) % 2 == 0:
        raise ctx.semantic_error("case(): expects predicate/value pairs and an else value")
    values = [x for i, x in enumerate(a) if i % 2 == 1] + [a[-1]]
    _, sqls = _unify(ctx, values, "case")
    whens = []
    for i in range(0, len(a) - 1, 2):
        if a[i].type != "bool":
            raise ctx.semantic_error(f"case(): argument {i + 1} must be a bool predicate")
        whens.append((a[i].sql, sqls[i // 2]))
    return case(whens, sqls[-1])


@register("coalesce", "any any any*", lambda a: _branch_type(a))
def _coalesce(ctx: LowerContext, a: Args) -> exp.Expr:
    """First non-null value (first non-empty for strings)."""
    t, sqls = _unify(ctx, a, "coalesce")
    if t == "string":
        return coalesce(*[fn("nullif", x, s("")) for x in sqls], s(""))
    return coalesce(*sqls)


def is_empty(a: Arg) -> exp.Expr:
    if a.type == "string":
        return exp.EQ(this=a.sql, expression=s(""))
    if a.type == "dynamic":
        v = json_value(a)
        return or_(exp.Is(this=v, expression=exp.Null()),
                   fn("json_type", v).eq(s("NULL")),
                   and_(fn("json_type", v).eq(s("VARCHAR")), json_text(a).eq(s(""))))
    return exp.Is(this=a.sql, expression=exp.Null())


def is_null(a: Arg) -> exp.Expr:
    if a.type == "string":
        return exp.false()
    if a.type == "dynamic":
        v = json_value(a)
        return or_(exp.Is(this=v, expression=exp.Null()), fn("json_type", v).eq(s("NULL")))
    return exp.Is(this=a.sql, expression=exp.Null())


@register("isempty", "any", "bool")
def _isempty(ctx: LowerContext, a: Args) -> exp.Expr:
    return is_empty(a[0])


@register("isnotempty", "any", "bool", aliases=("notempty",))
def _isnotempty(ctx: LowerContext, a: Args) -> exp.Expr:
    return exp.Not(this=exp.Paren(this=is_empty(a[0])))


@register("isnull", "any", "bool")
def _isnull(ctx: LowerContext, a: Args) -> exp.Expr:
    return is_null(a[0])


@register("isnotnull", "any", "bool", aliases=("notnull",))
def _isnotnull(ctx: LowerContext, a: Args) -> exp.Expr:
    return exp.Not(this=exp.Paren(this=is_null(a[0])))


@register("not", "bool", "bool")
def _not(ctx: LowerContext, a: Args) -> exp.Expr:
    return exp.Not(this=exp.Paren(this=a[0].sql))


@register("isnan", "real", "bool")
def _isnan(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("isnan", a[0].sql)


@register("isfinite", "real", "bool")
def _isfinite(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("isfinite", a[0].sql)


# ---------------------------------------------------------------- dynamic


@register("array_length", "dynamic", "long")
def _array_length(ctx: LowerContext, a: Args) -> exp.Expr:
    """Elements in a dynamic array; null when the value is not an array."""
    v = json_value(a[0])
    return case([(fn("json_type", v).eq(s("ARRAY")), cast(fn("json_array_length", v), "BIGINT"))],
                cast(exp.Null(), "BIGINT"))


def dynamic_element(a: Arg) -> exp.Expr:
    """A value as a JSON element (datetimes and timespans in Kusto's text forms)."""
    if a.type == "dynamic":
        return json_value(a)
    if a.type in ("datetime", "timespan", "guid"):
        return to_dynamic(a)
    return a.sql


@register("pack_array", "any any*", "dynamic")
def _pack_array(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("json_array", *[dynamic_element(x) for x in a])


@register("bag_pack", "any any*", "dynamic", aliases=("pack",))
def _bag_pack(ctx: LowerContext, a: Args) -> exp.Expr:
    if len(a) % 2:
        raise ctx.semantic_error("bag_pack(): expects key/value pairs")
    parts: list[exp.Expr] = []
    for i in range(0, len(a), 2):
        parts += [to_string(a[i]), dynamic_element(a[i + 1])]
    return fn("json_object", *parts)


_JSON_TYPES = {"ARRAY": "array", "OBJECT": "dictionary", "VARCHAR": "string", "BIGINT": "long",
               "UBIGINT": "long", "DOUBLE": "real", "BOOLEAN": "bool", "NULL": "null"}


@register("gettype", "any", "string")
def _gettype(ctx: LowerContext, a: Args) -> exp.Expr:
    """The runtime type of a value: for dynamic values the JSON kind (array, dictionary...)."""
    t = a[0].type
    if t != "dynamic":
        return s({"bool": "bool", "guid": "guid"}.get(t, t))
    v = json_value(a[0])
    jt = fn("json_type", v)
    small = exp.Between(this=cast(fn("json_extract_string", v, s("$")), "HUGEINT", safe=True),
                        low=n(-2147483648), high=n(2147483647))
    whens = [(and_(jt.eq(s("BIGINT")), small), s("int")),
             (and_(jt.eq(s("UBIGINT")), small), s("int"))]
    whens += [(jt.eq(s(k)), s(v)) for k, v in _JSON_TYPES.items()]
    return case([(exp.Is(this=jt, expression=exp.Null()), s("null"))] + whens, s("string"))


@register("bag_keys", "dynamic", "dynamic")
def _bag_keys(ctx: LowerContext, a: Args) -> exp.Expr:
    v = json_value(a[0])
    return case([(fn("json_type", v).eq(s("OBJECT")), cast(fn("to_json", fn("json_keys", v)),
                                                           "JSON"))], cast(exp.Null(), "JSON"))


@register("set_has_element", "dynamic any", "bool")
def _set_has_element(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("list_contains", cast(json_value(a[0]), "JSON[]"), cast(fn("to_json",
                                                                         dynamic_element(a[1])),
                                                                      "JSON"))


# ---------------------------------------------------------------- numbers


def _same_type(a: Args) -> str:
    return a[0].type


def _abs_type(a: Args) -> str:
    return "long" if a[0].type in ("int", "long") else a[0].type


@register("abs", "any", _abs_type)
def _abs(ctx: LowerContext, a: Args) -> exp.Expr:
    """Absolute value of a number or timespan (an int gives a long)."""
    x = a[0]
    if x.type not in NUMERIC and x.type != "timespan":
        raise ctx.semantic_error(f"abs(): expects a number or timespan, got {x.type}")
    return fn("abs", cast(x.sql, "BIGINT") if x.type == "int" else x.sql)


@register("round", "num long?", _same_type)
def _round(ctx: LowerContext, a: Args) -> exp.Expr:
    """Rounds to ``precision`` decimal digits (negative: to tens, hundreds...); the precision
    must be a constant. Midpoints round away from zero (DuckDB's rule; Kusto does not document
    its rule)."""
    digits = n(0)
    if len(a) > 1:
        if not a[1].is_const or not isinstance(a[1].const, int):
            raise ctx.semantic_error("round(): the precision must be a constant integer")
        digits = n(a[1].const)
    return cast(fn("round", a[0].sql, cast(digits, "INTEGER")), SQL_TYPES[a[0].type])


def _nonnegative(name: str, x: exp.Expr) -> exp.Expr:
    """``name(x)`` on a double, null for negative numbers (as Kusto documents for logarithms and
    square roots)."""
    d = cast(x, "DOUBLE")
    return case([(exp.LT(this=d, expression=n(0)), cast(exp.Null(), "DOUBLE"))], fn(name, d))


@register("sqrt", "num", "real")
def _sqrt(ctx: LowerContext, a: Args) -> exp.Expr:
    """Square root; null for negative numbers."""
    return _nonnegative("sqrt", a[0].sql)


@register("exp", "num", "real")
def _exp(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("exp", cast(a[0].sql, "DOUBLE"))


@register("log", "num", "real")
def _log(ctx: LowerContext, a: Args) -> exp.Expr:
    """Natural logarithm; null for negative numbers, -inf for zero."""
    return _nonnegative("ln", a[0].sql)


@register("log10", "num", "real")
def _log10(ctx: LowerContext, a: Args) -> exp.Expr:
    """Base-10 logarithm; null for negative numbers, -inf for zero."""
    return _nonnegative("log10", a[0].sql)


@register("pow", "num num", "real")
def _pow(ctx: LowerContext, a: Args) -> exp.Expr:
    return fn("pow", cast(a[0].sql, "DOUBLE"), cast(a[1].sql, "DOUBLE"))


@register("sign", "num", "real")
def _sign(ctx: LowerContext, a: Args) -> exp.Expr:
    return cast(fn("sign", a[0].sql), "DOUBLE")


@register("min_of", "any any any*", lambda a: _branch_type(a))
def _min_of(ctx: LowerContext, a: Args) -> exp.Expr:
    """The smallest of 2 to 64 values of one type; nulls are ignored."""
    if len(a) > 64:
        raise ctx.semantic_error("min_of(): expects at most 64 arguments")
    _, sqls = _unify(ctx, a, "min_of")
    return fn("least", *sqls)


@register("max_of", "any any any*", lambda a: _branch_type(a))
def _max_of(ctx: LowerContext, a: Args) -> exp.Expr:
    """The largest of 2 to 64 values of one type; nulls are ignored."""
    if len(a) > 64:
        raise ctx.semantic_error("max_of(): expects at most 64 arguments")
    _, sqls = _unify(ctx, a, "max_of")
    return fn("greatest", *sqls)


# ---------------------------------------------------------------- network


_IPV4 = r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}(/(3[0-2]|[12]?\d))?$"
_PRIVATE = r"^(10\.|172\.(1[6-9]|2\d|3[01])\.|192\.168\.)"


@register("ipv4_is_private", "string", "bool")
def _ipv4_is_private(ctx: LowerContext, a: Args) -> exp.Expr:
    """True for 10/8, 172.16/12 and 192.168/16; null when the text is not an IPv4 address."""
    ip = fn("trim", a[0].sql)
    return case([(fn("regexp_matches", ip, s(_IPV4)), fn("regexp_matches", ip, s(_PRIVATE)))],
                cast(exp.Null(), "BOOLEAN"))


_URL = r"^([A-Za-z][A-Za-z0-9+.-]*)://(?:([^:@/?#]*)(?::([^@/?#]*))?@)?([^:/?#]*)(?::(\d+))?" \
       r"([^?#]*)(?:\?([^#]*))?(?:#(.*))?$"


@register("parse_url", "string", "dynamic")
def _parse_url(ctx: LowerContext, a: Args) -> exp.Expr:
    """A property bag: Scheme, Host, Port, Path, Username, Password, Query Parameters, Fragment."""
    url = a[0].sql
    ok = fn("regexp_matches", url, s(_URL))

    def g(i: int) -> exp.Expr:
        return fn("regexp_extract", url, s(_URL), n(i))

    pairs = fn("string_split", g(7), s("&"))
    entries = fn("list_transform", fn("list_filter", pairs, lambda_(["p"], exp.NEQ(
        this=exp.column("p"), expression=s("")))), lambda_(["p"], exp.Struct(expressions=[
            exp.PropertyEQ(this=exp.to_identifier("k"),
                           expression=fn("split_part", exp.column("p"), s("="), n(1))),
            exp.PropertyEQ(this=exp.to_identifier("v"),
                           expression=coalesce(fn("url_decode", fn("substr", exp.column("p"),
                                               exp.Add(this=fn("strlen", fn("split_part",
                                                       exp.column("p"), s("="), n(1))),
                                                   expression=n(2)))), s(""))),
        ])))
    query = case([(exp.EQ(this=g(7), expression=s("")), cast(s("{}"), "JSON"))],
                 cast(fn("to_json", fn("map_from_entries", entries)), "JSON"))
    bag = fn("json_object", s("Scheme"), g(1), s("Host"), g(4), s("Port"), g(5), s("Path"),
             g(6), s("Username"), g(2), s("Password"), g(3), s("Query Parameters"), query,
             s("Fragment"), g(8))
    return case([(ok, bag)], cast(s("{}"), "JSON"))
