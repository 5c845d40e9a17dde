"""KQL functions: text and number formatting, hashing, math extras (see ``__init__.py``).

``format_timespan``, ``totimespan`` (of strings), ``tohex``, ``strrep``, ``translate``, ``hash``,
``ceiling``, ``rand``, ``exp2``, ``exp10``, ``log2``. Everything lowers to sqlglot trees; user
strings stay literals.
"""

from __future__ import annotations

import re

from sqlglot import exp

from huntsman.errors import UnsupportedError
from huntsman.kql.functions import LowerContext, register
from huntsman.kql.functions.convert import json_text, to_string, to_timespan
from huntsman.kql.functions.sql import (
    Arg,
    and_,
    case,
    cast,
    coalesce,
    fn,
    lambda_,
    n,
    or_,
    s,
)

Args = list[Arg]
NULL_BIGINT = cast(exp.Null(), "BIGINT")


def p(e: exp.Expr) -> exp.Expr:
    """``e`` parenthesized when it is an operator expression (sqlglot adds no parentheses)."""
    return exp.Paren(this=e) if isinstance(e, (exp.Binary, exp.Neg, exp.Not)) else e


def op(cls: type[exp.Binary], x: exp.Expr, y: exp.Expr) -> exp.Expr:
    """The binary operator ``cls`` on parenthesized operands."""
    return cls(this=p(x), expression=p(y))


def let(value: exp.Expr, name: str, body: exp.Expr) -> exp.Expr:
    """``body`` with ``name`` bound to ``value`` (evaluated once): a one-element list_transform."""
    return fn("list_extract", fn("list_transform", exp.Array(expressions=[value]),
                                 lambda_([name], body)), n(1))


def v(name: str) -> exp.Expr:
    """A reference to a lambda parameter bound by :func:`let` or a lambda."""
    return exp.column(name)


def _null_if_null(x: exp.Expr, out: exp.Expr) -> exp.Expr:
    return case([(exp.Is(this=p(x), expression=exp.Null()), exp.Null())], out)


# ---------------------------------------------------------------- timespans


_TS_TOKEN = re.compile(r"d+|f+|F+|h+|H+|m+|s+")
_TS_MAX = {"d": 8, "f": 7, "F": 7, "h": 2, "H": 2, "m": 2, "s": 2}
_TS_DELIMITERS = set(" /-:,._[]")


def _printf_pad(x: exp.Expr, width: int) -> exp.Expr:
    """``x`` (an integer) in decimal, left-padded with zeros to ``width`` (never truncated)."""
    return fn("printf", s(f"%0{width}d"), x) if width > 1 else cast(x, "VARCHAR")


@register("format_timespan", "timespan string", "string")
def _format_timespan(ctx: LowerContext, a: Args) -> exp.Expr:
    """.NET-style custom timespan format: d..dddddddd, f..fffffff, F..FFFFFFF, h/H, hh/HH, m, mm,
    s, ss and the delimiters `` /-:,._[]``. Like .NET, components are of the absolute value (no
    sign is written). The format must be a non-empty constant."""
    if not a[1].is_const or not isinstance(a[1].const, str) or a[1].const == "":
        raise ctx.semantic_error("format_timespan(): the format must be a non-empty constant "
                                 "string")
    fmt = a[1].const
    us = fn("abs", a[0].sql)
    days = op(exp.IntDiv, us, n(86_400_000_000))
    hours = op(exp.Mod, op(exp.IntDiv, us, n(3_600_000_000)), n(24))
    mins = op(exp.Mod, op(exp.IntDiv, us, n(60_000_000)), n(60))
    secs = op(exp.Mod, op(exp.IntDiv, us, n(1_000_000)), n(60))
    frac7 = op(exp.DPipe, fn("printf", s("%06d"), op(exp.Mod, us, n(1_000_000))), s("0"))
    parts: list[exp.Expr] = []
    i = 0
    while i < len(fmt):
        m = _TS_TOKEN.match(fmt, i)
        if m is None:
            ch = fmt[i]
            if ch not in _TS_DELIMITERS:
                raise ctx.semantic_error(f"format_timespan(): unsupported character '{ch}' in the "
                                         f"format")
            parts.append(s(ch))
            i += 1
            continue
        tok = m.group(0)
        k, width = tok[0], len(tok)
        if width > _TS_MAX[k]:
            raise ctx.semantic_error(f"format_timespan(): unsupported format element '{tok}'")
        if k == "d":
            parts.append(_printf_pad(days, width))
        elif k in "hH":
            parts.append(_printf_pad(hours, width))
        elif k == "m":
            parts.append(_printf_pad(mins, width))
        elif k == "s":
            parts.append(_printf_pad(secs, width))
        elif k == "f":
            parts.append(fn("substr", frac7, n(1), n(width)))
        else:  # F: the digits without trailing zeros, nothing when they are all zero
            parts.append(fn("rtrim", fn("substr", frac7, n(1), n(width)), s("0")))
        i += width
    out = parts[0] if len(parts) == 1 else fn("concat", *parts)
    return coalesce(_null_if_null(a[0].sql, out), s(""))


