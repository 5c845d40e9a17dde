"""``parse-kv``: extract the listed keys of a key/value text into typed columns.

Three modes, as the Kusto documentation describes them:

* ``pair_delimiter`` + ``kv_delimiter``: pairs are separated by the pair delimiter, key and value
  by the kv delimiter; ``quote`` (one character, or an opening and a closing one; repeatable)
  may wrap keys and values, ``escape`` escapes characters inside quoted values, and
  ``greedy=true`` lets an unquoted value run until the next ``key=`` (or the end);
* no delimiters: any non-alphanumeric character delimits, a value is a run of letters and
  digits (or a quoted text);
* ``regex``: a regular expression with two groups, the key and the value.

The first appearance of a key wins; whitespace around keys and unquoted values is dropped; a
missing key gives ``""`` for a string column and null otherwise. Each key is one RE2 search (the
leftmost match is the first appearance).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, Rel
from huntsman.kql import ast as A
from huntsman.kql.functions.convert import convert, to_string
from huntsman.kql.functions.sql import Arg, alias, case, coalesce, fn, lambda_, s

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

OPTIONS = {"pair_delimiter", "kv_delimiter", "quote", "escape", "greedy", "regex"}
WORD = r"[\pL\pN]"
NONWORD = r"[^\pL\pN]"


def _quotes(c: Compiler, op: A.ParseKv) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for q in op.options.get("quote", []):
        if not isinstance(q, str) or len(q) not in (1, 2):
            raise c.semantic_error("parse-kv: quote must be a string of one or two characters",
                                   op.pos)
        out.append((q[0], q[-1]))
    return out


def _escapes(c: Compiler, op: A.ParseKv) -> list[str]:
    out: list[str] = []
    for e in op.options.get("escape", []):
        if not isinstance(e, str) or len(e) != 1:
            raise c.semantic_error("parse-kv: escape must be a single character", op.pos)
        out.append(e)
    return out


def _quoted_value(quotes: list[tuple[str, str]], escapes: list[str]) -> list[str]:
    """One capture group per quote pair: the text inside the quotes."""
    groups = []
    esc = "".join(re.escape(e) for e in escapes)
    for o, cl in quotes:
        inner = f"(?:[^{re.escape(cl)}{esc}]|[{esc}].)*" if escapes else \
            f"[^{re.escape(cl)}]*"
        groups.append(f"{re.escape(o)}({inner}){re.escape(cl)}")
    return groups


def _key(name: str, quotes: list[tuple[str, str]]) -> str:
    alts = [re.escape(name)] + [f"{re.escape(o)}{re.escape(name)}{re.escape(cl)}"
                               for o, cl in quotes]
    return "(?:" + "|".join(alts) + ")"


def compile_parse_kv(c: Compiler, rel: Rel, op: A.ParseKv, env: Env) -> Rel:
    unknown = set(op.options) - OPTIONS
    if unknown:
        raise c.semantic_error(f"parse-kv: unknown option '{sorted(unknown)[0]}'", op.pos)
    sc = ScalarCompiler(c, rel, env)
    src = sc.compile(op.source)
    text = to_string(src) if src.type != "string" else src.sql
    quotes = _quotes(c, op)
    escapes = _escapes(c, op)
    pd, kv = op.options.get("pair_delimiter"), op.options.get("kv_delimiter")
    regex = op.options.get("regex")
    greedy = op.options.get("greedy", False)
    if greedy not in (True, False):
        raise c.semantic_error("parse-kv: greedy must be true or false", op.pos)
    if regex is not None and (pd is not None or kv is not None or quotes):
        raise c.semantic_error("parse-kv: regex cannot be combined with delimiters or quotes",
                               op.pos)
    if (pd is None) != (kv is None):
        raise c.semantic_error("parse-kv: give both pair_delimiter and kv_delimiter",
                               op.pos)
    for v in (pd, kv, regex):
        if v is not None and (not isinstance(v, str) or v == ""):
            raise c.semantic_error("parse-kv: delimiters and regex must be non-empty strings",
                                   op.pos)
    taken = set(rel.physical)
    cols = list(rel.cols)
    sels: list[exp.Expr] = [exp.Star()]
    for key, ktype in op.keys:
        if regex is not None:
            raw = _regex_value(text, str(regex), key)
        else:
            raw = _delimited_value(text, key, pd, kv, quotes, escapes, bool(greedy))
        v = raw if ktype == "string" else convert(Arg(raw, "string"), ktype)
        phys = c.namer.physical(key, taken)
        sels.append(alias(v, phys))
        new = Col(key, ktype, phys)
        for i, x in enumerate(cols):
            if x.name == key:
                cols[i] = new
                break
        else:
            cols.append(new)
    return c.add(exp.select(*sels).from_(c.src(rel), copy=False), cols, rel, set(taken))


def _regex_value(text: exp.Expr, regex: str, key: str) -> exp.Expr:
    keys = fn("list_transform", fn("regexp_extract_all", text.copy(), s(regex), exp.Literal.number(1)),
              lambda_(["k"], fn("trim", exp.column("k"))))
    values = fn("regexp_extract_all", text.copy(), s(regex), exp.Literal.number(2))
    pos = fn("list_position", keys, s(key))
    return coalesce(fn("trim", fn("list_extract", values, pos)), s(""))


def _delimited_value(text: exp.Expr, key: str, pd: str | None, kv: str | None,
                     quotes: list[tuple[str, str]], escapes: list[str],
                     greedy: bool) -> exp.Expr:
    quoted = _quoted_value(quotes, escapes)
    if pd is not None and kv is not None:
        P, K = re.escape(pd), re.escape(kv)
        head = rf"(?:^|{P})\s*{_key(key, quotes)}\s*{K}\s*"
        if greedy:
            tail = rf"\s*(?:{P}[^{P}{K}]*?{K}|$)" if len(pd) == 1 and len(kv) == 1 else \
                rf"\s*(?:{P}.*?{K}|$)"
        else:
            tail = rf"\s*(?:{P}|$)"
        plain = f"(.*?){tail}"
        alts = [q + rf"\s*(?:{P}|$)" for q in quoted] + [plain]
    else:
        head = rf"(?:^|{NONWORD}){_key(key, quotes)}{NONWORD}+?"
        alts = list(quoted) + [f"({WORD}+)"]
    pattern = head + "(?:" + "|".join(alts) + ")"
    groups = [f"g{i}" for i in range(len(alts))]
    struct = fn("regexp_extract", text.copy(), s(pattern),
                exp.Array(expressions=[s(g) for g in groups]))
    matched = fn("regexp_matches", text.copy(), s(pattern))
    whens: list[tuple[exp.Expr, exp.Expr]] = []
    for i, g in enumerate(groups):
        v = fn("struct_extract", struct.copy(), s(g))
        is_quoted = i < len(quoted)
        if is_quoted and escapes:
            esc = "".join(re.escape(e) for e in escapes)
            v = fn("regexp_replace", v, s(f"[{esc}](.)"), s("\\1"), s("g"))
        if not is_quoted:
            v = fn("trim", v)
        # a quoted alternative that matched has its quotes in the whole match
        cond = exp.NEQ(this=fn("struct_extract", struct.copy(), s(g)), expression=s("")) \
            if is_quoted else exp.true()
        whens.append((cond, v))
    value = case(whens[:-1], whens[-1][1]) if len(whens) > 1 else whens[0][1]
    return case([(matched, value)], s(""))
