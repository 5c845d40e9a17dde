"""Tabular KQL → one SQL query: each pipe step becomes a CTE, one ``visit_<Operator>`` each.

>>> print(compile_kql("print x = 1 + 1").sql)
WITH "__s1" AS (SELECT CAST(1 AS BIGINT) + CAST(1 AS BIGINT) AS "x") SELECT "x" FROM "__s1"
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from huntsman.compiler.defender import INVOKE_FUNCTIONS, TABLE_FUNCTIONS
from huntsman.compiler.parens import parenthesize
from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import (
    Col,
    Env,
    FunctionBinding,
    Namer,
    Rel,
    RelBinding,
    ScalarBinding,
    TabularBinding,
    unique_name,
)
from huntsman.compiler.stored import Source, StoredEnv
from huntsman.errors import KqlError, KqlSemanticError, UnsupportedError
from huntsman.kql import ast as A
from huntsman.kql.functions import FUNCTIONS, default_result_name
from huntsman.kql.functions.convert import convert, json_value, to_string
from huntsman.kql.functions.sql import (
    Arg,
    alias,
    case,
    cast,
    cast_k,
    coalesce,
    col,
    fn,
    literal,
    n,
    s,
)
from huntsman.kql.parser import parse
from huntsman.kql.stored import StoredFunction
from huntsman.kql.types import DOTNET_TYPES, SQL_TYPES

if TYPE_CHECKING:
    from huntsman.compiler.external import ExternalInput

INGESTION_TIME = "__ingestion_time"
"""Every stored table has this hidden column: when its row was committed (``ingestion_time()``)."""

TableLookup = Callable[[str], "list[tuple[str, str]] | None"]


@dataclass
class CompiledQuery:
    """The result of compiling KQL: SQL text plus the Kusto schema of the result.

    ``external_inputs`` lists the files an ``externaldata`` source reads: the backend loads each
    one and registers it under its view name before running ``sql`` (see
    :class:`~huntsman.compiler.external.ExternalInput`)."""

    sql: str
    columns: list[tuple[str, str]]
    render: dict[str, Any] | None = None
    tables: list[str] = field(default_factory=list)
    expression: exp.Expr | None = None
    external_inputs: list[ExternalInput] = field(default_factory=list)


Probe = Callable[[CompiledQuery], "list[tuple[Any, ...]]"]
"""Runs a small compiler-generated query (with its external inputs) and returns its rows: how
``evaluate bag_unpack``/``pivot`` without an output schema learn their columns from the data."""


class Compiler:
    """Compiles one KQL script. ``tables`` maps a table name to its columns (or None).

    ``probe`` (optional) lets data-dependent schemas (``bag_unpack``, ``pivot``) be discovered
    by running a query; ``external_dirs`` are the only directories ``externaldata`` may read
    (none by default: externaldata is then disabled)."""

    def __init__(self, text: str, tables: TableLookup, table_names: Callable[[], list[str]],
                 now: datetime | None = None, dialect: str = "duckdb",
                 probe: Probe | None = None, external_dirs: Sequence[str | PathLike[str]] = (),
                 functions: Sequence[StoredFunction] | None = None,
                 window: tuple[datetime | None, datetime | None] | None = None):
        self.text = text
        self.functions = list(functions or ())
        self.window = _naive_window(window)
        self.sources: list[Source] = []  # stored functions parsed so far (see stored.py)
        self.virtual_end = len(text) + 1  # where the next stored declaration is placed
        self.lookup_table = tables
        self.table_names = table_names
        self.now = (now or datetime.now(UTC)).replace(tzinfo=None)
        self.dialect = dialect
        self.namer = Namer()
        self.ctes: list[exp.CTE] = []
        self.used_tables: list[str] = []
        self.probe = probe
        self.external_dirs = list(external_dirs)
        self.external_inputs: list[ExternalInput] = []
        self.partition_col: str | None = None  # mv-apply: the hidden row id of the subtables
        self.partition_source: Rel | None = None  # mv-apply: the numbered records

    def partition(self, rel: Rel | None) -> str | None:
        """Inside an ``mv-apply`` subquery: the physical row-id column that partitions ``rel``
        into per-record subtables (None elsewhere)."""
        p = self.partition_col
        if p is not None and rel is not None and p.lower() in rel.physical:
            return p
        return None

    # ------------------------------------------------------------ errors

    def position(self, pos: int | None) -> tuple[int, int]:
        return self.locate(pos)[:2]

    def locate(self, pos: int | None) -> tuple[int, int, str, str | None]:
        """(line, column, text, stored function name or None) of a syntax-tree position: in
        the query, or inside the body of the stored function it belongs to."""
        if pos is None:
            return 0, 0, self.text, None
        if pos > len(self.text):
            for src in self.sources:
                if src.base <= pos <= src.end:
                    line, column, text = src.locate(pos)
                    return line, column, text, src.name
        line = self.text.count("\n", 0, pos) + 1
        return line, pos - (self.text.rfind("\n", 0, pos) + 1) + 1, self.text, None

    def semantic_error(self, message: str, pos: int | None = None) -> KqlSemanticError:
        line, column, text, fn_name = self.locate(pos)
        if fn_name is not None:
            message = f"in function '{fn_name}': {message}"
        return KqlSemanticError(message, line, column, text)

    def unsupported(self, message: str, node: Any = None) -> UnsupportedError:
        line, column, text, fn_name = self.locate(getattr(node, "pos", None))
        if fn_name is not None:
            message = f"in function '{fn_name}': {message}"
        return UnsupportedError(message, line, column, text)

    def has_table(self, name: str) -> bool:
        return self.lookup_table(name) is not None

    # ------------------------------------------------------------ script

    def compile(self) -> CompiledQuery:
        script = parse(self.text)
        env = StoredEnv(self, self.functions).child() if self.functions else Env()
        last: A.Tabular | A.Expr | None = None
        for st in script.statements:
            if isinstance(st, A.QueryStatement):
                last = st.query
            else:
                self.statement(st, env)
        assert last is not None
        if not isinstance(last, A.Tabular):
            raise self.semantic_error("The query must end with a tabular expression",
                                      getattr(last, "pos", None))
        rel = self.tabular(last, env)
        select = exp.select(*[col(c.sql) for c in rel.cols]).from_(
            exp.to_identifier(rel.source, quoted=True), copy=False)
        if not rel.cols:
            raise self.semantic_error("The query result has no columns")
        if rel.order:
            select = select.order_by(*[o.copy() for o in rel.order], copy=False)
        if self.ctes:
            select.set("with_", exp.With(expressions=self.ctes))
        sql = parenthesize(select).sql(dialect=self.dialect, copy=False)
        return CompiledQuery(sql, [(c.name, c.type) for c in rel.cols], rel.render,
                             list(dict.fromkeys(self.used_tables)), select,
                             list(self.external_inputs))

    def run_probe(self, select: exp.Select, what: str, node: Any) -> list[tuple[Any, ...]]:
        """Run ``select`` (over the CTEs built so far) through the probe callback."""
        if self.probe is None:
            raise self.unsupported(
                f"{what} without an output schema needs the data to know its columns, and this "
                f"backend cannot run a query while compiling; give the output schema, e.g. "
                f"'evaluate {what}(...) : (*, Col:string)'", node)
        q = select.copy()
        if self.ctes:
            q.set("with_", exp.With(expressions=[c.copy() for c in self.ctes]))
        sql = parenthesize(q).sql(dialect=self.dialect, copy=False)
        return self.probe(CompiledQuery(sql, [], None, list(dict.fromkeys(self.used_tables)), q,
                                        list(self.external_inputs)))

    def statement(self, st: A.Statement, env: Env) -> None:
        if isinstance(st, A.Let):
            env.names[st.name] = self.let_binding(st, env)
        elif isinstance(st, A.Set):
            if st.name == "query_now" and st.value is not None:
                v = ScalarCompiler(self, None, env).compile(st.value)
                if v.type != "datetime" or not v.is_const or v.const is None:
                    raise self.semantic_error("query_now must be set to a datetime literal",
                                              st.pos)
                self.now = v.const
            # other request options are accepted and ignored
        elif isinstance(st, A.QueryStatement):
            raise self.semantic_error("Only the last statement may be a query", st.pos)

    def let_binding(self, st: A.Let, env: Env) -> Any:
        v = st.value
        if isinstance(v, A.FunctionDef):
            return FunctionBinding(v, env)
        if isinstance(v, A.Materialize):
            return TabularBinding(v.query, env, materialize=True)
        if isinstance(v, (A.TableRef, A.TabularCall)) and not isinstance(v, A.Pipe):
            # `let x = y;` / `let x = f(1);` may be scalar: decide by what the name is
            name = v.name
            b = env.lookup(name)
            is_tab = isinstance(b, (TabularBinding, RelBinding)) or (
                b is None and (self.has_table(name) or name in TABLE_FUNCTIONS)) or (
                isinstance(b, FunctionBinding) and self.function_is_tabular(b))
            if isinstance(v, A.TableRef) and "*" in name:
                is_tab = True
            if not is_tab:
                expr: A.Expr = A.Name(name, pos=v.pos) if isinstance(v, A.TableRef) \
                    else A.Call(name, v.args, pos=v.pos)
                return self.scalar_binding(expr, env)
            return TabularBinding(v, env)
        if isinstance(v, A.Tabular):
            return TabularBinding(v, env)
        return self.scalar_binding(v, env)

    def scalar_binding(self, e: A.Expr, env: Env) -> ScalarBinding:
        a = ScalarCompiler(self, None, env).compile(e)
        return ScalarBinding(a.sql, a.type, a.const)

    def function_is_tabular(self, b: FunctionBinding) -> bool:
        last = b.fn.body[-1]
        if not isinstance(last, A.QueryStatement) or not isinstance(last.query, A.Tabular):
            return False
        return not (isinstance(last.query, (A.TableRef, A.TabularCall))
                    and self.looks_scalar(last.query, b))

    def looks_scalar(self, q: A.TableRef | A.TabularCall, b: FunctionBinding) -> bool:
        """A body that is a bare name or call (``{ x }``, ``{ trim("1", s) }``) is scalar
        unless the name is a table or a tabular function."""
        if any(p.name == q.name and not p.tabular for p in b.fn.params):
            return True
        if any(p.name == q.name and p.tabular for p in b.fn.params):
            return False
        for st in b.fn.body[:-1]:
            if isinstance(st, A.Let) and st.name == q.name:
                v = st.value
                if isinstance(v, A.FunctionDef):
                    return not self.function_is_tabular(FunctionBinding(v, b.env))
                return not isinstance(v, A.Tabular) or isinstance(v, (A.TableRef,
                                                                       A.TabularCall))
        inner = b.env.lookup(q.name)
        if isinstance(inner, (TabularBinding, RelBinding)):
            return False
        if isinstance(inner, FunctionBinding):
            return not self.function_is_tabular(inner)
        if isinstance(inner, ScalarBinding):
            return True
        if isinstance(q, A.TabularCall):
            return q.name in FUNCTIONS
        return not self.has_table(q.name) and q.name not in TABLE_FUNCTIONS

    def bind_function_args(self, name: str, b: FunctionBinding, args: list[A.Expr],
                           caller: ScalarCompiler | None, node: Any,
                           input_rel: Rel | None = None, caller_env: Env | None = None) -> Env:
        params = b.fn.params
        env = b.env.child()
        given = list(args)
        if input_rel is not None:
            if not params or not params[0].tabular:
                raise self.semantic_error(f"The function '{name}' does not take a tabular "
                                          f"first parameter", getattr(node, "pos", None))
            env.names[params[0].name] = RelBinding(input_rel)
            params = params[1:]
        if len(given) > len(params):
            raise self.semantic_error(f"The function '{name}' expects {len(params)} "
                                      f"argument(s), got {len(given)}", getattr(node, "pos", None))
        arg_names = list(getattr(node, "arg_names", None) or [])
        if any(arg_names):
            by_name: dict[str, A.Expr] = {}
            positional: list[A.Expr] = []
            for given_arg, an in zip(given, arg_names + [None] * len(given), strict=False):
                if an is None:
                    positional.append(given_arg)
                elif not any(p.name == an for p in params):
                    raise self.semantic_error(f"The function '{name}' has no parameter "
                                              f"named '{an}'", getattr(node, "pos", None))
                else:
                    by_name[an] = given_arg
            ordered: list[A.Expr | None] = []
            pos_iter = iter(positional)
            for p in params:
                ordered.append(by_name[p.name] if p.name in by_name else next(pos_iter, None))
            given = ordered  # type: ignore[assignment]
        sc = caller or ScalarCompiler(self, None, caller_env or b.env)
        for i, p in enumerate(params):
            if i < len(given) and given[i] is not None:
                arg = given[i]
                if p.tabular:
                    q = arg if isinstance(arg, A.Tabular) else self.expr_as_tabular(arg)
                    env.names[p.name] = RelBinding(self.tabular(q, sc.env))
                    continue
                a = sc.compile(arg)
            elif p.default is not None:
                a = ScalarCompiler(self, None, b.env).compile(p.default)
            else:
                raise self.semantic_error(f"The function '{name}' is missing a value for "
                                          f"parameter '{p.name}'", getattr(node, "pos", None))
            if p.type and a.type != p.type and not (a.is_const and a.const is None):
                try:
                    a = Arg(convert(a, p.type), p.type, _converted_const(a, p.type))
                except ValueError:
                    raise self.semantic_error(
                        f"The function '{name}' expects parameter '{p.name}' of type {p.type}, "
                        f"got {a.type}", getattr(node, "pos", None)) from None
            env.names[p.name] = ScalarBinding(a.sql, p.type or a.type, a.const)
        return env

    def expr_as_tabular(self, e: A.Expr) -> A.Tabular:
        if isinstance(e, A.Name):
            return A.TableRef(e.name, pos=e.pos)
        if isinstance(e, A.Subquery):
            return e.query
        if isinstance(e, A.Call):
            return A.TabularCall(e.name, e.args, e.arg_names, pos=e.pos)
        raise self.semantic_error("Expected a tabular expression", e.pos)

    # ------------------------------------------------------------ CTEs

    def add(self, select: exp.Expr, cols: list[Col], like: Rel | None = None,
            physical: set[str] | None = None, materialized: bool = False) -> Rel:
        name = self.namer.cte()
        cte = exp.CTE(this=select, alias=exp.TableAlias(this=exp.to_identifier(name,
                                                                               quoted=True)))
        if materialized:
            cte.set("materialized", True)
        self.ctes.append(cte)
        rel = Rel(name, cols, physical if physical is not None else {c.sql.lower() for c in cols})
        if like is not None:
            rel.order = like.order
            rel.serialized = like.serialized
            rel.render = like.render
        return rel

    def src(self, rel: Rel) -> exp.Expr:
        return exp.to_identifier(rel.source, quoted=True)

    def scalar(self, rel: Rel | None, env: Env, **kw: Any) -> ScalarCompiler:
        return ScalarCompiler(self, rel, env, **kw)

    # ------------------------------------------------------------ sources

    def tabular(self, node: A.Tabular, env: Env) -> Rel:
        try:
            method = getattr(self, f"visit_{type(node).__name__}")
        except AttributeError:
            raise self.unsupported(f"'{type(node).__name__}' is not supported", node) from None
        return method(node, env)  # type: ignore[no-any-return]

    def visit_Pipe(self, node: A.Pipe, env: Env) -> Rel:
        pushed = self.push_filter_below_innerunique(node, env)
        if pushed is not None:
            return pushed
        rel = self.tabular(node.input, env)
        op = node.op
        method = getattr(self, f"visit_{type(op).__name__}", None)
        if method is None:
            raise self.unsupported(f"The '{type(op).__name__.lower()}' operator is not supported",
                                   op)
        return method(rel, op, env)  # type: ignore[no-any-return]

    def push_filter_below_innerunique(self, node: A.Pipe, env: Env) -> Rel | None:
        """``L | join (R) on k | where p(L's columns)`` filters L before the innerunique dedup,
        as Kusto's planner does; so the row kept per key is one that passes the filter."""
        join = node.input
        if not (isinstance(node.op, A.Where) and isinstance(join, A.Pipe)
                and isinstance(join.op, A.Join) and join.op.kind == "innerunique"):
            return None
        left = self.tabular(join.input, env)
        names = {n.name for n in _names_in(node.op.predicate)}
        if not names or not all(left.col(nm) is not None for nm in names):
            rel = self.visit_Join(left, join.op, env)
            return self.visit_Where(rel, node.op, env)
        filtered = self.visit_Where(left, node.op, env)
        return self.visit_Join(filtered, join.op, env)

    def visit_TableRef(self, node: A.TableRef, env: Env) -> Rel:
        name = node.name
        b = env.lookup(name)
        if isinstance(b, RelBinding):
            return b.rel
        if isinstance(b, TabularBinding):
            if b.rel is None:
                rel = self.tabular(b.node, b.env)
                if b.materialize:
                    rel = self.add(exp.select(exp.Star()).from_(self.src(rel), copy=False), rel.cols, rel,
                                   rel.physical, materialized=True)
                b.rel = rel
            return b.rel
        if isinstance(b, FunctionBinding):
            return self.call_tabular_function(name, b, [], node, caller_env=env)
        if isinstance(b, ScalarBinding):
            raise self.semantic_error(f"'{name}' is a scalar value, not a table", node.pos)
        cols = self.lookup_table(name)
        if cols is None:
            raise self.semantic_error(
                f"Failed to resolve table or column expression named '{name}'", node.pos)
        self.used_tables.append(name)
        physical = {c.lower() for c, _ in cols} | {INGESTION_TIME}
        rel = Rel(name, [Col(c, t, c) for c, t in cols], physical)
        return self.apply_window(rel)

    def apply_window(self, rel: Rel) -> Rel:
        """A stored table read under the query's time window: its rows with ``Timestamp`` in
        ``[start, end)`` (a plain filter on the scan, so zone maps still prune)."""
        if self.window is None:
            return rel
        ts = rel.col("Timestamp")
        if ts is None or ts.type != "datetime":
            return rel
        start, end = self.window
        conds: list[exp.Expr] = []
        if start is not None:
            conds.append(exp.GTE(this=col(ts.sql), expression=literal(start, "datetime")))
        if end is not None:
            conds.append(exp.LT(this=col(ts.sql), expression=literal(end, "datetime")))
        if not conds:
            return rel
        sel = exp.select(exp.Star()).from_(self.src(rel), copy=False).where(
            exp.and_(*conds), copy=False)
        out = self.add(sel, rel.cols, rel, rel.physical)
        out.alias = rel.source  # union/search label the rows with the table's name
        return out

    def visit_TabularCall(self, node: A.TabularCall, env: Env) -> Rel:
        b = env.lookup(node.name)
        if isinstance(b, FunctionBinding):
            return self.call_tabular_function(node.name, b, node.args, node, caller_env=env)
        if b is None and node.name in TABLE_FUNCTIONS:
            return TABLE_FUNCTIONS[node.name](self, node, env)
        if b is None and node.name in INVOKE_FUNCTIONS:
            raise self.semantic_error(f"'{node.name}' enriches the rows of a query: use it as "
                                      f"'| invoke {node.name}(...)'", node.pos)
        if node.name in FUNCTIONS:
            raise self.semantic_error(f"'{node.name}' is a scalar function, not a table",
                                      node.pos)
        raise self.semantic_error(f"Unknown function: '{node.name}'", node.pos)

    def call_tabular_function(self, name: str, b: FunctionBinding, args: list[A.Expr],
                              node: Any, input_rel: Rel | None = None,
                              caller_env: Env | None = None) -> Rel:
        env = self.bind_function_args(name, b, args, None, node, input_rel, caller_env)
        for st in b.fn.body[:-1]:
            self.statement(st, env)
        last = b.fn.body[-1]
        assert isinstance(last, A.QueryStatement)
        if not isinstance(last.query, A.Tabular):
            raise self.semantic_error(f"The function '{name}' returns a scalar, not a table",
                                      getattr(node, "pos", None))
        return self.tabular(last.query, env)

    def visit_Materialize(self, node: A.Materialize, env: Env) -> Rel:
        rel = self.tabular(node.query, env)
        return self.add(exp.select(exp.Star()).from_(self.src(rel), copy=False), rel.cols, rel,
                        rel.physical, materialized=True)

    def visit_Datatable(self, node: A.Datatable, env: Env) -> Rel:
        ncols = len(node.columns)
        if len(node.values) % ncols:
            raise self.semantic_error(
                f"datatable: {len(node.values)} values do not fill rows of {ncols} columns",
                node.pos)
        taken: set[str] = set()
        cols = [Col(name, t, self.namer.physical(name, taken)) for name, t in node.columns]
        sc = self.scalar(None, env)
        rows = []
        for r in range(0, len(node.values), ncols):
            row = []
            for c, v in zip(cols, node.values[r:r + ncols], strict=True):
                a = sc.compile(v)
                if not a.is_const:
                    raise self.semantic_error("datatable values must be constants", v.pos)
                if a.type != c.type and a.const is not None:
                    if c.type == "dynamic" or (a.type in ("long", "int", "real") and
                                               c.type in ("long", "int", "real", "decimal")):
                        a = Arg(convert(a, c.type), c.type)
                    else:
                        raise self.semantic_error(
                            f"datatable: value of type {a.type} in column '{c.name}' of type "
                            f"{c.type}", v.pos)
                row.append(cast_k(a.sql, c.type) if a.const is not None or c.type == "string"
                           else literal(None, c.type))
            rows.append(row)
        if not rows:
            sel = exp.select(*[alias(literal(None, c.type), c.sql)
                               for c in cols]).where(exp.false(), copy=False)
            return self.add(sel, cols)
        selects = [exp.select(*[alias(v, c.sql) for v, c in zip(row, cols,
                                                                                    strict=True)])
                   for row in rows]
        union: exp.Expr = selects[0]
        for sel in selects[1:]:
            union = exp.Union(this=union, expression=sel, distinct=False)
        return self.add(union, cols)

    def visit_Print(self, node: A.Print, env: Env) -> Rel:
        sc = self.scalar(None, env)
        cols: list[Col] = []
        taken: set[str] = set()
        sels = []
        names: list[str] = []
        for i, ne in enumerate(node.exprs):
            a = sc.compile(ne.expr)
            name = ne.names[0] if ne.names else self.default_name(ne.expr, a, names,
                                                                  f"print_{i}")
            names.append(name)
            c = Col(name, a.type, self.namer.physical(name, taken))
            cols.append(c)
            sels.append(alias(a.sql, c.sql))
        if not sels:
            raise self.semantic_error("print needs at least one expression", node.pos)
        return self.add(exp.select(*sels), cols)

    def visit_Range(self, node: A.Range, env: Env) -> Rel:
        sc = self.scalar(None, env)
        start, stop, step = (sc.compile(x) for x in (node.start, node.stop, node.step))
        if step.is_const and (step.const is None or step.const == 0):
            raise self.semantic_error("range: the step must not be zero or null", node.pos)
        c = Col(node.column, start.type, self.namer.physical(node.column, set()))
        if start.type == "datetime":
            if step.type != "timespan":
                raise self.semantic_error("range over datetimes needs a timespan step", node.pos)
            series = fn("generate_series", start.sql, convert(stop, "datetime"),
                        fn("to_microseconds", step.sql))
        elif start.type == "timespan" or start.type in ("long", "int", "real"):
            series = fn("generate_series", start.sql, stop.sql, step.sql)
        else:
            raise self.semantic_error(f"range cannot iterate over {start.type}", node.pos)
        sel = exp.select(alias(cast_k(exp.column("generate_series"), start.type), c.sql)).from_(series, copy=False)
        rel = self.add(sel, [c])
        rel.order = [exp.Ordered(this=col(c.sql), desc=step.is_const and isinstance(
            step.const, (int, float)) and step.const < 0)]
        rel.serialized = True
        return rel

    # ------------------------------------------------------------ naming

    def default_name(self, e: A.Expr, a: Arg, taken: list[str], fallback: str | None) -> str:
        name: str | None = None
        if isinstance(e, A.Name):
            name = e.name if a.name is None else a.name
        elif isinstance(e, (A.Member, A.Index)):
            name = self.path_name(e)
        elif isinstance(e, A.Call):
            first = e.args[0] if e.args else None
            first_name = None
            if isinstance(first, A.Name):
                first_name = first.name
            elif isinstance(first, (A.Member, A.Index)):
                first_name = self.path_name(first)
            name = default_result_name(e.name, first_name)
            if name is not None and name.endswith("_") and first_name is None and \
                    e.name not in ("count", "countif"):
                name = None
        if name is None:
            if fallback is not None:
                return unique_name(fallback, taken)
            i = 1
            while f"Column{i}" in taken:
                i += 1
            return f"Column{i}"
        return unique_name(name, taken)

    def path_name(self, e: A.Expr) -> str | None:
        if isinstance(e, A.Name):
            return e.name
        if isinstance(e, A.Member):
            base = self.path_name(e.obj)
            return f"{base}_{e.name}" if base else None
        if isinstance(e, A.Index):
            base = self.path_name(e.obj)
            if base and isinstance(e.index, A.Literal):
                return f"{base}_{e.index.value}"
            return base
        if isinstance(e, A.Call) and e.args:
            return self.path_name(e.args[0])
        return None

    # ------------------------------------------------------------ row operators

    def visit_Where(self, rel: Rel, op: A.Where, env: Env) -> Rel:
        pred = self.scalar(rel, env, window_ok=True).predicate(op.predicate)
        sel = exp.select(exp.Star()).from_(self.src(rel), copy=False).where(pred, copy=False)
        return self.add(sel, rel.cols, rel, rel.physical)

    def visit_Take(self, rel: Rel, op: A.Take, env: Env) -> Rel:
        a = self.scalar(None, env).compile(op.count)
        if a.type not in ("long", "int"):
            raise self.semantic_error("take expects a whole number of rows", op.pos)
        if a.is_const and (a.const is None or a.const < 0):
            raise self.semantic_error("take expects a number of rows of 0 or more", op.pos)
        sel = exp.select(exp.Star()).from_(self.src(rel), copy=False)
        part = self.partition(rel)
        if part is not None:
            w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                           partition_by=[col(part)],
                           order=exp.Order(expressions=[o.copy() for o in rel.order])
                           if rel.order else None)
            sel = sel.qualify(exp.LTE(this=w, expression=a.sql), copy=False)
            return self.add(sel, rel.cols, rel, rel.physical)
        if rel.order:
            sel = sel.order_by(*[o.copy() for o in rel.order], copy=False)
        sel = sel.limit(a.sql, copy=False)
        return self.add(sel, rel.cols, rel, rel.physical)

    def sort_keys(self, rel: Rel, keys: list[A.SortKey], env: Env) -> tuple[
            list[exp.Expr], list[exp.Ordered], list[Col]]:
        """Sort keys as hidden physical columns, so that the order survives later steps."""
        sc = self.scalar(rel, env, window_ok=True)
        extra: list[exp.Expr] = []
        ordered: list[exp.Ordered] = []
        hidden: list[Col] = []
        taken = set(rel.physical)
        for k in keys:
            a = sc.compile(k.expr)
            if a.type == "dynamic":
                a = Arg(to_string(a), "string")
            nulls_first = k.nulls_first if k.nulls_first is not None else not k.desc
            if isinstance(k.expr, A.Name) and rel.col(k.expr.name) is not None:
                c = rel.col(k.expr.name)
                assert c is not None
                ref = c.sql
            else:
                ref = self.namer.physical("__sortkey", taken)
                extra.append(alias(a.sql, ref))
                hidden.append(Col(ref, a.type, ref))
            ordered.append(exp.Ordered(this=col(ref), desc=k.desc, nulls_first=nulls_first))
        return extra, ordered, hidden

    def visit_Sort(self, rel: Rel, op: A.Sort, env: Env) -> Rel:
        extra, ordered, hidden = self.sort_keys(rel, op.keys, env)
        part = self.partition(rel)
        if part is not None:
            ordered = [exp.Ordered(this=col(part), desc=False, nulls_first=False), *ordered]
        sel = exp.select(exp.Star(), *extra).from_(self.src(rel), copy=False).order_by(*ordered, copy=False)
        out = self.add(sel, rel.cols, rel, rel.physical | {h.sql.lower() for h in hidden})
        out.order = ordered
        out.serialized = True
        return out

    def visit_Top(self, rel: Rel, op: A.Top, env: Env) -> Rel:
        n_arg = self.scalar(None, env).compile(op.count)
        if n_arg.type not in ("long", "int"):
            raise self.semantic_error("top expects a whole number of rows", op.pos)
        if n_arg.is_const and (n_arg.const is None or n_arg.const < 0):
            raise self.semantic_error("top expects a number of rows of 0 or more", op.pos)
        extra, ordered, hidden = self.sort_keys(rel, [op.key], env)
        part = self.partition(rel)
        if part is not None:
            step = self.add(exp.select(exp.Star(), *extra).from_(self.src(rel), copy=False),
                            rel.cols, rel, rel.physical | {h.sql.lower() for h in hidden})
            w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                           partition_by=[col(part)],
                           order=exp.Order(expressions=[o.copy() for o in ordered]))
            sel = exp.select(exp.Star()).from_(self.src(step), copy=False).qualify(
                exp.LTE(this=w, expression=n_arg.sql), copy=False)
            out = self.add(sel, rel.cols, rel, step.physical)
            out.order = [exp.Ordered(this=col(part), desc=False, nulls_first=False), *ordered]
            out.serialized = True
            return out
        sel = exp.select(exp.Star(), *extra).from_(self.src(rel), copy=False).order_by(*ordered, copy=False).limit(
            n_arg.sql, copy=False)
        out = self.add(sel, rel.cols, rel, rel.physical | {h.sql.lower() for h in hidden})
        out.order = ordered
        out.serialized = True
        return out

    def visit_Serialize(self, rel: Rel, op: A.Serialize, env: Env) -> Rel:
        if rel.order is None:
            taken = set(rel.physical)
            rn = self.namer.physical("__rn", taken)
            w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]))
            rel = self.add(exp.select(exp.Star(), alias(w, rn)).from_(
                self.src(rel), copy=False), rel.cols, rel, taken)
            rel.order = [exp.Ordered(this=col(rn), desc=False, nulls_first=False)]
        rel.serialized = True
        if op.exprs:
            return self.visit_Extend(rel, A.Extend(op.exprs, pos=op.pos), env)
        return rel

    def keep_order_columns(self, rel: Rel) -> list[exp.Expr]:
        """Physical order-key columns that an explicit select list must carry along."""
        out: list[exp.Expr] = []
        seen: set[str] = set()
        part = self.partition(rel)
        if part is not None:
            out.append(col(part))
            seen.add(part)
        for o in rel.order or []:
            for c in o.find_all(exp.Column):
                if c.name not in seen:
                    seen.add(c.name)
                    out.append(col(c.name))
        return out

    def visit_Extend(self, rel: Rel, op: A.Extend, env: Env) -> Rel:
        return self.extend_steps(rel, op, env)

    def extend_steps(self, rel: Rel, op: A.Extend, env: Env) -> Rel:
        """One select per group of independent assignments (later ones may use earlier ones)."""
        cols = list(rel.cols)
        taken = set(rel.physical)
        sels: list[exp.Expr] = []
        defined: set[str] = set()
        cur = rel

        def flush() -> None:
            nonlocal cur, sels, defined
            if sels:
                cur = self.add(exp.select(exp.Star(), *sels).from_(self.src(cur), copy=False), list(cols),
                               cur, set(taken))
                sels = []
                defined = set()

        def assign(name: str, sql: exp.Expr, ktype: str) -> None:
            phys = self.namer.physical(name, taken)
            sels.append(alias(sql, phys))
            new = Col(name, ktype, phys)
            for i, c in enumerate(cols):
                if c.name == name:
                    cols[i] = new
                    break
            else:
                cols.append(new)
            defined.add(name)

        for ne in op.exprs:
            refs = {x.name for x in _names_in(ne.expr)}
            if refs & defined:
                flush()
            e = ne.expr
            if isinstance(e, A.Call) and e.name == "row_number" and len(e.args) == 2 and \
                    env.lookup("row_number") is None:
                flush()
                cur, sql = self.row_number_restart(cur.with_cols(list(cols)), e, env)
                taken |= cur.physical
                assign(ne.names[0] if ne.names else
                       self.default_name(e, Arg(sql, "long"), [c.name for c in cols], None),
                       sql, "long")
                continue
            sc = self.scalar(cur.with_cols(list(cols)) if not sels else cur, env, window_ok=True)
            a = sc.compile(e)
            names = [c.name for c in cols]
            multi = self.multi_column(e, ne, names)
            if multi is not None:
                # the object once in a hidden column, then one column per field
                hidden = self.namer.physical("__multi", taken)
                sels.append(alias(a.sql, hidden))
                flush()
                obj = Arg(col(hidden), a.type)
                for name, field_name, ktype in multi:
                    assign(name, self.multi_field(obj, field_name, ktype), ktype)
                continue
            targets = ne.names or [self.default_name(e, a, names, None)]
            if len(targets) > 1:
                raise self.unsupported("tuple assignment in extend is supported only for "
                                       "functions that return several columns", op)
            assign(targets[0], a.sql, a.type)
        flush()
        return cur

    def multi_column(self, e: A.Expr, ne: A.NamedExpr,
                     taken: list[str]) -> list[tuple[str, str, str]] | None:
        """(column name, field, type) for a call of a function that returns several columns
        (``series_stats``); None for any other expression."""
        from huntsman.kql.functions.series import MULTI_COLUMN

        if not isinstance(e, A.Call) or e.name not in MULTI_COLUMN:
            return None
        fields = MULTI_COLUMN[e.name]
        if ne.names:
            if len(ne.names) > len(fields):
                raise self.semantic_error(f"{e.name}() returns {len(fields)} columns, not "
                                          f"{len(ne.names)}", ne.pos)
            return [(name, f, t) for name, (f, t) in zip(ne.names, fields, strict=False)]
        arg = self.path_name(e.args[0]) if e.args else None
        out: list[tuple[str, str, str]] = []
        names = list(taken)
        for f, t in fields:
            name = unique_name("_".join(p for p in (e.name, arg, f) if p), names)
            names.append(name)
            out.append((name, f, t))
        return out

    def multi_field(self, a: Arg, field_name: str, ktype: str) -> exp.Expr:
        v = Arg(fn("json_extract", a.sql.copy(), s(f"$.{field_name}")), "dynamic")
        return convert(v, ktype)

    def row_number_restart(self, rel: Rel, e: A.Call, env: Env) -> tuple[Rel, exp.Expr]:
        """``row_number(start, restart)``: numbering that starts over at ``start`` on each row
        where ``restart`` is true. Three steps: the restart flag (it may use ``prev()``), a
        running count of restarts (the segment), then ``row_number()`` per segment."""
        if not rel.serialized:
            raise self.semantic_error("Function 'row_number' cannot be invoked in current "
                                      "context: the row set must be serialized (use "
                                      "'serialize' or 'sort' first)", e.pos)
        sc = self.scalar(rel, env, window_ok=True)
        start = sc.compile(e.args[0])
        if start.type not in ("long", "int"):
            raise self.semantic_error("row_number(): the start index must be a long", e.pos)
        restart = sc.compile(e.args[1])
        if restart.type != "bool":
            raise self.semantic_error("row_number(): the restart argument must be a bool",
                                      e.pos)
        taken = set(rel.physical)
        flag = self.namer.physical("__restart", taken)
        step = self.add(exp.select(exp.Star(), alias(restart.sql, flag)).from_(
            self.src(rel), copy=False), rel.cols, rel, set(taken))
        part = self.partition(rel)
        order = exp.Order(expressions=[o.copy() for o in rel.order or []]) \
            if rel.order else None
        seg = self.namer.physical("__segment", taken)
        count = exp.Window(this=exp.Anonymous(this="sum", expressions=[
            case([(col(flag), n(1))], n(0))]), order=order,
            partition_by=[col(part)] if part else None,
            spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING",
                                end="CURRENT ROW"))
        step = self.add(exp.select(exp.Star(), alias(count, seg)).from_(
            self.src(step), copy=False), rel.cols, step, set(taken))
        rn = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                        order=order.copy() if order else None,
                        partition_by=([col(part)] if part else []) + [col(seg)])
        sql = exp.Add(this=cast(rn, "BIGINT"), expression=exp.Sub(this=start.sql,
                                                                   expression=n(1)))
        return step, sql

    def precompute_multi(self, rel: Rel, exprs: list[A.NamedExpr],
                         env: Env) -> tuple[Rel, dict[int, Arg]]:
        """Calls of multi-column functions computed once into hidden columns (by id of the
        named expression), so that each of their columns reads the object."""
        from huntsman.kql.functions.series import MULTI_COLUMN

        multi = [ne for ne in exprs if isinstance(ne.expr, A.Call)
                 and ne.expr.name in MULTI_COLUMN]
        if not multi:
            return rel, {}
        sc = self.scalar(rel, env, window_ok=True)
        taken = set(rel.physical)
        sels: list[exp.Expr] = []
        pre: dict[int, Arg] = {}
        for ne in multi:
            a = sc.compile(ne.expr)
            hidden = self.namer.physical("__multi", taken)
            sels.append(alias(a.sql, hidden))
            pre[id(ne)] = Arg(col(hidden), a.type)
        out = self.add(exp.select(exp.Star(), *sels).from_(self.src(rel), copy=False),
                       rel.cols, rel, taken)
        return out, pre

    def project_list(self, rel: Rel, exprs: list[A.NamedExpr], env: Env,
                     what: str, pre: dict[int, Arg] | None = None
                     ) -> tuple[list[exp.Expr], list[Col]]:
        sc = self.scalar(rel, env, window_ok=True)
        cols: list[Col] = []
        taken: set[str] = set()
        sels: list[exp.Expr] = []
        for ne in exprs:
            if isinstance(ne.expr, A.Star) and not ne.names:
                for c in rel.cols:
                    phys = self.namer.physical(c.name, taken)
                    sels.append(alias(col(c.sql), phys))
                    cols.append(Col(c.name, c.type, phys))
                continue
            a = pre[id(ne)] if pre and id(ne) in pre else sc.compile(ne.expr)
            names = [c.name for c in cols]
            multi = self.multi_column(ne.expr, ne, names)
            if multi is not None:
                for name, field_name, ktype in multi:
                    if name in names:
                        raise self.semantic_error(
                            f"{what}: the column '{name}' is assigned more than once", ne.pos)
                    names.append(name)
                    phys = self.namer.physical(name, taken)
                    sels.append(alias(self.multi_field(a, field_name, ktype), phys))
                    cols.append(Col(name, ktype, phys))
                continue
            if len(ne.names) > 1:
                raise self.unsupported(f"tuple assignment in {what} is supported only for "
                                       f"functions that return several columns", ne)
            name = ne.names[0] if ne.names else self.default_name(ne.expr, a, names, None)
            if name in names:
                if ne.names:
                    raise self.semantic_error(
                        f"{what}: the column '{name}' is assigned more than once", ne.pos)
                name = unique_name(name, names)
            phys = self.namer.physical(name, taken)
            sels.append(alias(a.sql, phys))
            cols.append(Col(name, a.type, phys))
        return sels, cols

    def visit_Project(self, rel: Rel, op: A.Project, env: Env) -> Rel:
        rel, pre = self.precompute_multi(rel, op.exprs, env)
        sels, cols = self.project_list(rel, op.exprs, env, "project", pre)
        sels += self.keep_order_columns(rel)
        physical = {c.sql.lower() for c in cols} | {
            c.name.lower() for c in sels if isinstance(c, exp.Column)}
        return self.add(exp.select(*sels).from_(self.src(rel), copy=False), cols, rel, physical)

    def match_patterns(self, rel: Rel, patterns: list[str], node: Any) -> list[Col]:
        out: list[Col] = []
        for p in patterns:
            hits = [c for c in rel.cols if (fnmatch.fnmatchcase(c.name, p) if "*" in p
                                            else c.name == p)]
            if not hits and "*" not in p:
                raise self.semantic_error(
                    f"Failed to resolve column or scalar expression named '{p}'", node.pos)
            for c in hits:
                if c not in out:
                    out.append(c)
        return out

    def visit_ProjectAway(self, rel: Rel, op: A.ProjectAway, env: Env) -> Rel:
        drop = self.match_patterns(rel, op.patterns, op)
        out = Rel(rel.source, [c for c in rel.cols if c not in drop], rel.physical, rel.order,
                  rel.serialized, rel.render)
        return out

    def visit_ProjectKeep(self, rel: Rel, op: A.ProjectKeep, env: Env) -> Rel:
        keep = self.match_patterns(rel, op.patterns, op)
        return Rel(rel.source, [c for c in rel.cols if c in keep], rel.physical, rel.order,
                   rel.serialized, rel.render)

    def visit_ProjectRename(self, rel: Rel, op: A.ProjectRename, env: Env) -> Rel:
        cols = list(rel.cols)
        for new, old in op.renames:
            for i, c in enumerate(cols):
                if c.name == old:
                    cols[i] = Col(new, c.type, c.sql)
                    break
            else:
                raise self.semantic_error(
                    f"Failed to resolve column or scalar expression named '{old}'", op.pos)
        names = [c.name for c in cols]
        if len(set(names)) != len(names):
            raise self.semantic_error("project-rename: the result has duplicate column names",
                                      op.pos)
        return Rel(rel.source, cols, rel.physical, rel.order, rel.serialized, rel.render)

    def visit_ProjectReorder(self, rel: Rel, op: A.ProjectReorder, env: Env) -> Rel:
        front: list[Col] = []
        for pat, order in op.patterns:
            hits = [c for c in rel.cols if c not in front and (
                fnmatch.fnmatchcase(c.name, pat) if "*" in pat else c.name == pat)]
            if not hits and "*" not in pat:
                raise self.semantic_error(
                    f"Failed to resolve column or scalar expression named '{pat}'", op.pos)
            if order in ("asc", "granny-asc"):
                hits.sort(key=lambda c: c.name.lower() if order == "granny-asc" else c.name)
            elif order in ("desc", "granny-desc"):
                hits.sort(key=lambda c: c.name.lower() if order == "granny-desc" else c.name,
                          reverse=True)
            front += hits
        rest = [c for c in rel.cols if c not in front]
        return Rel(rel.source, front + rest, rel.physical, rel.order, rel.serialized, rel.render)

    def visit_Distinct(self, rel: Rel, op: A.Distinct, env: Env) -> Rel:
        exprs = [A.NamedExpr(A.Name(c.name), []) for c in rel.cols] if op.star else op.exprs
        sels, cols = self.project_list(rel, exprs, env, "distinct")
        physical = {c.sql.lower() for c in cols}
        part = self.partition(rel)
        if part is not None:
            sels.append(col(part))
            physical.add(part.lower())
        return self.add(exp.select(*sels).from_(self.src(rel), copy=False).distinct(copy=False),
                        cols, physical=physical)

    def visit_Count(self, rel: Rel, op: A.Count, env: Env) -> Rel:
        part = self.partition(rel)
        taken = {part.lower()} if part else set()
        c = Col(op.name, "long", self.namer.physical(op.name, taken))
        sel = exp.select(alias(exp.Count(this=exp.Star()), c.sql)).from_(self.src(rel),
                                                                         copy=False)
        if part is not None:
            sel = exp.select(col(part), alias(exp.Count(this=exp.Star()), c.sql)).from_(
                self.src(rel), copy=False).group_by(n(1), copy=False)
        return self.add(sel, [c], physical=taken | {c.sql.lower()})

    def visit_As(self, rel: Rel, op: A.As, env: Env) -> Rel:
        out = Rel(rel.source, rel.cols, rel.physical, rel.order, rel.serialized, rel.render,
                  alias=op.name)
        env.names[op.name] = RelBinding(out)
        return out

    def visit_Render(self, rel: Rel, op: A.Render, env: Env) -> Rel:
        out = Rel(rel.source, rel.cols, rel.physical, rel.order, rel.serialized)
        out.render = {"visualization": op.visualization, **op.properties}
        return out

    def visit_GetSchema(self, rel: Rel, op: A.GetSchema, env: Env) -> Rel:
        names = ["ColumnName", "ColumnOrdinal", "DataType", "ColumnType"]
        types = ["string", "int", "string", "string"]
        cols = [Col(nm, t, nm) for nm, t in zip(names, types, strict=True)]
        rows = [exp.select(alias(s(c.name), "ColumnName"),
                           alias(cast(n(i), "INTEGER"), "ColumnOrdinal"),
                           alias(s(DOTNET_TYPES[c.type]), "DataType"),
                           alias(s(c.type), "ColumnType"))
                for i, c in enumerate(rel.cols)]
        union: exp.Expr = rows[0]
        for r in rows[1:]:
            union = exp.Union(this=union, expression=r, distinct=False)
        out = self.add(union, cols)
        out.order = [exp.Ordered(this=col("ColumnOrdinal"), desc=False, nulls_first=False)]
        return out

    def visit_Invoke(self, rel: Rel, op: A.Invoke, env: Env) -> Rel:
        b = env.lookup(op.name)
        if b is None and op.name in INVOKE_FUNCTIONS:
            return INVOKE_FUNCTIONS[op.name](self, rel, op, env)
        if not isinstance(b, FunctionBinding):
            if op.name in TABLE_FUNCTIONS:
                raise self.semantic_error(f"'{op.name}' returns a table of its own: call it as "
                                          f"{op.name}(...), not with invoke", op.pos)
            raise self.semantic_error(f"Unknown function: '{op.name}'", op.pos)
        return self.call_tabular_function(op.name, b, op.args, op, input_rel=rel,
                                          caller_env=env)

    def visit_Unsupported(self, rel: Rel, op: A.Unsupported, env: Env) -> Rel:
        raise self.unsupported(f"The '{op.name}' operator is not supported yet", op)

    # ------------------------------------------------------------ summarize

    def visit_Summarize(self, rel: Rel, op: A.Summarize, env: Env) -> Rel:
        from huntsman.compiler.summarize import compile_summarize
        return compile_summarize(self, rel, op, env)

    # ------------------------------------------------------------ join, lookup, union

    def visit_Join(self, rel: Rel, op: A.Join, env: Env) -> Rel:
        from huntsman.compiler.join import compile_join
        return compile_join(self, rel, op, env)

    def visit_Lookup(self, rel: Rel, op: A.Lookup, env: Env) -> Rel:
        from huntsman.compiler.join import compile_lookup
        return compile_lookup(self, rel, op, env)

    def visit_Union(self, rel: Rel, op: A.Union, env: Env) -> Rel:
        from huntsman.compiler.union import compile_union
        label = rel.source if not rel.source.startswith("__") else "union_arg0"
        return compile_union(self, [(label, rel)], op.tables, op.kind, op.withsource,
                             op.isfuzzy, env, op)

    def visit_UnionSource(self, node: A.UnionSource, env: Env) -> Rel:
        from huntsman.compiler.union import compile_union
        return compile_union(self, [], node.tables, node.kind, node.withsource, node.isfuzzy,
                             env, node)

    # ------------------------------------------------------------ mv-expand, parse

    def visit_MvExpand(self, rel: Rel, op: A.MvExpand, env: Env) -> Rel:
        from huntsman.compiler.expand import compile_mv_expand
        return compile_mv_expand(self, rel, op, env)

    def visit_ParseOp(self, rel: Rel, op: A.ParseOp, env: Env) -> Rel:
        from huntsman.compiler.expand import compile_parse
        return compile_parse(self, rel, op, env)

    def visit_ParseKv(self, rel: Rel, op: A.ParseKv, env: Env) -> Rel:
        from huntsman.compiler.parse_kv import compile_parse_kv
        return compile_parse_kv(self, rel, op, env)

    # ------------------------------------------------------------ issue 3 operators

    def visit_MakeSeries(self, rel: Rel, op: A.MakeSeries, env: Env) -> Rel:
        from huntsman.compiler.make_series import compile_make_series
        return compile_make_series(self, rel, op, env)

    def visit_MvApply(self, rel: Rel, op: A.MvApply, env: Env) -> Rel:
        from huntsman.compiler.mv_apply import compile_mv_apply
        return compile_mv_apply(self, rel, op, env)

    def visit_TopNested(self, rel: Rel, op: A.TopNested, env: Env) -> Rel:
        from huntsman.compiler.top_nested import compile_top_nested
        return compile_top_nested(self, rel, op, env)

    def visit_Sample(self, rel: Rel, op: A.Sample, env: Env) -> Rel:
        a = self.scalar(None, env).compile(op.count)
        if a.type not in ("long", "int", "real", "decimal"):
            raise self.semantic_error("sample expects a number of rows", op.pos)
        count = a.sql if a.type in ("long", "int") else cast(fn("floor", a.sql), "BIGINT")
        sel = exp.select(exp.Star()).from_(self.src(rel), copy=False)
        part = self.partition(rel)
        rnd = exp.Anonymous(this="random", expressions=[])
        if part is not None:
            # a random key per row first: a window cannot order by a volatile expression
            taken = set(rel.physical)
            key = self.namer.physical("__random", taken)
            keyed = self.add(exp.select(exp.Star(), alias(rnd, key)).from_(
                self.src(rel), copy=False), rel.cols, rel, taken)
            w = exp.Window(this=exp.Anonymous(this="row_number", expressions=[]),
                           partition_by=[col(part)],
                           order=exp.Order(expressions=[exp.Ordered(this=col(key))]))
            sel = exp.select(exp.Star()).from_(self.src(keyed), copy=False).qualify(
                exp.LTE(this=w, expression=count), copy=False)
            rel = keyed
        else:
            sel = sel.order_by(exp.Ordered(this=rnd), copy=False).limit(count, copy=False)
        out = self.add(sel, rel.cols, rel, rel.physical)
        out.order = None
        out.serialized = False
        return out

    def visit_Search(self, rel: Rel, op: A.Search, env: Env) -> Rel:
        from huntsman.compiler.search import compile_search
        return compile_search(self, rel, op, env)

    def visit_SearchSource(self, node: A.SearchSource, env: Env) -> Rel:
        from huntsman.compiler.search import compile_search_source
        return compile_search_source(self, node, env)

    def visit_Find(self, node: A.Find, env: Env) -> Rel:
        from huntsman.compiler.search import compile_find
        return compile_find(self, node, env)

    def visit_Evaluate(self, rel: Rel, op: A.Evaluate, env: Env) -> Rel:
        from huntsman.compiler.evaluate import compile_evaluate
        return compile_evaluate(self, rel, op, env)

    def visit_ExternalData(self, node: A.ExternalData, env: Env) -> Rel:
        from huntsman.compiler.external import compile_externaldata
        return compile_externaldata(self, node, env)