_TIMESPAN_TEXT = r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$"
MAX_TIMESPAN_DAYS = 10_675_199
"""``TimeSpan.MaxValue`` is 10675199.02:48:05.4775807."""


def parse_timespan_text(text: exp.Expr) -> exp.Expr:
    """Microseconds of a ``[-][d.]hh:mm[:ss[.fffffff]]`` text, or null (hours 0-23, minutes and
    seconds 0-59, as .NET's ``TimeSpan.Parse``); ticks round half away from zero to µs."""
    t = v("__ts")

    def group(i: int) -> exp.Expr:
        return fn("regexp_extract", t, s(_TIMESPAN_TEXT), n(i))

    def num(i: int) -> exp.Expr:
        return cast(fn("nullif", group(i), s("")), "BIGINT", safe=True)

    days = coalesce(num(2), n(0))
    hours, mins = num(3), num(4)
    secs = coalesce(num(5), n(0))
    frac7 = cast(fn("rpad", group(6), n(7), s("0")), "BIGINT")
    whole = op(exp.Add, op(exp.Add, op(exp.Mul, days, n(86_400)), op(exp.Mul, hours, n(3600))),
               op(exp.Add, op(exp.Mul, mins, n(60)), secs))
    # 100 ns ticks of the fraction, rounded half up to µs
    frac_us = op(exp.IntDiv, op(exp.Add, frac7, n(5)), n(10))
    magnitude = op(exp.Add, op(exp.Mul, whole, n(1_000_000)), frac_us)
    valid = and_(fn("regexp_full_match", t, s(_TIMESPAN_TEXT)),
                 or_(op(exp.EQ, group(2), s("")),
                     op(exp.LTE, num(2), n(MAX_TIMESPAN_DAYS))),
                 op(exp.LTE, hours, n(23)), op(exp.LTE, mins, n(59)),
                 op(exp.LTE, secs, n(59)))
    signed = case([(op(exp.EQ, group(1), s("-")), exp.Neg(this=exp.Paren(
        this=magnitude)))], magnitude)
    body = case([(valid, signed)], NULL_BIGINT)
    return let(fn("trim", text), "__ts", body)


@register("totimespan", "any", "timespan", aliases=("totime", "time"))
def _totimespan(ctx: LowerContext, a: Args) -> exp.Expr:
    """A timespan from its text form ``[-][d.]hh:mm[:ss[.fffffff]]`` (null when the text is not a
    timespan); other types as ``convert.to_timespan`` (a long is ticks). Kusto's literal forms
    such as ``"1d"`` are not documented for strings and give null."""
    x = a[0]
    if x.type == "string":
        return parse_timespan_text(x.sql)
    if x.type == "dynamic":
        return parse_timespan_text(json_text(x))
    if x.type in ("int", "long"):
        return op(exp.IntDiv, cast(x.sql, "BIGINT"), n(10))  # ticks to µs
    return to_timespan(x)


# ---------------------------------------------------------------- numbers as text


