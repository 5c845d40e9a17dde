"""``evaluate`` plugins: ``bag_unpack``, ``pivot`` and ``ipv4_lookup``.

``bag_unpack`` and ``pivot`` produce columns named after *data values* (the bag's keys, the
pivot column's values). A compiler cannot know them from the query alone, so there are two
ways to compile them:

* an explicit output schema, as Kusto documents it: ``evaluate bag_unpack(d) : (*, a:string,
  b:long)`` (``*`` keeps the input's other columns) or ``evaluate pivot(k) : (g:string, x:long)``;
* without one, the compiler asks its *probe* (a callback given to :class:`Compiler`) to run a
  small query over the rows built so far — the distinct keys and their JSON types, or the
  distinct pivot values — and builds the columns from the answer, as Kusto does at run time.
  Without a probe (and without a schema) the query fails with an error that says to give the
  schema.

``ipv4_lookup`` joins on IPv4 ranges: a row matches a lookup row when their address ranges
(an address is a /32 range; ``a.b.c.d/n`` a prefix range) overlap, which is equality under the
shorter of the two masks; extra key columns must be equal too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.join import joined_columns
from huntsman.compiler.scalar import ScalarCompiler, json_key
from huntsman.compiler.scope import Col, Env, Rel, unique_name
from huntsman.compiler.summarize import _contains_aggregate
from huntsman.kql import ast as A
from huntsman.kql.functions.convert import convert, to_string
from huntsman.kql.functions.sql import (
    Arg,
    alias,
    and_,
    case,
    cast,
    col,
    fn,
    n,
    s,
)

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

JSON_TYPES = {"VARCHAR": "string", "BIGINT": "long", "UBIGINT": "long", "HUGEINT": "long",
              "DOUBLE": "real", "BOOLEAN": "bool", "OBJECT": "dynamic", "ARRAY": "dynamic"}


def compile_evaluate(c: Compiler, rel: Rel, op: A.Evaluate, env: Env) -> Rel:
    if c.partition(rel) is not None:
        raise c.unsupported("evaluate is not supported inside mv-apply", op)
    if op.name == "bag_unpack":
        return bag_unpack(c, rel, op, env)
    if op.name == "pivot":
        return pivot(c, rel, op, env)
    if op.name == "ipv4_lookup":
        return ipv4_lookup(c, rel, op, env)
    raise c.unsupported(f"The '{op.name}' plugin is not supported", op)


def _args(c: Compiler, op: A.Evaluate, params: list[str]) -> dict[str, A.Expr]:
    """The plugin's arguments by parameter name (positional ones in order)."""
    out: dict[str, A.Expr] = {}
    names = op.arg_names or [None] * len(op.args)
    positional = 0
    for arg, name in zip(op.args, names, strict=True):
        if name is None:
            if positional >= len(params):
                raise c.semantic_error(f"{op.name}: too many arguments", op.pos)
            out[params[positional]] = arg
            positional += 1
        elif name not in params:
            raise c.semantic_error(f"{op.name}: unknown argument '{name}'", op.pos)
        else:
            out[name] = arg
    return out


def _const_string(c: Compiler, env: Env, e: A.Expr | None, what: str, default: str) -> str:
    if e is None:
        return default
    a = ScalarCompiler(c, None, env).compile(e)
    if not a.is_const or not isinstance(a.const, str):
        raise c.semantic_error(f"{what} must be a constant string", e.pos)
    return a.const


def _path(key: str) -> str:
    return "$." + json_key(key)


# ---------------------------------------------------------------- bag_unpack


