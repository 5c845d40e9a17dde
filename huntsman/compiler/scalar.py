"""Scalar expressions → typed sqlglot expressions (binding names and inferring Kusto types).

Implements KQL's operator semantics: ``has`` term matching, case-insensitive ``=~``/``in~``,
total equality (``==`` with a null operand is false, ``!=`` true), integer division,
datetime/timespan arithmetic and dynamic member access.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from huntsman.compiler.scope import (
    Env,
    FunctionBinding,
    Rel,
    RelBinding,
    ScalarBinding,
    TabularBinding,
)
from huntsman.kql import ast as A
from huntsman.kql.functions import FUNCTIONS, Function
from huntsman.kql.functions.convert import convert, json_text, json_value, to_string
from huntsman.kql.functions.network import GEO_FIELDS, geo_field
from huntsman.kql.functions.sql import (
    NOCONST,
    Arg,
    and_,
    case,
    cast,
    coalesce,
    col,
    fn,
    literal,
    n,
    or_,
    s,
)
from huntsman.kql.types import INTEGRAL, NUMERIC, numeric_result

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

TERM = r"[^\pL\pN]"
UNSUPPORTED_FUNCTIONS: dict[str, str] = {}
"""Functions refused by name, with the reason (rather than 'Unknown function')."""

STAR_OPS = {"has", "!has", "has_cs", "!has_cs", "hasprefix", "!hasprefix", "hasprefix_cs",
            "!hasprefix_cs", "hassuffix", "!hassuffix", "hassuffix_cs", "!hassuffix_cs",
            "contains", "!contains", "contains_cs", "!contains_cs", "startswith",
            "!startswith", "startswith_cs", "!startswith_cs", "endswith", "!endswith",
            "endswith_cs", "!endswith_cs", "=~", "!~", "matches regex"}
LIKE_SPECIAL = re.compile(r"([\\%_])")


_ATOMS = (exp.Column, exp.Literal, exp.Anonymous, exp.Cast, exp.TryCast, exp.Paren,
          exp.Boolean, exp.Null, exp.Func, exp.Subquery, exp.Window)


def p(e: exp.Expr) -> exp.Expr:
    """Parenthesize a compound operand: sqlglot does not add parentheses by precedence."""
    return e if isinstance(e, _ATOMS) and not isinstance(e, exp.Binary) else exp.Paren(this=e)


def ilike(e: exp.Expr, needle: str, before: str = "", after: str = "") -> exp.Expr:
    """``e ILIKE before || needle || after`` with the needle taken literally. DuckDB has no
    default escape character, so a needle without ``%`` or ``_`` goes in as it is and keeps
    the engine's fast path; otherwise it is escaped with ``\\`` and ``ESCAPE '\\'`` is added."""
    if "%" not in needle and "_" not in needle:
        return exp.ILike(this=e, expression=s(before + needle + after))
    escaped = LIKE_SPECIAL.sub(r"\\\1", needle)
    return exp.Escape(this=exp.ILike(this=e, expression=s(before + escaped + after)),
                      expression=s("\\"))


def term_regex(needle: str, ci: bool, prefix: bool = True, suffix: bool = True) -> str:
    """RE2 pattern for Kusto's ``has``: the needle bounded by non-alphanumerics (``_`` too)."""
    body = re.escape(needle)
    if prefix and needle[:1].isalnum():
        body = f"(?:^|{TERM}){body}"
    if suffix and needle[-1:].isalnum():
        body = f"{body}(?:$|{TERM})"
    return ("(?i)" if ci else "") + body