@register("tohex", "any long?", "string")
def _tohex(ctx: LowerContext, a: Args) -> exp.Expr:
    """Lowercase hex of an int or long; negative values in two's complement of their size (8
    digits for an int, 16 for a long); padded with zeros to ``minLength`` (at most 16)."""
    x = a[0]
    if x.type not in ("int", "long"):
        raise ctx.semantic_error(f"tohex(): expects an int or long value, got {x.type}")
    val = x.sql
    if x.type == "int":
        # the unsigned 32-bit pattern of a negative int
        val = case([(op(exp.LT, val, n(0)),
                     op(exp.Add, cast(val, "BIGINT"), n(4_294_967_296)))],
                   cast(val, "BIGINT"))
    digits = fn("lower", fn("hex", cast(val, "BIGINT")))
    if len(a) > 1:
        width = fn("least", a[1].sql, n(16))
        digits = case([(op(exp.GT, width, fn("length", digits)),
                        fn("lpad", digits, cast(width, "INTEGER"), s("0")))], digits)
    return coalesce(_null_if_null(x.sql, digits), s(""))


@register("strrep", "any long any?", "string")
def _strrep(ctx: LowerContext, a: Args) -> exp.Expr:
    """``value`` repeated ``multiplier`` times, joined by ``delimiter`` (non-strings are converted
    to strings). The documented range of ``multiplier`` is 1 to 67108864; outside it the result
    is the empty string."""
    value = to_string(a[0])
    times = a[1].sql
    delim = to_string(a[2]) if len(a) > 2 else s("")
    joined = op(exp.DPipe, fn("repeat", op(exp.DPipe, value, delim),
                               op(exp.Sub, times, n(1))), value)
    ok = exp.Between(this=p(times), low=n(1), high=n(67_108_864))
    return case([(ok, joined)], s(""))


@register("translate", "string string string", "string")
def _translate(ctx: LowerContext, a: Args) -> exp.Expr:
    """Replaces each character of ``searchList`` in ``source`` by the character at the same
    position of ``replacementList``; a shorter replacement list repeats its last character, an
    empty one deletes the characters."""
    search, repl, source = a[0].sql, a[1].sql, a[2].sql
    padded = case([(op(exp.GT, fn("length", repl), n(0)),
                    fn("rpad", repl, cast(fn("greatest", fn("length", search),
                                                 fn("length", repl)), "INTEGER"),
                       fn("right", repl, n(1))))], repl)
    return fn("translate", source, search, padded)


# ---------------------------------------------------------------- hash (xxhash64)


_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261
_MASK = (1 << 64) - 1


def _u(value: int) -> exp.Expr:
    return cast(s(str(value)), "UHUGEINT")


def _wrap(e: exp.Expr) -> exp.Expr:
    """``e`` modulo 2^64 (all xxhash64 arithmetic is done on UHUGEINT and wrapped)."""
    return op(exp.BitwiseAnd, e, _u(_MASK))


def _mul(x: exp.Expr, y: exp.Expr) -> exp.Expr:
    return _wrap(op(exp.Mul, x, y))


def _add(x: exp.Expr, y: exp.Expr) -> exp.Expr:
    return _wrap(op(exp.Add, x, y))


def _xor(x: exp.Expr, y: exp.Expr) -> exp.Expr:
    return fn("xor", x, y)


def _rotl(x: exp.Expr, r: int) -> exp.Expr:
    """``x`` rotated left by ``r`` bits, as a 64-bit value."""
    return op(exp.BitwiseOr, _wrap(op(exp.BitwiseLeftShift, x, n(r))),
              op(exp.BitwiseRightShift, x, n(64 - r)))


def _round(acc: exp.Expr, lane: exp.Expr) -> exp.Expr:
    return _mul(_rotl(_add(acc, _mul(lane, _u(_P2))), 31), _u(_P1))


def _le_word(hexs: exp.Expr, offset: exp.Expr, size: int) -> exp.Expr:
    """The little-endian unsigned integer of ``size`` bytes at byte ``offset`` of a hex string."""
    pieces = [fn("substr", hexs, op(exp.Add, op(exp.Mul, op(exp.Add, offset, n(j)), n(2)), n(1)),
                 n(2)) for j in reversed(range(size))]
    text = op(exp.DPipe, s("0x"), fn("concat", *pieces))
    return cast(cast(text, "UBIGINT"), "UHUGEINT")