def bag_unpack(c: Compiler, rel: Rel, op: A.Evaluate, env: Env) -> Rel:
    args = _args(c, op, ["column", "OutputColumnPrefix", "columnsConflict",
                         "ignoredProperties"])
    if "column" not in args:
        raise c.semantic_error("bag_unpack: expects the dynamic column to unpack", op.pos)
    target = args["column"]
    if not isinstance(target, A.Name) or rel.col(target.name) is None:
        raise c.semantic_error("bag_unpack: the first argument must be a column of the input",
                               target.pos)
    bag = rel.col(target.name)
    assert bag is not None
    if bag.type != "dynamic":
        raise c.semantic_error(f"bag_unpack: the column '{bag.name}' is of type {bag.type}, "
                               f"not dynamic", target.pos)
    prefix = _const_string(c, env, args.get("OutputColumnPrefix"), "bag_unpack: the prefix", "")
    conflict = _const_string(c, env, args.get("columnsConflict"), "bag_unpack: columnsConflict",
                             "error")
    if conflict not in ("error", "replace_source", "keep_source"):
        raise c.semantic_error("bag_unpack: columnsConflict must be 'error', 'replace_source' "
                               "or 'keep_source'", op.pos)
    ignored: set[str] = set()
    if "ignoredProperties" in args:
        ig = ScalarCompiler(c, None, env).compile(args["ignoredProperties"])
        if not ig.is_const or not isinstance(ig.const, list):
            raise c.semantic_error("bag_unpack: ignoredProperties must be a constant dynamic "
                                   "array", op.pos)
        ignored = {str(x) for x in ig.const}
    others = [x for x in rel.cols if x is not bag]
    d = col(bag.sql)
    # (output name, type, SQL) per column, in order
    out: list[tuple[str, str, exp.Expr]] = []
    if op.schema is not None:
        declared = {name for name, _ in op.schema}
        if op.schema_star:
            out += [(x.name, x.type, col(x.sql)) for x in others if x.name not in declared]
        for name, t in op.schema:
            src = rel.col(name)
            if src is not None and src is not bag and (conflict != "replace_source" or
                                                        not name.startswith(prefix)):
                v = col(src.sql) if src.type == t else convert(Arg(col(src.sql), src.type), t)
                out.append((name, t, v))
                continue
            key = name[len(prefix):] if prefix and name.startswith(prefix) else name
            out.append((name, t, _slot(d, key, t)))
    else:
        slots = _probe_slots(c, rel, bag, op)
        slots = [(k, t) for k, t in slots if k not in ignored]
        out += [(x.name, x.type, col(x.sql)) for x in others]
        for key, t in slots:
            name = prefix + key
            existing = next((i for i, o in enumerate(out) if o[0] == name), None)
            if existing is not None:
                if conflict == "error":
                    raise c.semantic_error(
                        f"bag_unpack: the slot '{key}' conflicts with the existing column "
                        f"'{name}' (use columnsConflict='replace_source' or 'keep_source')",
                        op.pos)
                if conflict == "keep_source":
                    continue
                out[existing] = (name, t, _slot(d, key, t))
                continue
            out.append((name, t, _slot(d, key, t)))
    taken: set[str] = set()
    names: list[str] = []
    sels: list[exp.Expr] = []
    cols: list[Col] = []
    for name, t, v in out:
        if name in names:
            raise c.semantic_error(f"bag_unpack: the output has two columns named '{name}'",
                                   op.pos)
        names.append(name)
        phys = c.namer.physical(name, taken)
        sels.append(alias(v, phys))
        cols.append(Col(name, t, phys))
    return c.add(exp.select(*sels).from_(c.src(rel), copy=False), cols)


def _slot(d: exp.Expr, key: str, t: str) -> exp.Expr:
    v = fn("json_extract", d.copy(), s(_path(key)))
    if t == "dynamic":
        return v
    return convert(Arg(v, "dynamic"), t)


