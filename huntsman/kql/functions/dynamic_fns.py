"""KQL functions on dynamic arrays, sets and property bags.

Dynamic values are DuckDB ``JSON``. An array is worked on as a ``JSON[]`` list (``TRY_CAST``
gives null for anything that is not a JSON array, and normalizes every element to compact JSON
text, so that equal values compare equal as text); a property bag as a ``MAP(VARCHAR, JSON)``.
A JSON ``null`` element becomes a SQL NULL inside such a list, so element comparisons are
NULL-aware (``list_position`` finds NULL).

Every function here returns null when an argument that must be an array (or a bag) is not one,
as ``array_length`` does (https://learn.microsoft.com/kusto/query/array-length-function).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable

from sqlglot import exp

from huntsman.kql.functions import FUNCTIONS, LowerContext, register
from huntsman.kql.functions.convert import json_value, to_dynamic
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

_JSON_LIST = "JSON[]"
_BAG = "MAP(VARCHAR, JSON)"
_NUMERIC_JSON = ("BIGINT", "UBIGINT", "DOUBLE")
_names = itertools.count(1)


def fresh(prefix: str = "v") -> str:
    """A lambda parameter name that no column or other lambda of the query uses."""
    return f"__{prefix}{next(_names)}"


def ref(name: str) -> exp.Expr:
    return exp.column(name)


def field(struct: exp.Expr, name: str) -> exp.Expr:
    return fn("struct_extract", struct, s(name))


def struct(**fields: exp.Expr) -> exp.Expr:
    return exp.Struct(expressions=[exp.PropertyEQ(this=exp.to_identifier(k), expression=v)
                                   for k, v in fields.items()])


def _simple(e: exp.Expr) -> bool:
    """True when repeating ``e`` in SQL costs nothing (a column or a constant)."""
    if isinstance(e, (exp.Column, exp.Literal, exp.Null, exp.Boolean)):
        return True
    if isinstance(e, (exp.Cast, exp.TryCast)):
        return isinstance(e.this, (exp.Literal, exp.Null, exp.Boolean))
    if isinstance(e, exp.Anonymous) and e.name.lower() == "struct_extract":
        return isinstance(e.expressions[0], exp.Column)  # a value bound by bind()
    return isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal)


def bind(values: list[exp.Expr], body: Callable[[list[exp.Expr]], exp.Expr]) -> exp.Expr:
    """``body`` applied to the values, each computed once.

    DuckDB has no LET inside an expression; a one-element ``list_transform`` gives one. The values
    stay outside the lambda (lambdas cannot contain subqueries such as ``toscalar()``).
    """
    if all(_simple(v) for v in values):
        return body(values)
    p = fresh("b")
    names = [f"f{i}" for i in range(len(values))]
    packed = struct(**dict(zip(names, values, strict=True)))
    inner = body([field(ref(p), k) for k in names])
    return fn("list_extract", fn("list_transform", exp.Array(expressions=[packed]),
                                 lambda_([p], inner)), n(1))


def as_list(a: Arg) -> exp.Expr:
    """A dynamic array as ``JSON[]``; NULL when the value is not an array."""
    return cast(json_value(a), _JSON_LIST, safe=True)


def as_bag(a: Arg) -> exp.Expr:
    """A dynamic property bag as ``MAP(VARCHAR, JSON)``; NULL when it is not a bag."""
    v = json_value(a)
    return case([(fn("json_type", v).eq(s("OBJECT")), cast(v, _BAG, safe=True))],
                cast(exp.Null(), _BAG))


def to_json_value(e: exp.Expr) -> exp.Expr:
    return cast(fn("to_json", e), "JSON")


def element_json(a: Arg) -> exp.Expr:
    """A scalar as the compact JSON text an array element holding it has."""
    if a.type == "dynamic":
        return fn("json", json_value(a))
    return to_json_value(to_dynamic(a)) if a.type in ("datetime", "timespan", "guid") \
        else to_json_value(a.sql)


def null_json() -> exp.Expr:
    return cast(exp.Null(), "JSON")


def _dynamic_only(ctx: LowerContext, a: Args, fname: str) -> None:
    for i, x in enumerate(a):
        if x.type != "dynamic":
            raise ctx.semantic_error(
                f"{fname}(): argument {i + 1} must be a dynamic array, got {x.type}")


def list_distinct_ordered(lst: exp.Expr) -> exp.Expr:
    """Distinct elements in order of first appearance (DuckDB's list_distinct reorders)."""
    def body(v: list[exp.Expr]) -> exp.Expr:
        e, i = fresh("e"), fresh("i")
        return fn("list_filter", v[0], lambda_([e, i], exp.EQ(
            this=fn("list_position", v[0], ref(e)), expression=ref(i))))
    return bind([lst], body)


def contains(lst: exp.Expr, x: exp.Expr) -> exp.Expr:
    """NULL-aware membership (a JSON null element matches a null)."""
    return fn("coalesce", exp.GT(this=fn("list_position", lst, x), expression=n(0)), exp.false())


def all_lists(lists: list[exp.Expr], body: exp.Expr) -> exp.Expr:
    """``body`` when every list is non-NULL (every argument an array), else null."""
    return case([(or_(*[exp.Is(this=x, expression=exp.Null()) for x in lists]), null_json())],
                body)


# ---------------------------------------------------------------- arrays


@register("array_concat", "dynamic dynamic*", "dynamic")
def _array_concat(ctx: LowerContext, a: Args) -> exp.Expr:
    """All arrays concatenated; null when an argument is not an array."""
    def body(ls: list[exp.Expr]) -> exp.Expr:
        out = ls[0]
        for x in ls[1:]:
            out = fn("list_concat", out, x)
        return all_lists(ls, to_json_value(out))
    return bind([as_list(x) for x in a], body)


@register("array_slice", "dynamic long long", "dynamic")
def _array_slice(ctx: LowerContext, a: Args) -> exp.Expr:
    """Elements start..end (inclusive; negative counts from the end; out-of-range ignored)."""
    def body(v: list[exp.Expr]) -> exp.Expr:
        lst, start, end = v
        length = fn("len", lst)

        def resolve(i: exp.Expr) -> exp.Expr:
            return case([(exp.LT(this=i, expression=n(0)), exp.Add(this=length, expression=i))], i)
        lo = fn("greatest", resolve(start), n(0))
        hi = fn("least", resolve(end), exp.Sub(this=length, expression=n(1)))
        sliced = fn("list_slice", lst, exp.Add(this=lo, expression=n(1)),
                    exp.Add(this=hi, expression=n(1)))
        empty = cast(exp.Array(expressions=[]), _JSON_LIST)
        return case([(exp.Is(this=lst, expression=exp.Null()), null_json()),
                     (or_(exp.Is(this=start, expression=exp.Null()),
                          exp.Is(this=end, expression=exp.Null())), null_json()),
                     (exp.GT(this=lo, expression=hi), to_json_value(empty))],
                    to_json_value(sliced))
    return bind([as_list(a[0]), a[1].sql, a[2].sql], body)


@register("array_reverse", "dynamic", "dynamic")
def _array_reverse(ctx: LowerContext, a: Args) -> exp.Expr:
    return to_json_value(fn("list_reverse", as_list(a[0])))


@register("array_sum", "dynamic", "real")
def _array_sum(ctx: LowerContext, a: Args) -> exp.Expr:
    """Sum of the elements as real; null when an element is not a number."""
    def body(v: list[exp.Expr]) -> exp.Expr:
        lst = v[0]
        e = fresh("e")
        bad = fn("list_filter", lst, lambda_([e], or_(
            exp.Is(this=ref(e), expression=exp.Null()),
            exp.Not(this=exp.In(this=fn("json_type", ref(e)),
                                expressions=[s(t) for t in _NUMERIC_JSON])))))
        e2 = fresh("e")
        total = fn("list_sum", fn("list_transform", lst, lambda_([e2], cast(ref(e2), "DOUBLE"))))
        return case([(exp.Is(this=lst, expression=exp.Null()), cast(exp.Null(), "DOUBLE")),
                     (exp.GT(this=fn("len", bad), expression=n(0)), cast(exp.Null(), "DOUBLE"))],
                    coalesce(total, cast(n(0), "DOUBLE")))
    return bind([as_list(a[0])], body)


@register("array_index_of", "dynamic any long? long? long?", "long")
def _array_index_of(ctx: LowerContext, a: Args) -> exp.Expr:
    """0-based position of the occurrence-th match at or after start within length elements."""
    start = a[2].sql if len(a) > 2 else n(0)
    length = a[3].sql if len(a) > 3 else n(-1)
    occurrence = a[4].sql if len(a) > 4 else n(1)

    def body(v: list[exp.Expr]) -> exp.Expr:
        lst, value, st, ln, occ = v
        size = fn("len", lst)
        first = fn("greatest", case([(exp.LT(this=st, expression=n(0)),
                                      exp.Add(this=size, expression=st))], st), n(0))
        e, i = fresh("e"), fresh("i")
        pos = exp.Sub(this=ref(i), expression=n(1))
        inside = and_(exp.GTE(this=pos, expression=first),
                      or_(exp.EQ(this=ln, expression=n(-1)),
                          exp.LT(this=pos, expression=exp.Add(this=first, expression=ln))))
        hit = and_(exp.NullSafeEQ(this=ref(e), expression=value), inside)
        marks = fn("list_transform", lst, lambda_([e, i], case([(hit, pos)], None)))
        p = fresh("p")
        found = fn("list_filter", marks, lambda_([p], exp.Not(
            this=exp.Is(this=ref(p), expression=exp.Null()))))
        return case([(exp.Is(this=lst, expression=exp.Null()), cast(exp.Null(), "BIGINT")),
                     (or_(exp.LT(this=occ, expression=n(0)),
                          exp.LT(this=ln, expression=n(-1))), cast(exp.Null(), "BIGINT"))],
                    cast(coalesce(fn("list_extract", found, occ), n(-1)), "BIGINT"))
    return bind([as_list(a[0]), element_json(a[1]), start, length, occurrence], body)


def _sort(ctx: LowerContext, a: Args, desc: bool, fname: str) -> exp.Expr:
    nulls_last: exp.Expr = exp.true()
    arrays = a
    if a[-1].type == "bool":
        if len(a) < 2:
            raise ctx.semantic_error(f"{fname}(): expects at least one dynamic array")
        nulls_last, arrays = a[-1].sql, a[:-1]
    _dynamic_only(ctx, arrays, fname)

    def body(ls: list[exp.Expr]) -> exp.Expr:
        first = ls[0]
        e, i = fresh("e"), fresh("i")
        el = ref(e)
        jt = fn("json_type", el)
        is_null = exp.Is(this=el, expression=exp.Null())
        rank = case([(exp.In(this=jt, expressions=[s(t) for t in _NUMERIC_JSON]), n(0)),
                     (jt.eq(s("VARCHAR")), n(1))], n(3))
        num = case([(exp.In(this=jt, expressions=[s(t) for t in _NUMERIC_JSON]),
                      cast(el, "DOUBLE"))], cast(n(0), "DOUBLE"))
        text = case([(jt.eq(s("VARCHAR")), fn("json_extract_string", el, s("$")))],
                    coalesce(cast(el, "VARCHAR"), s("")))
        # where nulls go: the sort is ascending or descending on the whole key
        null_key = case([(nulls_last, n(-1 if desc else 1))], n(1 if desc else -1))
        key = struct(z=case([(is_null, null_key)], n(0)),
                     r=case([(is_null, n(0))], rank),
                     x=case([(is_null, cast(n(0), "DOUBLE"))], num),
                     t=case([(is_null, s(""))], text),
                     i=exp.Neg(this=ref(i)) if desc else ref(i))
        keys = fn("list_transform", first, lambda_([e, i], key))
        order = fn("list_sort", keys, s("DESC" if desc else "ASC"))
        k = fresh("k")
        idx = field(ref(k), "i")
        perm = fn("list_transform", order, lambda_([k], fn("abs", idx) if desc else idx))
        outs = []
        for lst in ls:
            q = fresh("q")
            reordered = fn("list_transform", perm, lambda_([q], fn("list_extract", lst, ref(q))))
            outs.append(case([(exp.EQ(this=fn("len", lst), expression=fn("len", first)),
                               to_json_value(reordered))], null_json()))
        if len(outs) == 1:
            return case([(exp.Is(this=first, expression=exp.Null()), null_json())], outs[0])
        return case([(exp.Is(this=first, expression=exp.Null()), null_json())],
                    fn("json_array", *outs))
    return bind([as_list(x) for x in arrays], body)


@register("array_sort_asc", "dynamic any*", "dynamic")
def _array_sort_asc(ctx: LowerContext, a: Args) -> exp.Expr:
    """Sorts the first array (numbers, then strings, then others; nulls last unless told) and
    orders the other arrays the same way. With several arrays Kusto returns several columns; here
    the result is one dynamic array of the sorted arrays (so ``array_sort_asc(a, b)[1]`` works)."""
    return _sort(ctx, a, False, "array_sort_asc")


@register("array_sort_desc", "dynamic any*", "dynamic")
def _array_sort_desc(ctx: LowerContext, a: Args) -> exp.Expr:
    """As array_sort_asc, in descending order."""
    return _sort(ctx, a, True, "array_sort_desc")


@register("zip", "dynamic dynamic dynamic*", "dynamic")
def _zip(ctx: LowerContext, a: Args) -> exp.Expr:
    """[[a0, b0, ...], [a1, b1, ...], ...] up to the longest array, missing elements null."""
    if len(a) > 16:
        raise ctx.semantic_error("zip(): accepts between 2 and 16 arrays")

    def body(ls: list[exp.Expr]) -> exp.Expr:
        longest = fn("greatest", *[fn("len", x) for x in ls])
        i = fresh("i")
        row = fn("json_array", *[fn("list_extract", x, ref(i)) for x in ls])
        rows = fn("list_transform", fn("range", n(1), exp.Add(this=longest, expression=n(1))),
                  lambda_([i], row))
        return all_lists(ls, to_json_value(rows))
    return bind([as_list(x) for x in a], body)


# ---------------------------------------------------------------- sets


def _set_op(ctx: LowerContext, a: Args, op: str) -> exp.Expr:
    if len(a) > 64:
        raise ctx.semantic_error(f"set_{op}(): accepts between 2 and 64 arrays")

    def body(ls: list[exp.Expr]) -> exp.Expr:
        if op == "union":
            out = ls[0]
            for x in ls[1:]:
                out = fn("list_concat", out, x)
            return all_lists(ls, to_json_value(list_distinct_ordered(out)))
        e = fresh("e")
        tests = [contains(x, ref(e)) for x in ls[1:]]
        keep = and_(*tests) if op == "intersect" else exp.Not(this=exp.Paren(this=or_(*tests)))
        picked = fn("list_filter", list_distinct_ordered(ls[0]), lambda_([e], keep))
        return all_lists(ls, to_json_value(picked))
    return bind([as_list(x) for x in a], body)


@register("set_union", "dynamic dynamic dynamic*", "dynamic")
def _set_union(ctx: LowerContext, a: Args) -> exp.Expr:
    """Distinct values of all arrays, in order of first appearance."""
    return _set_op(ctx, a, "union")


@register("set_intersect", "dynamic dynamic dynamic*", "dynamic")
def _set_intersect(ctx: LowerContext, a: Args) -> exp.Expr:
    """Distinct values of the first array that are in every other array."""
    return _set_op(ctx, a, "intersect")


@register("set_difference", "dynamic dynamic dynamic*", "dynamic")
def _set_difference(ctx: LowerContext, a: Args) -> exp.Expr:
    """Distinct values of the first array that are in none of the others."""
    return _set_op(ctx, a, "difference")


# ---------------------------------------------------------------- property bags

_ENTRY = "STRUCT(key VARCHAR, value JSON)[]"


def _entries(bag: exp.Expr) -> exp.Expr:
    return fn("map_entries", bag)


def _bag_json(entries: exp.Expr) -> exp.Expr:
    return to_json_value(fn("map_from_entries", entries))


@register("bag_merge", "dynamic dynamic dynamic*", "dynamic")
def _bag_merge(ctx: LowerContext, a: Args) -> exp.Expr:
    """One bag with every key of the inputs; for a key in several bags the leftmost value wins.
    An argument that is not a bag adds nothing."""
    if len(a) > 64:
        raise ctx.semantic_error("bag_merge(): accepts between 2 and 64 bags")

    def body(bags: list[exp.Expr]) -> exp.Expr:
        empty = cast(exp.Array(expressions=[]), _ENTRY)
        entries = [coalesce(_entries(b), empty) for b in bags]
        out = entries[0]
        for ent in entries[1:]:
            e, x = fresh("e"), fresh("x")
            keys = fn("list_transform", out, lambda_([x], field(ref(x), "key")))
            out = fn("list_concat", out, fn("list_filter", ent, lambda_([e], exp.Not(
                this=fn("coalesce", fn("list_contains", keys, field(ref(e), "key")),
                        exp.false())))))
        return _bag_json(out)
    return bind([as_bag(x) for x in a], body)


def _parse_path(path: str) -> list[str] | None:
    """Keys of a JSONPath such as ``$.a.b`` or ``$['a']["b"]``; None when it is not one."""
    if not path.startswith("$"):
        return None
    keys: list[str] = []
    rest = path[1:]
    token = re.compile(r"""\.([^.\[\]]+)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]""")
    while rest:
        m = token.match(rest)
        if not m:
            return None
        keys.append(next(g for g in m.groups() if g is not None))
        rest = rest[m.end():]
    return keys


_Tree = dict[str, "_Tree | None"]


def _remove_tree(ctx: LowerContext, bag: exp.Expr, tree: _Tree) -> exp.Expr:
    """``bag`` (a JSON object) without the keys marked None in ``tree``; nested for sub-trees."""
    drop = [k for k, v in tree.items() if v is None]
    nested = {k: v for k, v in tree.items() if v is not None}
    entries = _entries(cast(bag, _BAG, safe=True))
    e = fresh("e")
    if drop:
        entries = fn("list_filter", entries, lambda_([e], exp.Not(this=exp.In(
            this=field(ref(e), "key"), expressions=[s(k) for k in drop]))))
    if nested:
        e2 = fresh("e")
        whens: list[tuple[exp.Expr, exp.Expr]] = []
        for k, sub in nested.items():
            assert sub is not None
            inner = field(ref(e2), "value")
            whens.append((field(ref(e2), "key").eq(s(k)), case(
                [(fn("json_type", inner).eq(s("OBJECT")), _remove_tree(ctx, inner, sub))],
                inner)))
        entries = fn("list_transform", entries, lambda_([e2], struct(
            key=field(ref(e2), "key"), value=case(whens, field(ref(e2), "value")))))
    return _bag_json(entries)


@register("bag_remove_keys", "dynamic dynamic", "dynamic")
def _bag_remove_keys(ctx: LowerContext, a: Args) -> exp.Expr:
    """The bag without the given keys (first-level names, or JSONPath such as '$.a.b' for nested
    keys when the list of keys is a constant)."""
    bag = json_value(a[0])
    keys = a[1]
    if keys.is_const and isinstance(keys.const, list):
        tree: _Tree = {}
        for k in keys.const:
            if not isinstance(k, str):
                continue
            path = _parse_path(k) if k.startswith("$") else [k]
            if not path:
                continue
            node = tree
            for part in path[:-1]:
                child = node.get(part, {})
                if child is None:
                    break
                node[part] = child
                node = child
            else:
                node[path[-1]] = None
        return bind([bag], lambda v: case([(fn("json_type", v[0]).eq(s("OBJECT")),
                                            _remove_tree(ctx, v[0], tree))], null_json()))
    if keys.type != "dynamic":
        raise ctx.semantic_error("bag_remove_keys(): the keys must be a dynamic array")

    def body(v: list[exp.Expr]) -> exp.Expr:
        b, ks = v
        k, e = fresh("k"), fresh("e")
        names = fn("list_transform", ks, lambda_([k], case(
            [(fn("starts_with", ref(k), s("$.")), fn("substr", ref(k), n(3)))], ref(k))))
        kept = fn("list_filter", _entries(b), lambda_([e], exp.Not(this=coalesce(
            fn("list_contains", names, field(ref(e), "key")), exp.false()))))
        return case([(exp.Is(this=b, expression=exp.Null()), null_json())], _bag_json(kept))
    return bind([as_bag(a[0]), cast(json_value(keys), "VARCHAR[]", safe=True)], body)


@register("bag_has_key", "dynamic string", "bool")
def _bag_has_key(ctx: LowerContext, a: Args) -> exp.Expr:
    """Whether the bag has the key (a first-level name, or a JSONPath such as '$.a.b')."""
    bag = json_value(a[0])
    key = a[1]
    is_bag = fn("json_type", bag).eq(s("OBJECT"))
    if key.is_const and isinstance(key.const, str):
        if key.const.startswith("$"):
            path = _parse_path(key.const)
            if path is None:
                raise ctx.semantic_error(f"bag_has_key(): invalid JSONPath '{key.const}'")
            if not path:
                return coalesce(is_bag, exp.false())
            duck = "$" + "".join("." + json.dumps(p) for p in path)
            return coalesce(and_(is_bag, fn("json_exists", bag, s(duck))), exp.false())
        return coalesce(and_(is_bag, fn("list_contains", fn("json_keys", bag), key.sql)),
                        exp.false())
    plain = fn("list_contains", fn("json_keys", bag), key.sql)
    by_path = fn("try", fn("json_exists", bag, key.sql))
    return coalesce(and_(is_bag, case([(fn("starts_with", key.sql, s("$")), by_path)], plain)),
                    exp.false())


# ---------------------------------------------------------------- deprecated aliases
# Documented aliases of functions defined in scalar.py: the lowering is looked up when called.


@register("pack_dictionary", "any any*", "dynamic")
def _pack_dictionary(ctx: LowerContext, a: Args) -> exp.Expr:
    """Deprecated alias of bag_pack() (https://learn.microsoft.com/kusto/query/pack-function)."""
    return FUNCTIONS["bag_pack"].lower(ctx, a)


@register("arraylength", "dynamic", "long")
def _arraylength(ctx: LowerContext, a: Args) -> exp.Expr:
    """Deprecated alias of array_length()
    (https://learn.microsoft.com/kusto/query/array-length-function)."""
    return FUNCTIONS["array_length"].lower(ctx, a)