class ScalarCompiler:
    """Compiles expressions against one row scope (``rel``) and ``let`` environment."""

    def __init__(self, compiler: Compiler, rel: Rel | None, env: Env, *,
                 aggregate: bool = False, table_alias: str | None = None,
                 window_ok: bool = False):
        self.c = compiler
        self.rel = rel
        self.env = env
        self.aggregate = aggregate
        self.table_alias = table_alias
        self.window_ok = window_ok
        self.search_cs = False  # search kind=case_sensitive: terms match case-sensitively

    def error(self, msg: str, node: Any = None) -> Exception:
        return self.c.semantic_error(msg, getattr(node, "pos", None))

    # ------------------------------------------------------------ entry points

    def row_compiler(self) -> ScalarCompiler:
        """The compiler of an aggregate's arguments (row scope, no aggregates)."""
        return ScalarCompiler(self.c, self.rel, self.env, table_alias=self.table_alias)

    def compile(self, e: A.Expr) -> Arg:
        method = getattr(self, f"visit_{type(e).__name__}", None)
        if method is None:
            raise self.c.unsupported(f"expression '{type(e).__name__}' is not supported", e)
        return method(e)  # type: ignore[no-any-return]

    def predicate(self, e: A.Expr) -> exp.Expr:
        """A `where` condition: null counts as false, so `==` needs no null guard."""
        if isinstance(e, A.Binary) and e.op == "and":
            return and_(self.predicate(e.left), self.predicate(e.right))
        if isinstance(e, A.Binary) and e.op in ("==",):
            left, right = self.compile(e.left), self.compile(e.right)
            return self.compare(e.op, left, right, e, guard=False).sql
        a = self.compile(e)
        if a.type != "bool":
            raise self.error(f"The predicate must be a bool expression, not {a.type}", e)
        return a.sql

    # ------------------------------------------------------------ leaves

    def visit_Literal(self, e: A.Literal) -> Arg:
        return Arg(literal(e.value, e.type), e.type, e.value)

    def visit_TypeLiteral(self, e: A.TypeLiteral) -> Arg:
        return Arg(s(e.type), "string", e.type)

    def visit_Name(self, e: A.Name) -> Arg:
        if self.rel is not None:
            c = self.rel.col(e.name)
            if c is None and e.name == "TimeGenerated":
                c = self.rel.col("Timestamp")
            if c is not None:
                return Arg(col(c.sql, self.table_alias), c.type, name=c.name)
        b = self.env.lookup(e.name)
        if isinstance(b, ScalarBinding):
            return Arg(b.sql.copy(), b.type, b.const)
        if isinstance(b, FunctionBinding) and not b.fn.params:
            return self.call_user_function(e.name, b, [], e)
        if isinstance(b, (TabularBinding, RelBinding)):
            raise self.error(f"'{e.name}' is a tabular expression and cannot be used as a "
                             f"scalar value (use toscalar())", e)
        raise self.error(f"Failed to resolve column or scalar expression named '{e.name}'", e)

    def visit_Star(self, e: A.Star) -> Arg:
        raise self.error("'*' is not allowed here", e)

    def visit_SearchTerm(self, e: A.SearchTerm) -> Arg:
        from huntsman.compiler.search import term_match
        return Arg(term_match(self, e, self.search_cs), "bool")

    def star_match(self, e: A.Binary) -> Arg:
        """``* has "x"``: the string operator applied to every column (any may match)."""
        right = self.compile(e.right)
        R = self.as_text(right, e)
        hits: list[exp.Expr] = []
        for c in self.rel.cols if self.rel is not None else []:
            a = Arg(col(c.sql, self.table_alias), c.type)
            hits.append(self.string_op(e.op, self.as_text(a, e), R, e).sql)
        if not hits:
            return Arg(exp.false(), "bool")
        if e.op.startswith("!") and e.op != "!~":
            return Arg(and_(*hits), "bool")
        return Arg(or_(*hits), "bool")

    def visit_Subquery(self, e: A.Subquery) -> Arg:
        raise self.error("A tabular expression is not allowed here", e)

    # ------------------------------------------------------------ dynamic access

    def visit_Member(self, e: A.Member) -> Arg:
        if (isinstance(e.obj, A.Call) and e.obj.name == "geo_info_from_ip_address"
                and e.name in GEO_FIELDS and len(e.obj.args) == 1 and not any(e.obj.arg_names)):
            # one field of the place: read that column alone instead of building the bag
            self.compile(e.obj)  # the call's own checks (argument type, errors)
            return Arg(geo_field(self.compile(e.obj.args[0]), e.name), "dynamic")
        base = self.compile(e.obj)
        return self.json_path(base, f".{json_key(e.name)}", e)

    def visit_Index(self, e: A.Index) -> Arg:
        base = self.compile(e.obj)
        idx = self.compile(e.index)
        if idx.is_const and isinstance(idx.const, str):
            return self.json_path(base, f".{json_key(idx.const)}", e)
        if idx.is_const and isinstance(idx.const, int):
            i = idx.const
            return self.json_path(base, f"[{i}]" if i >= 0 else f"[#{i}]", e)
        if base.type != "dynamic":
            raise self.error(f"Cannot index a value of type {base.type}", e)
        if idx.type in INTEGRAL:
            path = fn("concat", s("$["), cast(idx.sql, "VARCHAR"), s("]"))
        else:
            path = fn("concat", s('$."'), to_string(idx), s('"'))
        return Arg(fn("json_extract", json_value(base), path), "dynamic")

    def json_path(self, base: Arg, step: str, node: Any) -> Arg:
        if base.type != "dynamic":
            raise self.error(f"Cannot access a member of a value of type {base.type} "
                             f"(use parse_json() first)", node)
        if base.json is not None:
            root, path = base.json
        else:
            root, path = base.sql, "$"
        path += step
        return Arg(fn("json_extract", root, s(path)), "dynamic", json=(root, path))

    # ------------------------------------------------------------ operators

    def visit_Unary(self, e: A.Unary) -> Arg:
        a = self.compile(e.operand)
        if a.type not in NUMERIC and a.type != "timespan":
            raise self.error(f"Unary '-' is not defined for {a.type}", e)
        return Arg(exp.Neg(this=p(a.sql)), a.type)

    def visit_Binary(self, e: A.Binary) -> Arg:
        op = e.op
        if op in ("and", "or"):
            left, right = self.compile(e.left), self.compile(e.right)
            for side in (left, right):
                if side.type != "bool":
                    raise self.error(f"'{op}' expects bool operands, not {side.type}", e)
            node = exp.And if op == "and" else exp.Or
            return Arg(node(this=p(left.sql), expression=p(right.sql)), "bool")
        if isinstance(e.left, A.Star) and op in STAR_OPS:
            return self.star_match(e)
        left, right = self.compile(e.left), self.compile(e.right)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return self.compare(op, left, right, e)
        if op in ("+", "-", "*", "/", "%"):
            return self.arithmetic(op, left, right, e)
        return self.string_op(op, left, right, e)

    def coerce_pair(self, left: Arg, right: Arg, node: Any) -> tuple[Arg, Arg, str]:
        lt, rt = left.type, right.type
        if lt == rt:
            if lt == "dynamic":
                return (Arg(json_text(left), "string"), Arg(json_text(right), "string"), "string")
            return left, right, lt
        if lt in NUMERIC and rt in NUMERIC:
            return left, right, numeric_result(lt, rt)
        if lt == "dynamic":
            return Arg(convert(left, rt), rt), right, rt
        if rt == "dynamic":
            return left, Arg(convert(right, lt), lt), lt
        if {lt, rt} == {"guid", "string"}:
            return Arg(to_string(left), "string"), Arg(to_string(right), "string"), "string"
        if left.is_const and left.const is None:
            return Arg(literal(None, rt), rt, None), right, rt
        if right.is_const and right.const is None:
            return left, Arg(literal(None, lt), lt, None), lt
        raise self.error(f"Cannot compare values of types {lt} and {rt}", node)

    def compare(self, op: str, left: Arg, right: Arg, node: Any, guard: bool = True) -> Arg:
        left, right, t = self.coerce_pair(left, right, node)
        nodes: dict[str, type[exp.Binary]] = {"==": exp.EQ, "!=": exp.NEQ, "<": exp.LT,
                                              "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
        L, R = p(left.sql), p(right.sql)
        out: exp.Expr = nodes[op](this=L, expression=R)
        if op not in ("==", "!=") or t == "string":
            return Arg(out, "bool")
        # Kusto's equality is total when one side is null (== false, != true); null == null
        # stays null. In a `where` conjunct a null `==` is dropped anyway, so no guard there.
        lnull = left.is_const and left.const is None
        rnull = right.is_const and right.const is None
        if lnull or rnull:
            other = right if lnull else left
            if lnull and rnull:
                return Arg(cast(exp.Null(), "BOOLEAN"), "bool")
            return Arg(case([(exp.Is(this=p(other.sql), expression=exp.Null()),
                              cast(exp.Null(), "BOOLEAN"))],
                            exp.false() if op == "==" else exp.true()), "bool")
        if op == "==" and not guard:
            return Arg(out, "bool")
        value = exp.false() if op == "==" else exp.true()
        if left.is_const or right.is_const:
            return Arg(coalesce(out, value), "bool")
        both_null = and_(exp.Is(this=L, expression=exp.Null()),
                         exp.Is(this=R.copy(), expression=exp.Null()))
        return Arg(case([(both_null, cast(exp.Null(), "BOOLEAN"))], coalesce(out, value)),
                   "bool")

    def arithmetic(self, op: str, left: Arg, right: Arg, node: Any) -> Arg:
        lt, rt = left.type, right.type
        if lt == "dynamic" and rt in NUMERIC:
            left, lt = Arg(convert(left, "real"), "real"), "real"
        if rt == "dynamic" and lt in NUMERIC:
            right, rt = Arg(convert(right, "real"), "real"), "real"
        L, R = p(left.sql), p(right.sql)
        if lt in NUMERIC and rt in NUMERIC:
            t = numeric_result(lt, rt)
            if op == "+":
                return Arg(exp.Add(this=L, expression=R), t)
            if op == "-":
                return Arg(exp.Sub(this=L, expression=R), t)
            if op == "*":
                return Arg(exp.Mul(this=L, expression=R), t)
            if op == "/":
                if t in INTEGRAL:
                    return Arg(exp.IntDiv(this=L, expression=R), t)
                return Arg(exp.Div(this=cast(L, "DOUBLE"), expression=R), t)
            if t in INTEGRAL:
                # Kusto's modulo is never negative: -14 % 12 == 10, 14 % -12 == 2
                m = fn("abs", R)
                return Arg(exp.Mod(this=exp.Paren(this=exp.Add(
                    this=exp.Mod(this=L, expression=m), expression=m.copy())),
                    expression=m.copy()), t)
            return Arg(exp.Mod(this=L, expression=R), t)
        if lt == "datetime" and rt == "timespan" and op in ("+", "-"):
            node_cls = exp.Add if op == "+" else exp.Sub
            return Arg(node_cls(this=L, expression=fn("to_microseconds", R)), "datetime")
        if lt == "timespan" and rt == "datetime" and op == "+":
            return Arg(exp.Add(this=R, expression=fn("to_microseconds", L)), "datetime")
        if lt == "datetime" and rt == "datetime" and op == "-":
            return Arg(exp.Sub(this=fn("epoch_us", L), expression=fn("epoch_us", R)), "timespan")
        if lt == "timespan" and rt == "timespan":
            if op == "+":
                return Arg(exp.Add(this=L, expression=R), "timespan")
            if op == "-":
                return Arg(exp.Sub(this=L, expression=R), "timespan")
            if op == "/":
                return Arg(exp.Div(this=cast(L, "DOUBLE"), expression=R), "real")
            if op == "%":
                return Arg(exp.Mod(this=L, expression=R), "timespan")
        if lt == "timespan" and rt in NUMERIC and op in ("*", "/"):
            scale: type[exp.Binary] = exp.Mul if op == "*" else exp.Div
            return Arg(cast(fn("round", scale(this=L, expression=R)), "BIGINT"), "timespan")
        if lt in NUMERIC and rt == "timespan" and op == "*":
            return Arg(cast(fn("round", exp.Mul(this=L, expression=R)), "BIGINT"), "timespan")
        raise self.error(f"Operator '{op}' is not defined for {lt} and {rt}", node)

    def as_text(self, a: Arg, node: Any) -> Arg:
        if a.type == "string":
            return a
        return Arg(to_string(a), "string", a.const if isinstance(a.const, str) else NOCONST)

    def string_op(self, op: str, left: Arg, right: Arg, node: Any) -> Arg:
        negate = op.startswith("!") and op != "!~"
        base = op[1:] if negate else op
        L = self.as_text(left, node)
        R = self.as_text(right, node)
        out = self.string_match(base, L, R, node)
        if negate:
            out = exp.Not(this=exp.Paren(this=out))
        return Arg(out, "bool")

    def string_match(self, op: str, L: Arg, R: Arg, node: Any) -> exp.Expr:
        const = R.const if R.is_const and isinstance(R.const, str) else None
        x = L.sql
        if op == "!~":
            return exp.Not(this=exp.Paren(this=self.string_match("=~", L, R, node)))
        if op == "matches regex":
            return fn("regexp_matches", x, R.sql)
        cs = op.endswith("_cs")
        base = op[:-3] if cs else op
        if const is None:
            return self.string_match_dynamic(base, cs, x, R.sql)
        if base == "=~":
            return ilike(x, const)
        if base == "contains":
            if cs:
                return fn("contains", x, s(const))
            return ilike(x, const, "%", "%")
        if base == "startswith":
            return fn("starts_with", x, s(const)) if cs else ilike(x, const, after="%")
        if base == "endswith":
            return fn("ends_with", x, s(const)) if cs else ilike(x, const, before="%")
        if base in ("has", "hasprefix", "hassuffix"):
            if const == "":
                return exp.true()
            regex = term_regex(const, ci=not cs, prefix=base != "hassuffix",
                               suffix=base != "hasprefix")
            # a cheap substring scan first; the term-boundary regex runs only on candidates
            pre = fn("contains", x, s(const)) if cs else ilike(x, const, "%", "%")
            return and_(pre, fn("regexp_matches", x, s(regex)))
        raise self.c.unsupported(f"operator '{op}' is not supported", node)

    def string_match_dynamic(self, base: str, cs: bool, x: exp.Expr,
                             r: exp.Expr) -> exp.Expr:
        lx = x if cs else fn("lower", x)
        lr = r if cs else fn("lower", r)
        if base == "=~":
            return exp.EQ(this=fn("lower", x), expression=fn("lower", r))
        if base == "contains":
            return fn("contains", lx, lr)
        if base == "startswith":
            return fn("starts_with", lx, lr)
        if base == "endswith":
            return fn("ends_with", lx, lr)
        esc = fn("regexp_escape", r)
        pre = s("(?:^|[^\\pL\\pN])") if base != "hassuffix" else s("")
        post = s("(?:$|[^\\pL\\pN])") if base != "hasprefix" else s("")
        flags = s("" if cs else "(?i)")
        return fn("regexp_matches", x, fn("concat", flags, pre, esc, post))

    def visit_Between(self, e: A.Between) -> Arg:
        v = self.compile(e.left)
        lo = self.compile(e.low)
        hi = self.compile(e.high)
        if v.type == "datetime" and hi.type == "timespan":
            hi = Arg(exp.Add(this=lo.sql, expression=fn("to_microseconds", hi.sql)), "datetime")
        if v.type not in ("long", "int", "real", "decimal", "datetime", "timespan", "dynamic"):
            raise self.error(f"between expects numbers, datetimes or timespans, not {v.type}",
                             e)
        v1, lo, _ = self.coerce_pair(v, lo, e)
        v2, hi, _ = self.coerce_pair(v, hi, e)
        out: exp.Expr = exp.Between(this=p(v1.sql), low=p(lo.sql), high=p(hi.sql))
        if e.negated:
            out = exp.Not(this=exp.Paren(this=out))
        return Arg(out, "bool")

    def visit_InExpr(self, e: A.InExpr) -> Arg:
        left = self.compile(e.left)
        op = e.op
        if op in ("has_any", "has_all"):
            return self.has_any_all(op, left, e)
        ci = op.endswith("~")
        negate = op.startswith("!")
        if e.subquery is not None or (len(e.items) == 1 and isinstance(e.items[0], A.Name)
                                      and self.is_tabular_name(e.items[0].name)):
            return self.in_subquery(left, e, ci, negate)
        items = self.in_items(e.items)
        if left.type == "dynamic":
            left = Arg(json_text(left), "string")
        values: list[exp.Expr] = []
        dyn_arrays: list[Arg] = []
        for it in items:
            if it.type == "dynamic" and not it.is_const:
                dyn_arrays.append(it)
                continue
            if left.type == "string" or it.type == "string":
                it = self.as_text(it, e)
                left = self.as_text(left, e)
            v = it.sql
            if ci:
                v = s(it.const.lower()) if isinstance(it.const, str) else fn("lower", v)
            values.append(v)
        lhs = fn("lower", left.sql) if ci else left.sql
        conds: list[exp.Expr] = []
        if values:
            conds.append(exp.In(this=lhs, expressions=values))
        for arr in dyn_arrays:
            elems = fn("list_transform", cast(json_value(arr), "JSON[]"),
                       exp.Lambda(this=fn("lower" if ci else "concat",
                                          fn("json_extract_string", exp.column("j"), s("$"))),
                                  expressions=[exp.to_identifier("j")]))
            conds.append(fn("list_contains", elems, lhs if left.type == "string"
                            else cast(lhs, "VARCHAR")))
        out = or_(*conds) if conds else exp.false()
        if left.type != "string":
            out = coalesce(out, exp.false())
        if negate:
            out = exp.Not(this=exp.Paren(this=out))
        return Arg(out, "bool")

    def is_tabular_name(self, name: str) -> bool:
        if self.rel is not None and self.rel.col(name) is not None:
            return False
        b = self.env.lookup(name)
        if isinstance(b, (TabularBinding, RelBinding)):
            return True
        return b is None and self.c.has_table(name)

    def in_items(self, items: list[A.Expr]) -> list[Arg]:
        out: list[Arg] = []
        for it in items:
            a = self.compile(it)
            if a.type == "dynamic" and a.is_const and isinstance(a.const, list):
                for v in a.const:
                    t = _json_kusto_type(v)
                    out.append(Arg(literal(v, t), t, v))
            else:
                out.append(a)
        return out

    def in_subquery(self, left: Arg, e: A.InExpr, ci: bool, negate: bool) -> Arg:
        q = e.subquery if e.subquery is not None else A.TableRef(e.items[0].name,  # type: ignore[attr-defined]
                                                                  pos=e.pos)
        rel = self.c.tabular(q, self.env)
        if not rel.cols:
            raise self.error("The subquery of 'in' returns no columns", e)
        first = rel.cols[0]
        sub_arg = Arg(col(first.sql), first.type)
        if left.type == "string" or first.type == "string":
            left = self.as_text(left, e)
            sub_arg = self.as_text(sub_arg, e)
        val = fn("lower", sub_arg.sql) if ci else sub_arg.sql
        sub = exp.select(val).from_(exp.to_identifier(rel.source, quoted=True), copy=False).where(
            exp.Not(this=exp.Is(this=sub_arg.sql, expression=exp.Null())), copy=False)
        lhs = fn("lower", left.sql) if ci else left.sql
        out: exp.Expr = exp.In(this=lhs, query=exp.Subquery(this=sub))
        if left.type != "string":
            out = coalesce(out, exp.false())
        if negate:
            out = exp.Not(this=exp.Paren(this=out))
        return Arg(out, "bool")

    def has_any_all(self, op: str, left: Arg, e: A.InExpr) -> Arg:
        L = self.as_text(left, e)
        if e.subquery is not None or (len(e.items) == 1 and isinstance(e.items[0], A.Name)
                                      and self.is_tabular_name(e.items[0].name)):
            return self.has_any_subquery(op, L, e)
        items = self.in_items(e.items)
        consts: list[str] = []
        for it in items:
            if not it.is_const:
                raise self.c.unsupported(f"'{op}' needs constant terms", e)
            consts.append(it.const if isinstance(it.const, str) else str(it.const))
        if not consts:
            return Arg(exp.true() if op == "has_all" else exp.false(), "bool")
        if op == "has_all":
            return Arg(and_(*[self.string_match("has", L, Arg(s(c), "string", c), e)
                              for c in consts]), "bool")
        terms = [c for c in consts if c != ""]
        if len(terms) < len(consts):
            return Arg(exp.true(), "bool")
        if len(terms) == 1:
            return Arg(self.string_match("has", L, Arg(s(terms[0]), "string", terms[0]), e),
                       "bool")
        # A plain alternation of the terms is one fast RE2 DFA pass over every row; the exact
        # term-boundary check (Unicode classes, which make a combined DFA explode) then runs
        # only on the few candidate rows.
        uniq = sorted(set(terms), key=lambda t: (-len(t), t))
        alternation = "|".join(re.escape(t.lower()) for t in uniq)
        pre = fn("regexp_matches", fn("lower", L.sql), s(alternation))
        exact = or_(*[fn("regexp_matches", L.sql.copy(), s(term_regex(t, ci=True)))
                      for t in uniq])
        return Arg(and_(pre, exact), "bool")

    def has_any_subquery(self, op: str, L: Arg, e: A.InExpr) -> Arg:
        q = e.subquery if e.subquery is not None else A.TableRef(
            e.items[0].name, pos=e.pos)  # type: ignore[attr-defined]
        rel = self.c.tabular(q, self.env)
        alias = "__terms"
        term = self.as_text(Arg(col(rel.cols[0].sql, alias), rel.cols[0].type), e)
        outer = self.rel.source if self.rel is not None else None

        def qualify(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Column) and not node.table and outer:
                return col(node.name, outer)
            return node

        text = L.sql.copy().transform(qualify) if self.table_alias is None else L.sql
        hit = self.string_match_dynamic("has", False, text, term.sql)
        source = exp.Table(this=exp.to_identifier(rel.source, quoted=True),
                           alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        if op == "has_any":
            sub = exp.select(exp.Literal.number(1)).from_(source, copy=False).where(hit, copy=False)
            return Arg(exp.Exists(this=sub), "bool")
        miss = exp.select(exp.Literal.number(1)).from_(source, copy=False).where(
            exp.Not(this=exp.Paren(this=hit)), copy=False)
        return Arg(exp.Not(this=exp.Exists(this=miss)), "bool")

    # ------------------------------------------------------------ calls

    def visit_Call(self, e: A.Call) -> Arg:
        name = e.name
        if name == "toscalar":
            return self.toscalar(e)
        if name in ("row_number", "prev", "next", "row_cumsum"):
            return self.window(e)
        if name == "column_ifexists":
            return self.column_ifexists(e)
        if name == "ingestion_time":
            if e.args:
                raise self.error("ingestion_time() takes no arguments", e)
            hidden = "__ingestion_time"
            if self.rel is not None and hidden in self.rel.physical:
                return Arg(col(hidden, self.table_alias), "datetime")
            return Arg(literal(None, "datetime"), "datetime", None)
        b = self.env.lookup(name)
        if isinstance(b, FunctionBinding):
            return self.call_user_function(name, b, e.args, e)
        f = FUNCTIONS.get(name)
        if f is None and name in UNSUPPORTED_FUNCTIONS:
            raise self.c.unsupported(f"{name}() is not supported: {UNSUPPORTED_FUNCTIONS[name]}",
                                     e)
        if f is None:
            if name in ("materialize",):
                raise self.error("materialize() must be used as a tabular expression", e)
            raise self.error(f"Unknown function: '{name}'", e)
        if f.kind == "aggregate":
            if not self.aggregate:
                raise self.error(f"The aggregate function '{name}' can only be used in "
                                 f"summarize (or make-series)", e)
            inner = self.row_compiler()
            args = [inner.compile(a) for a in e.args]
            return self.apply(f, args, e)
        args = [self.compile(a) for a in e.args]
        return self.apply(f, args, e)

    def apply(self, f: Function, args: list[Arg], node: Any) -> Arg:
        lo, hi = f.arity
        if len(args) < lo or (hi is not None and len(args) > hi):
            expect = f"{lo}" if lo == hi else (f"{lo} to {hi}" if hi is not None
                                               else f"at least {lo}")
            raise self.error(f"The function '{f.name}' expects {expect} argument(s), "
                             f"got {len(args)}", node)
        checked = [self.check_arg(f, i, a, node) for i, a in enumerate(args)]
        try:
            rtype = f.return_type(checked)
            sql = f.lower(self.c, checked)
        except (TypeError, ValueError) as err:
            raise self.error(f"{f.name}(): {err}", node) from None
        return Arg(sql, rtype, name=checked[0].name if checked else None)

    def check_arg(self, f: Function, i: int, a: Arg, node: Any) -> Arg:
        kind = f.param_kind(i)
        t = a.type
        if kind == "any" or t == kind:
            return a
        if a.is_const and a.const is None:
            target = {"num": "real"}.get(kind, kind)
            return Arg(literal(None, target), target, None)
        ok = {
            "string": ("string",),
            "long": ("long", "int"),
            "num": ("long", "int", "real", "decimal"),
            "real": ("real", "long", "int", "decimal"),
            "datetime": ("datetime",),
            "timespan": ("timespan",),
            "bool": ("bool",),
            "dynamic": ("dynamic",),
        }[kind]
        if t in ok:
            if kind == "real" and t != "real":
                return Arg(cast(a.sql, "DOUBLE"), "real", a.const, a.name)
            return a
        if t == "dynamic":
            target = {"num": "real"}.get(kind, kind)
            return Arg(convert(a, target), target, name=a.name)
        if kind == "long" and t in ("real", "decimal"):
            return Arg(cast(fn("trunc", a.sql), "BIGINT"), "long", name=a.name)
        if kind == "string" and t == "guid":
            return Arg(to_string(a), "string", name=a.name)
        raise self.error(f"The function '{f.name}' expects argument {i + 1} of type "
                         f"{kind_name(kind)}, got {t}", node)

    def call_user_function(self, name: str, b: FunctionBinding, args: list[A.Expr],
                           node: Any) -> Arg:
        env = self.c.bind_function_args(name, b, args, self, node)
        body = b.fn.body
        for st in body[:-1]:
            self.c.statement(st, env)
        last = body[-1]
        assert isinstance(last, A.QueryStatement)
        query = last.query
        if isinstance(query, A.Tabular):
            if self.c.function_is_tabular(b):
                raise self.error(f"The function '{name}' returns a table and cannot be used "
                                 f"as a scalar value", node)
            assert isinstance(query, (A.TableRef, A.TabularCall))
            query = A.Name(query.name, pos=query.pos) if isinstance(query, A.TableRef) \
                else A.Call(query.name, query.args, pos=query.pos)
        # the body sees the parameters and the caller's row: columns shadow nothing here
        inner = ScalarCompiler(self.c, self.rel, env, aggregate=self.aggregate,
                               table_alias=self.table_alias, window_ok=self.window_ok)
        return inner.compile(query)

    def toscalar(self, e: A.Call) -> Arg:
        if len(e.args) == 1 and not isinstance(e.args[0], A.Subquery):
            return self.compile(e.args[0])
        if len(e.args) != 1 or not isinstance(e.args[0], A.Subquery):
            raise self.error("toscalar() expects a tabular expression", e)
        rel = self.c.tabular(e.args[0].query, self.env)
        if not rel.cols:
            raise self.error("toscalar(): the expression returns no columns", e)
        first = rel.cols[0]
        sub = exp.select(col(first.sql)).from_(exp.to_identifier(rel.source, quoted=True), copy=False)
        if rel.order:
            sub = sub.order_by(*[o.copy() for o in rel.order], copy=False)
        sub = sub.limit(1, copy=False)
        out: exp.Expr = exp.Subquery(this=sub)
        if first.type == "string":
            out = coalesce(out, s(""))
        return Arg(out, first.type)

    def window(self, e: A.Call) -> Arg:
        if not self.window_ok or self.rel is None or not self.rel.serialized:
            raise self.error(f"Function '{e.name}' cannot be invoked in current context: the "
                             f"row set must be serialized (use 'serialize' or 'sort' first)", e)
        part = self.c.partition(self.rel)

        def over(func: exp.Expr, spec: exp.WindowSpec | None = None) -> exp.Window:
            order = [o.copy() for o in (self.rel.order or [])] if self.rel else []
            return exp.Window(this=func, order=exp.Order(expressions=order) if order else None,
                              partition_by=[col(part)] if part else None, spec=spec)

        if e.name == "row_number":
            if len(e.args) > 1:
                raise self.c.unsupported("row_number() with a restart predicate is supported "
                                         "only as a whole expression of extend, project or "
                                         "serialize", e)
            start = self.compile(e.args[0]) if e.args else None
            out: exp.Expr = cast(over(exp.Anonymous(this="row_number", expressions=[])),
                                 "BIGINT")
            if start is not None:
                out = exp.Add(this=out, expression=exp.Sub(this=start.sql, expression=n(1)))
            return Arg(out, "long")
        if e.name == "row_cumsum":
            v = self.compile(e.args[0])
            w = over(exp.Anonymous(this="sum", expressions=[v.sql]),
                     exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING",
                                    end="CURRENT ROW"))
            return Arg(cast(w, "BIGINT") if v.type in INTEGRAL else w, v.type)
        if not e.args:
            raise self.error(f"{e.name}() expects a column", e)
        v = self.compile(e.args[0])
        offset = self.compile(e.args[1]).sql if len(e.args) > 1 else n(1)
        default = self.compile(e.args[2]) if len(e.args) > 2 else None
        fname = "lag" if e.name == "prev" else "lead"
        wargs = [v.sql, offset]
        if default is not None:
            wargs.append(convert(default, v.type) if default.type != v.type else default.sql)
        w = over(exp.Anonymous(this=fname, expressions=wargs))
        out = coalesce(w, s("")) if v.type == "string" else w
        return Arg(out, v.type)

    def column_ifexists(self, e: A.Call) -> Arg:
        if len(e.args) != 2:
            raise self.error("column_ifexists() expects a column name and a default value", e)
        name_arg = e.args[0]
        if not (isinstance(name_arg, A.Literal) and isinstance(name_arg.value, str)):
            raise self.error("column_ifexists(): the column name must be a constant string", e)
        if self.rel is not None and self.rel.col(name_arg.value) is not None:
            return self.compile(A.Name(name_arg.value, pos=e.pos))
        return self.compile(e.args[1])


def kind_name(kind: str) -> str:
    return {"num": "a number", "long": "long", "real": "real"}.get(kind, kind)


def json_key(key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return key
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json_kusto_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "long"
    if isinstance(v, float):
        return "real"
    if isinstance(v, str):
        return "string"
    return "dynamic"


def is_null_check(a: Arg) -> exp.Expr:
    return exp.Is(this=a.sql, expression=exp.Null())


__all__ = ["ScalarCompiler", "case"]