def _probe_slots(c: Compiler, rel: Rel, bag: Col, op: A.Evaluate) -> list[tuple[str, str]]:
    """Ask the backend for the bag's top-level keys and the JSON types of their values."""
    d = col(bag.sql)
    k = exp.column("k")
    keys = exp.select(alias(fn("unnest", fn("json_keys", d)), "k"), alias(d.copy(), "d")).from_(
        c.src(rel), copy=False).where(exp.EQ(this=fn("json_type", d.copy()),
                                             expression=s("OBJECT")), copy=False)
    path = fn("concat", s('$."'), fn("replace", k, s('"'), s('\\"')), s('"'))
    t = fn("json_type", fn("json_extract", exp.column("d"), path))
    typed = exp.select(k.copy(), alias(t, "t")).from_(keys.subquery("__keys"), copy=False)
    probe = exp.select(exp.column("k"), alias(exp.ArrayAgg(this=exp.Distinct(
        expressions=[exp.column("t")])), "ts")).from_(typed.subquery("__types"),
                                                      copy=False).group_by(
        exp.column("k"), copy=False).order_by(exp.column("k"), copy=False)
    rows = c.run_probe(probe, "bag_unpack", op)
    out: list[tuple[str, str]] = []
    for key, types in rows:
        kinds = {JSON_TYPES.get(str(x), "dynamic") for x in (types or []) if x not in (None,
                                                                                     "NULL")}
        out.append((str(key), kinds.pop() if len(kinds) == 1 else "dynamic"))
    return out


# ---------------------------------------------------------------- pivot


class _Masked(ScalarCompiler):
    """Compiles an aggregation over only the rows where ``mask`` holds (others read as null)."""

    mask: exp.Expr

    def visit_Name(self, e: A.Name) -> Arg:
        a = super().visit_Name(e)
        if a.name is None:
            return a
        return Arg(case([(self.mask.copy(), a.sql)], None), a.type, name=a.name)

    def row_compiler(self) -> ScalarCompiler:
        inner = _Masked(self.c, self.rel, self.env, table_alias=self.table_alias)
        inner.mask = self.mask
        return inner

    def visit_Call(self, e: A.Call) -> Arg:
        if e.name == "count" and not e.args:
            return Arg(exp.Filter(this=exp.Count(this=exp.Star()), expression=exp.Where(
                this=self.mask.copy())), "long")
        return super().visit_Call(e)


def pivot(c: Compiler, rel: Rel, op: A.Evaluate, env: Env) -> Rel:
    if not op.args:
        raise c.semantic_error("pivot: expects the column to pivot", op.pos)
    if op.arg_names and any(op.arg_names):
        raise c.semantic_error("pivot: takes no named arguments", op.pos)
    pcol_arg = op.args[0]
    if not isinstance(pcol_arg, A.Name) or rel.col(pcol_arg.name) is None:
        raise c.semantic_error("pivot: the first argument must be a column of the input",
                               pcol_arg.pos)
    pcol = rel.col(pcol_arg.name)
    assert pcol is not None
    agg_expr: A.Expr = A.Call("count", [], pos=op.pos)
    if len(op.args) > 1:
        agg_expr = op.args[1]
        if not _contains_aggregate(agg_expr):
            raise c.semantic_error("pivot: the second argument must be an aggregation such as "
                                   "sum(x)", agg_expr.pos)
    agg_first = agg_expr.args[0].name if isinstance(agg_expr, A.Call) and agg_expr.args and \
        isinstance(agg_expr.args[0], A.Name) else None
    group: list[Col] = []
    for garg in op.args[2:]:
        if not isinstance(garg, A.Name) or rel.col(garg.name) is None:
            raise c.semantic_error("pivot: the columns after the aggregation must be columns "
                                   "of the input", garg.pos)
        gc = rel.col(garg.name)
        assert gc is not None
        group.append(gc)
    if not op.args[2:]:
        group = [x for x in rel.cols if x is not pcol and x.name != agg_first]
    key = Arg(col(pcol.sql), pcol.type)
    key_text = key.sql if pcol.type == "string" else to_string(key)
    if op.schema is not None:
        if op.schema_star:
            raise c.semantic_error("pivot: the output schema cannot use '*'", op.pos)
        group_names = {x.name for x in group}
        schema_groups = [name for name, _ in op.schema if name in group_names]
        group = [x for x in group if x.name in schema_groups]
        values = [(name, t) for name, t in op.schema if name not in group_names]
    else:
        rn = "__rn"
        inner = exp.select(alias(key_text.copy(), "v"), alias(exp.Window(
            this=exp.Anonymous(this="row_number", expressions=[])), rn)).from_(
            c.src(rel), copy=False)
        probe = exp.select(exp.column("v")).from_(inner.subquery("__pv"), copy=False).group_by(
            exp.column("v"), copy=False).order_by(fn("min", exp.column(rn)), copy=False)
        rows = c.run_probe(probe, "pivot", op)
        values = [(str(r[0]) if r[0] is not None else "", "") for r in rows]
    taken: set[str] = set()
    names: list[str] = []
    sels: list[exp.Expr] = []
    cols: list[Col] = []
    for g in group:
        names.append(g.name)
        phys = c.namer.physical(g.name, taken)
        sels.append(alias(col(g.sql), phys))
        cols.append(Col(g.name, g.type, phys))
    for value, declared in values:
        sc = _Masked(c, rel, env, aggregate=True)
        sc.mask = exp.NullSafeEQ(this=key_text.copy(), expression=s(value))
        a = sc.compile(agg_expr)
        v, t = a.sql, a.type
        if declared and declared != t:
            v, t = convert(Arg(v, t), declared), declared
        name = unique_name(value, names)
        names.append(name)
        phys = c.namer.physical(name, taken)
        sels.append(alias(v, phys))
        cols.append(Col(name, t, phys))
    if not cols:
        raise c.semantic_error("pivot: the result has no columns", op.pos)
    sel = exp.select(*sels).from_(c.src(rel), copy=False)
    if group:
        sel = sel.group_by(*[exp.Literal.number(i + 1) for i in range(len(group))], copy=False)
    return c.add(sel, cols)