def _names_in(e: Any) -> list[A.Name]:
    out: list[A.Name] = []

    def walk(x: Any) -> None:
        if isinstance(x, A.Name):
            out.append(x)
        elif isinstance(x, (A.Expr, A.NamedExpr)):
            for v in vars(x).values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(e)
    return out


def _converted_const(a: Arg, ktype: str) -> Any:
    """The compile-time value of a numeric constant converted to another numeric type (so a
    function parameter declared ``double`` still holds a constant)."""
    from huntsman.kql.functions.sql import NOCONST
    from huntsman.kql.types import NUMERIC

    if not a.is_const or not isinstance(a.const, (int, float)) or isinstance(a.const, bool) \
            or a.type not in NUMERIC or ktype not in NUMERIC:
        return NOCONST
    if ktype in ("real", "decimal"):
        return float(a.const)
    return int(a.const) if float(a.const).is_integer() else NOCONST


def string_safe(a: Arg) -> exp.Expr:
    return coalesce(a.sql, s("")) if a.type == "string" else a.sql


def _naive_window(window: tuple[datetime | None, datetime | None] | None
                  ) -> tuple[datetime | None, datetime | None] | None:
    """The time window in naive UTC (how datetimes are stored); None when fully open."""
    if window is None:
        return None
    if len(window) != 2:
        raise ValueError("window must be a (start, end) pair")
    out: list[datetime | None] = []
    for d in window:
        if d is not None and not isinstance(d, datetime):
            raise TypeError(f"window bounds must be datetimes or None, not {type(d).__name__}")
        out.append(d.astimezone(UTC).replace(tzinfo=None) if d is not None and d.tzinfo
                   else d)
    if out[0] is None and out[1] is None:
        return None
    return out[0], out[1]