def xxhash64_of_hex(hexs: exp.Expr) -> exp.Expr:
    """XXH64 (seed 0) of the bytes given as a hex string, as an unsigned UHUGEINT below 2^64."""
    h = v("__xh")
    length = op(exp.IntDiv, fn("length", h), n(2))
    k = v("__xk")
    acc = v("__xa")

    def lane(off: exp.Expr, size: int = 8) -> exp.Expr:
        return _le_word(h, off, size)

    # 32-byte stripes into four accumulators
    stripe_off = op(exp.Mul, k, n(32))
    step = exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier(f"v{j + 1}"), expression=_round(
            exp.Dot(this=acc, expression=exp.to_identifier(f"v{j + 1}")),
            lane(op(exp.Add, stripe_off, n(8 * j)))))
        for j in range(4)])
    init = exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier("v1"), expression=_u((_P1 + _P2) & _MASK)),
        exp.PropertyEQ(this=exp.to_identifier("v2"), expression=_u(_P2)),
        exp.PropertyEQ(this=exp.to_identifier("v3"), expression=_u(0)),
        exp.PropertyEQ(this=exp.to_identifier("v4"), expression=_u((-_P1) & _MASK))])
    stripes = fn("list_reduce", fn("range", n(0), op(exp.IntDiv, length, n(32))),
                 lambda_(["__xa", "__xk"], step), init)
    st = v("__xs")

    def field(j: int) -> exp.Expr:
        return exp.Dot(this=st, expression=exp.to_identifier(f"v{j}"))

    def merge(h64: exp.Expr, val: exp.Expr) -> exp.Expr:
        return _add(_mul(_xor(h64, _round(_u(0), val)), _u(_P1)), _u(_P4))

    big = _add(_add(_add(_rotl(field(1), 1), _rotl(field(2), 7)), _rotl(field(3), 12)),
               _rotl(field(4), 18))
    for j in range(1, 5):
        big = merge(big, field(j))
    h0 = case([(op(exp.GTE, length, n(32)), let(stripes, "__xs", big))], _u(_P5))
    h1 = _add(h0, cast(length, "UHUGEINT"))
    # remaining 8-byte lanes
    first8 = op(exp.Mul, op(exp.IntDiv, length, n(32)), n(32))
    end8 = op(exp.Mul, op(exp.IntDiv, length, n(8)), n(8))
    lane8 = _add(_mul(_rotl(_xor(acc, _round(_u(0), lane(k))), 27), _u(_P1)), _u(_P4))
    h2 = fn("list_reduce", fn("range", first8, end8, n(8)), lambda_(["__xa", "__xk"], lane8), h1)
    # one 4-byte lane
    end4 = op(exp.Mul, op(exp.IntDiv, length, n(4)), n(4))
    h3v = v("__xh3")
    with4 = _add(_mul(_rotl(_xor(h3v, _mul(lane(end8, 4), _u(_P1))), 23), _u(_P2)), _u(_P3))
    h3 = let(h2, "__xh3", case([(op(exp.GT, end4, end8), with4)], h3v))
    # single bytes
    byte = _add(_u(0), _le_word(h, k, 1))
    lane1 = _mul(_rotl(_xor(acc, _mul(byte, _u(_P5))), 11), _u(_P1))
    h4 = fn("list_reduce", fn("range", end4, length), lambda_(["__xa", "__xk"], lane1), h3)
    # avalanche
    z = v("__xz")

    def shift_xor(x: exp.Expr, r: int) -> exp.Expr:
        return _xor(x, op(exp.BitwiseRightShift, x, n(r)))

    out = let(h4, "__xz", let(_mul(shift_xor(z, 33), _u(_P2)), "__xz",
                              let(_mul(shift_xor(z, 29), _u(_P3)), "__xz", shift_xor(z, 32))))
    return let(hexs, "__xh", out)


def _le_hex_of_int64(x: exp.Expr) -> exp.Expr:
    """The 8 little-endian bytes of a BIGINT (two's complement) as a hex string."""
    u = case([(op(exp.LT, x, n(0)),
               op(exp.Add, cast(x, "HUGEINT"), cast(s(str(1 << 64)), "HUGEINT")))],
             cast(x, "HUGEINT"))
    be = fn("lpad", fn("hex", cast(u, "UBIGINT")), n(16), s("0"))
    return fn("concat", *[fn("substr", be, n(2 * j + 1), n(2)) for j in reversed(range(8))])