# ---------------------------------------------------------------- ipv4_lookup

_IPV4 = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:/(\d{1,2}))?$"


def ipv4_parts(text: exp.Expr) -> exp.Expr:
    return fn("regexp_extract", fn("trim", text), s(_IPV4),
              exp.Array(expressions=[s(k) for k in ("a", "b", "c", "d", "p")]))


def _with_range(c: Compiler, rel: Rel, ip: Col) -> tuple[Rel, str, str]:
    """``rel`` with two hidden columns: the first and last address of ``ip``'s range (NULL
    when it is not an IPv4 address), computed in small steps."""
    taken = set(rel.physical)

    def step(cur: Rel, *sels: exp.Expr) -> Rel:
        return c.add(exp.select(exp.Star(), *sels).from_(c.src(cur), copy=False), rel.cols,
                     physical=set(taken))

    parts = c.namer.physical("__ip_parts", taken)
    text = col(ip.sql) if ip.type == "string" else to_string(Arg(col(ip.sql), ip.type))
    cur = step(rel, alias(ipv4_parts(text), parts))
    octets = [c.namer.physical(f"__ip_{k}", taken) for k in ("a", "b", "c", "d")]
    plen = c.namer.physical("__ip_p", taken)
    praw = fn("struct_extract", col(parts), s("p"))
    cur = step(cur, *[alias(cast(fn("struct_extract", col(parts), s(k)), "BIGINT", safe=True), o)
                      for k, o in zip("abcd", octets, strict=True)],
               alias(case([(exp.EQ(this=praw, expression=s("")), n(32))],
                          cast(praw.copy(), "BIGINT", safe=True)), plen))
    ok = and_(*[exp.LTE(this=col(o), expression=n(255)) for o in octets],
              exp.LTE(this=col(plen), expression=n(32)))
    value = exp.Add(this=exp.Add(this=exp.Add(
        this=exp.Mul(this=col(octets[0]), expression=n(16777216)),
        expression=exp.Mul(this=col(octets[1]), expression=n(65536))),
        expression=exp.Mul(this=col(octets[2]), expression=n(256))), expression=col(octets[3]))
    shift = exp.Paren(this=exp.Sub(this=n(32), expression=col(plen)))
    first = exp.BitwiseLeftShift(this=exp.Paren(this=exp.BitwiseRightShift(
        this=exp.Paren(this=value), expression=shift)), expression=shift.copy())
    lo = c.namer.physical("__ip_lo", taken)
    cur = step(cur, alias(case([(ok, first)], cast(exp.Null(), "BIGINT")), lo))
    size = exp.BitwiseLeftShift(this=cast(n(1), "BIGINT"), expression=shift.copy())
    hi = c.namer.physical("__ip_hi", taken)
    cur = step(cur, alias(exp.Sub(this=exp.Add(this=col(lo), expression=exp.Paren(this=size)),
                                  expression=n(1)), hi))
    return cur, lo, hi