def compile_kql(text: str, tables: TableLookup | None = None,
                table_names: Callable[[], list[str]] | None = None,
                now: datetime | None = None, dialect: str = "duckdb", *,
                probe: Probe | None = None,
                external_dirs: Sequence[str | PathLike[str]] = (),
                functions: Sequence[StoredFunction] | None = None,
                window: tuple[datetime | None, datetime | None] | None = None) -> CompiledQuery:
    """Compile KQL text to SQL. ``tables`` resolves table names to ``[(column, type)]``;
    ``probe`` and ``external_dirs`` are described on :class:`Compiler`. ``functions`` are
    stored functions, bound like ``let`` functions declared before the query (the query's own
    ``let`` shadows them); ``window=(start, end)`` keeps, in every stored table the query
    reads, only rows whose ``Timestamp`` is in ``[start, end)`` (None: open on that side).

    >>> from huntsman.kql.stored import StoredFunction
    >>> twice = StoredFunction("Twice", "x * 2", (("x", "long", None),))
    >>> compile_kql("print y = Twice(21)", functions=[twice]).columns
    [('y', 'long')]
    """
    from huntsman.schema import catalog

    def builtin(name: str) -> list[tuple[str, str]] | None:
        t = catalog().tables.get(name)
        return [(c.name, c.type) for c in t.columns] if t else None

    try:
        return Compiler(text, tables or builtin, table_names or catalog().names, now,
                        dialect, probe, external_dirs, functions, window).compile()
    except RecursionError:
        raise KqlSemanticError("The query is nested too deeply", 1, 1, text) from None


__all__ = ["CompiledQuery", "Compiler", "compile_kql", "KqlError", "json_value", "SQL_TYPES"]
