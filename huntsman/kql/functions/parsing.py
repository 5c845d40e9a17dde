"""KQL parsing functions: parse_path, parse_command_line, parse_csv, and parse_user_agent and
parse_xml (Python functions registered on the DuckDB connections, see backends/duckdb/udfs.py).

The tokenizers are character state machines run with DuckDB's ``list_reduce`` over the
characters of the text, the state being a struct.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlglot import exp

from huntsman.kql.functions import LowerContext, register
from huntsman.kql.functions.convert import to_string
from huntsman.kql.functions.dynamic_fns import bind, field, fresh, ref, struct, to_json_value
from huntsman.kql.functions.sql import (
    Arg,
    and_,
    case,
    cast,
    fn,
    lambda_,
    n,
    or_,
    s,
)

Args = list[Arg]


def _text(a: Arg) -> exp.Expr:
    return a.sql if a.type == "string" else to_string(a)


def _not(e: exp.Expr) -> exp.Expr:
    return exp.Not(this=exp.Paren(this=e))


def _concat(*xs: exp.Expr) -> exp.Expr:
    return fn("concat", *xs)


def _reduce(chars: exp.Expr, init: exp.Expr,
            step: Callable[[Callable[[str], exp.Expr], exp.Expr], exp.Expr]) -> exp.Expr:
    """``list_reduce`` of ``chars`` from ``init``; ``step(state_field, char)`` is the new state."""
    acc, x = fresh("acc"), fresh("ch")
    return fn("list_reduce", chars, lambda_([acc, x], step(lambda k: field(ref(acc), k),
                                                           ref(x))), init)


def _chars(text: exp.Expr) -> exp.Expr:
    return fn("string_split", text, s(""))


# ---------------------------------------------------------------- parse_path

_SCHEME = r"^([A-Za-z][A-Za-z0-9+.\-]+)://"
_DIR = r"(?s)^(.*)[\\/]"
_LAST = r"([^\\/]*)$"


@register("parse_path", "string", "dynamic")
def _parse_path(ctx: LowerContext, a: Args) -> exp.Expr:
    """A bag: Scheme, RootPath, DirectoryPath, DirectoryName, Filename, Extension,
    AlternateDataStreamName (Windows or Unix separators, file:// schemes, UNC paths, streams)."""
    def body(v: list[exp.Expr]) -> exp.Expr:
        path, = v
        scheme = fn("regexp_extract", path, s(_SCHEME), n(1))

        def after_scheme(w: list[exp.Expr]) -> exp.Expr:
            sch, = w
            rest = case([(sch.eq(s("")), path)],
                         fn("substr", path, exp.Add(this=fn("length", sch), expression=n(4))))

            def parts(r: list[exp.Expr]) -> exp.Expr:
                p, = r
                unprefixed = fn("regexp_replace", p, s(r"^\\\\[?.]\\"), s(""))
                root = fn("regexp_extract", unprefixed, s(r"^([A-Za-z]:)"), n(1))
                directory = fn("regexp_extract", p, s(_DIR), n(1))
                last = fn("regexp_extract", p, s(_LAST), n(1))

                def names(u: list[exp.Expr]) -> exp.Expr:
                    d, f = u
                    has_stream = fn("regexp_matches", f, s(":"))
                    filename = case([(has_stream, fn("split_part", f, s(":"), n(1)))], f)
                    stream = case([(has_stream, fn("regexp_extract", f, s(r"(?s)^[^:]*:(.*)$"),
                                                   n(1)))], s(""))

                    def out(z: list[exp.Expr]) -> exp.Expr:
                        fname, = z
                        return fn("json_object",
                                  s("Scheme"), sch, s("RootPath"), root,
                                  s("DirectoryPath"), d,
                                  s("DirectoryName"), fn("regexp_extract", d, s(_LAST), n(1)),
                                  s("Filename"), fname,
                                  s("Extension"), fn("regexp_extract", fname,
                                                     s(r"\.([^.]*)$"), n(1)),
                                  s("AlternateDataStreamName"), stream)
                    return bind([filename], out)
                return bind([directory, last], names)
            return bind([rest], parts)
        return cast(bind([scheme], after_scheme), "JSON")
    return bind([_text(a[0])], body)


# ---------------------------------------------------------------- parse_command_line


def _argv_rest(rest: exp.Expr) -> exp.Expr:
    """The arguments after the program name, split as CommandLineToArgvW splits them
    (2n backslashes + quote: n backslashes and a quote that toggles quoting; 2n+1 backslashes +
    quote: n backslashes and a literal quote; in a run of quotes every third one is literal)."""
    def step(st: Callable[[str], exp.Expr], x: exp.Expr) -> exp.Expr:
        args, cur, q, b, run, open_ = st("a"), st("c"), st("q"), st("b"), st("r"), st("o")
        quote, backslash = s('"'), s("\\")
        run_quote = and_(run, x.eq(quote))
        qn = case([(and_(run, q.eq(n(2))), n(0))], q)
        blank = exp.In(this=x, expressions=[s(" "), s("\t")])
        sep = and_(_not(run_quote), blank, qn.eq(n(0)))
        rest_ = and_(_not(run_quote), _not(sep))
        bs = and_(rest_, x.eq(backslash))
        qt = and_(rest_, x.eq(quote))
        even = exp.EQ(this=exp.Mod(this=b, expression=n(2)), expression=n(0))
        half = exp.IntDiv(this=b, expression=n(2))
        keep = exp.Sub(this=fn("length", cur), expression=half)
        third = exp.EQ(this=exp.Add(this=q, expression=n(1)), expression=n(3))
        new_cur = case([
            (run_quote, case([(third, _concat(cur, quote))], cur)),
            (sep, s("")),
            (bs, _concat(cur, backslash)),
            (qt, case([(even, fn("left", cur, keep))], _concat(
                fn("left", cur, exp.Sub(this=keep, expression=n(1))), quote))),
        ], _concat(cur, x))
        new_q = case([
            (run_quote, case([(third, n(0))], exp.Add(this=q, expression=n(1)))),
            (and_(qt, even), exp.Add(this=qn, expression=n(1))),
        ], qn)
        return struct(
            a=case([(and_(sep, open_), fn("list_append", args, cur))], args),
            c=new_cur,
            q=new_q,
            b=case([(bs, exp.Add(this=b, expression=n(1)))], n(0)),
            r=or_(run_quote, qt),
            o=case([(sep, exp.false()), (run_quote, open_)], exp.true()))

    init = struct(a=cast(exp.Array(expressions=[]), "VARCHAR[]"), c=s(""), q=n(0), b=n(0),
                  r=exp.false(), o=exp.true())

    def finish(v: list[exp.Expr]) -> exp.Expr:
        st, = v
        return case([(field(st, "o"), fn("list_append", field(st, "a"), field(st, "c")))],
                    field(st, "a"))
    return bind([_reduce(_chars(rest), init, step)], finish)


@register("parse_command_line", "string string", "dynamic")
def _parse_command_line(ctx: LowerContext, a: Args) -> exp.Expr:
    """The arguments of a command line, as Windows' CommandLineToArgvW splits it: the program
    name ends at the next quote when it starts with one, else at the first whitespace."""
    parser = a[1]
    if not parser.is_const or not isinstance(parser.const, str):
        raise ctx.semantic_error("parse_command_line(): the parser type must be a constant string")
    if parser.const.lower() != "windows":
        raise ctx.semantic_error(
            f"parse_command_line(): unsupported parser type '{parser.const}' "
            f"(the only supported value is \"windows\")")

    def body(v: list[exp.Expr]) -> exp.Expr:
        text, = v
        quoted = fn("starts_with", text, s('"'))
        parts = case([(quoted, fn("regexp_extract", text, s(r'(?s)^"([^"]*)"?(.*)$'),
                                  exp.Array(expressions=[s("p"), s("r")])))],
                     fn("regexp_extract", text, s(r"(?s)^(\S*)\s?(.*)$"),
                        exp.Array(expressions=[s("p"), s("r")])))

        def split(w: list[exp.Expr]) -> exp.Expr:
            pr, = w
            rest = fn("regexp_replace", field(pr, "r"), s(r"^[ \t]+"), s(""))

            def args(u: list[exp.Expr]) -> exp.Expr:
                r, = u
                program = exp.Array(expressions=[field(pr, "p")])
                return case([(r.eq(s("")), program)],
                            fn("list_concat", program, _argv_rest(r)))
            return bind([rest], args)
        out = bind([parts], split)
        return case([(text.eq(s("")), cast(exp.Array(expressions=[]), "VARCHAR[]"))], out)
    return to_json_value(bind([_text(a[0])], body))


# ---------------------------------------------------------------- parse_csv


@register("parse_csv", "any", "dynamic")
def _parse_csv(ctx: LowerContext, a: Args) -> exp.Expr:
    """The fields of the first CSV record of the text (quoted fields may hold commas, line breaks
    and doubled quotes)."""
    if a[0].type not in ("string", "dynamic"):
        raise ctx.semantic_error(f"parse_csv(): expects a string, got {a[0].type}")

    def step(st: Callable[[str], exp.Expr], x: exp.Expr) -> exp.Expr:
        fields, cur, inq, pend, done, started = (st("f"), st("c"), st("i"), st("p"), st("d"),
                                                 st("n"))
        quote = s('"')
        in_body = and_(_not(done), inq, _not(pend))
        doubled = and_(_not(done), inq, pend, x.eq(quote))
        plain = and_(_not(done), _not(in_body), _not(doubled))  # outside quotes now
        comma = and_(plain, x.eq(s(",")))
        newline = and_(plain, exp.In(this=x, expressions=[s("\n"), s("\r")]))
        opens = and_(plain, x.eq(quote), _not(started))
        return struct(
            f=case([(comma, fn("list_append", fields, cur))], fields),
            c=case([(and_(in_body, x.eq(quote)), cur),
                    (in_body, _concat(cur, x)),
                    (doubled, _concat(cur, quote)),
                    (comma, s("")),
                    (or_(done, newline, opens), cur)], _concat(cur, x)),
            i=case([(in_body, exp.true()), (doubled, exp.true()), (opens, exp.true())],
                   exp.false()),
            p=and_(in_body, x.eq(quote)),
            d=or_(done, newline),
            n=case([(comma, exp.false()), (plain, exp.true())], started))

    init = struct(f=cast(exp.Array(expressions=[]), "VARCHAR[]"), c=s(""), i=exp.false(),
                  p=exp.false(), d=exp.false(), n=exp.false())

    def body(v: list[exp.Expr]) -> exp.Expr:
        text, = v

        def finish(w: list[exp.Expr]) -> exp.Expr:
            st, = w
            return fn("list_append", field(st, "f"), field(st, "c"))
        parsed = bind([_reduce(_chars(text), init, step)], finish)
        return case([(text.eq(s("")), exp.Array(expressions=[s("")]))], parsed)
    return to_json_value(bind([_text(a[0])], body))


# ---------------------------------------------------------------- parse_user_agent, parse_xml
# Computed by Python functions registered on the DuckDB connections (backends/duckdb/udfs.py):
# the uap-core regular expressions (ua-parser) and an XML parser with entities disabled.

UA_TARGETS = ("browser", "os", "device")


@register("parse_user_agent", "string any", "dynamic")
def _parse_user_agent(ctx: LowerContext, a: Args) -> exp.Expr:
    """A bag with the requested parts: Browser {Family, MajorVersion, MinorVersion, Patch},
    OperatingSystem {Family, MajorVersion, MinorVersion, Patch, PatchMinor}, Device {Family,
    Brand, Model}; look_for is "browser", "os", "device" or a dynamic array of them."""
    look = a[1]
    if not look.is_const or not isinstance(look.const, (str, list)):
        raise ctx.semantic_error(
            "parse_user_agent(): look_for must be a constant string (\"browser\", \"os\" or "
            "\"device\") or a constant dynamic array of them")
    wanted = [look.const] if isinstance(look.const, str) else look.const
    targets: list[str] = []
    for w in wanted:
        t = w.strip().lower() if isinstance(w, str) else None
        if t not in UA_TARGETS:
            raise ctx.semantic_error(
                f"parse_user_agent(): unknown look_for value {json.dumps(w)} (expected "
                f"\"browser\", \"os\" or \"device\")")
        if t not in targets:
            targets.append(t)
    return cast(fn("huntsman_parse_user_agent", _text(a[0]), s(",".join(targets))), "JSON")


@register("parse_xml", "any", "dynamic")
def _parse_xml(ctx: LowerContext, a: Args) -> exp.Expr:
    """XML as dynamic: attributes ``@name``, text ``#text``, repeated elements as an array, an
    empty element null; null for invalid XML (or longer than 1 MB, or declaring entities)."""
    if a[0].type not in ("string", "dynamic"):
        raise ctx.semantic_error(f"parse_xml(): expects a string, got {a[0].type}")
    return cast(fn("huntsman_parse_xml", _text(a[0])), "JSON")