def ipv4_lookup(c: Compiler, rel: Rel, op: A.Evaluate, env: Env) -> Rel:
    if len(op.args) < 3:
        raise c.semantic_error("ipv4_lookup: expects a lookup table, the source IPv4 column "
                               "and the lookup IPv4 column", op.pos)
    names = op.arg_names or [None] * len(op.args)
    unmatched = False
    positional: list[A.Expr] = []
    for arg, name in zip(op.args, names, strict=True):
        if name == "return_unmatched":
            a = ScalarCompiler(c, None, env).compile(arg)
            if a.type != "bool" or not a.is_const:
                raise c.semantic_error("ipv4_lookup: return_unmatched must be true or false",
                                       arg.pos)
            unmatched = bool(a.const)
        elif name is not None:
            raise c.semantic_error(f"ipv4_lookup: unknown argument '{name}'", arg.pos)
        else:
            positional.append(arg)
    last = positional[-1] if positional else None
    if isinstance(last, A.Literal) and last.type == "bool":
        positional.pop()
        unmatched = bool(last.value)
    table_arg = positional[0]
    lookup = c.tabular(c.expr_as_tabular(table_arg), env)
    src_arg, key_arg = positional[1], positional[2]
    if not isinstance(src_arg, A.Name) or rel.col(src_arg.name) is None:
        raise c.semantic_error("ipv4_lookup: the source IPv4 key must be a column of the input",
                               src_arg.pos)
    if not isinstance(key_arg, A.Name) or lookup.col(key_arg.name) is None:
        raise c.semantic_error("ipv4_lookup: the IPv4 lookup key must be a column of the "
                               "lookup table", key_arg.pos)
    extra: list[str] = []
    for e in positional[3:]:
        if not isinstance(e, A.Name) or rel.col(e.name) is None or lookup.col(e.name) is None:
            raise c.semantic_error("ipv4_lookup: an extra key must be a column of both tables",
                                   e.pos)
        extra.append(e.name)
    src_col, key_col = rel.col(src_arg.name), lookup.col(key_arg.name)
    assert src_col is not None and key_col is not None
    left, llo, lhi = _with_range(c, rel, src_col)
    right, rlo, rhi = _with_range(c, lookup, key_col)
    L, R = "__l", "__r"
    conds: list[exp.Expr] = [exp.LTE(this=col(llo, L), expression=col(rhi, R)),
                             exp.LTE(this=col(rlo, R), expression=col(lhi, L))]
    for name in extra:
        lc, rc = rel.col(name), lookup.col(name)
        assert lc is not None and rc is not None
        conds.append(exp.EQ(this=col(lc.sql, L), expression=col(rc.sql, R)))
    taken: set[str] = set()
    out_names: list[str] = []
    sels, cols = joined_columns(
        c, [(rel.cols, L, False), ([x for x in lookup.cols if x.name not in extra], R, unmatched)],
        out_names, taken)
    sel = exp.select(*sels).from_(exp.Table(this=c.src(left), alias=exp.TableAlias(
        this=exp.to_identifier(L, quoted=True))), copy=False).join(
        exp.Table(this=c.src(right), alias=exp.TableAlias(this=exp.to_identifier(
            R, quoted=True))), on=and_(*conds), join_type="LEFT" if unmatched else "INNER",
        copy=False)
    return c.add(sel, cols)


__all__ = ["compile_evaluate"]