@register("hash", "any long?", "long")
def _hash(ctx: LowerContext, a: Args) -> exp.Expr:
    """Kusto's ``hash()``: xxhash64 (seed 0) of the UTF-8 bytes of a string, or of the 8
    little-endian bytes of a datetime's ticks (checked against the documented values). Hashes of
    other types depend on undocumented byte layouts and are not supported. A hash of 2^63 or more
    is returned as the signed long of the same bits; with ``mod`` the unsigned hash modulo
    ``mod`` is returned (null when ``mod`` is not positive)."""
    x = a[0]
    if x.type == "string":
        hexs = fn("hex", fn("encode", x.sql))
    elif x.type == "datetime":
        ticks = op(exp.Add, op(exp.Mul, fn("epoch_us", x.sql), n(10)), n(621355968000000000))
        hexs = _le_hex_of_int64(ticks)
    elif x.type == "dynamic":
        raise ctx.semantic_error("hash(): the value must not be dynamic; convert it first, e.g. "
                                 "hash(tostring(x))")
    else:
        raise UnsupportedError(
            f"hash() of a {x.type} value is not supported (Kusto's byte layout for it is not "
            f"documented); hash a string, e.g. hash(tostring(x))")
    h = xxhash64_of_hex(hexs)
    if len(a) > 1:
        mod = a[1]
        if mod.is_const and isinstance(mod.const, int) and mod.const <= 0:
            raise ctx.semantic_error("hash(): mod must be a positive number")
        ok = op(exp.GT, mod.sql, n(0))
        out = cast(op(exp.Mod, h, cast(mod.sql, "UHUGEINT")), "BIGINT")
        return _null_if_null(x.sql, case([(ok, out)], NULL_BIGINT))
    r = v("__xr")
    signed = case([(op(exp.GTE, r, _u(1 << 63)),
                    op(exp.Sub, cast(r, "HUGEINT"), cast(s(str(1 << 64)), "HUGEINT")))],
                  cast(r, "HUGEINT"))
    return _null_if_null(x.sql, cast(let(h, "__xr", signed), "BIGINT"))


# ---------------------------------------------------------------- math


def _num_type(a: Args) -> str:
    return a[0].type


@register("ceiling", "num", _num_type)
def _ceiling(ctx: LowerContext, a: Args) -> exp.Expr:
    """The smallest integer not below the number, of the number's type."""
    x = a[0]
    if x.type in ("int", "long"):
        return x.sql
    if x.type == "decimal":
        return cast(fn("ceil", x.sql), "DECIMAL(38, 10)")
    return fn("ceil", cast(x.sql, "DOUBLE"))


@register("rand", "long?", "real")
def _rand(ctx: LowerContext, a: Args) -> exp.Expr:
    """``rand()``: uniform in [0, 1); ``rand(N)``: uniform over {0.0, 1.0, ..., N-1} (null when
    N is not positive)."""
    if not a:
        return fn("random")
    bound = a[0].sql
    pick = cast(fn("floor", op(exp.Mul, fn("random"), bound)), "DOUBLE")
    return case([(op(exp.GT, bound, n(0)), pick)], cast(exp.Null(), "DOUBLE"))


@register("exp2", "num", "real")
def _exp2(ctx: LowerContext, a: Args) -> exp.Expr:
    """2 raised to the power x."""
    return fn("pow", n(2.0), cast(a[0].sql, "DOUBLE"))


@register("exp10", "num", "real")
def _exp10(ctx: LowerContext, a: Args) -> exp.Expr:
    """10 raised to the power x."""
    return fn("pow", n(10.0), cast(a[0].sql, "DOUBLE"))


def log_of(name: str, x: exp.Expr) -> exp.Expr:
    """A logarithm that is null for negative numbers (as Kusto documents), -inf for zero."""
    d = cast(x, "DOUBLE")
    return case([(op(exp.LT, d, n(0)), cast(exp.Null(), "DOUBLE"))], fn(name, d))


@register("log2", "num", "real")
def _log2(ctx: LowerContext, a: Args) -> exp.Expr:
    """Base-2 logarithm; null for negative numbers."""
    return log_of("log2", a[0].sql)


__all__ = ["let", "log_of", "parse_timespan_text", "xxhash64_of_hex"]
