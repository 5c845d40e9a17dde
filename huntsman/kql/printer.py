"""KQL printer: :mod:`huntsman.kql.ast` → KQL text that parses back to the same tree.

``to_kql`` accepts a :class:`~huntsman.kql.ast.Script`, any statement, tabular expression,
operator, scalar expression (or the small helper nodes: named expressions, sort keys,
parameters, function definitions) and returns canonical KQL:

* binary operators are fully parenthesized (except at the top of an expression), so the
  structure of the tree never depends on precedence;
* strings are double-quoted with backslash escapes; names that are not plain identifiers, or
  that the parser treats as keywords somewhere, are bracketed: ``['x y']``;
* datetimes print as ``datetime(2020-01-01T10:00:00.1234560)`` (every digit kept), timespans as
  ``1d``/``90s``/``5tick`` when exact, else ``timespan(1.02:03:04.5000000)``; guids as
  ``guid(...)``; dynamics as ``dynamic(<json>)``; typed nulls as ``long(null)``; special reals as
  ``real(nan)``/``real(-inf)``.

The guarantee is ``parse(to_kql(parse(q))) == parse(q)`` for every query ``q`` that parses
(up to NaN: a ``real(nan)`` literal is never ``==`` to another one), and printing is then a
fixed point: ``to_kql(parse(to_kql(t))) == to_kql(t)``. A tree that no KQL text can produce (for instance a ``Set`` whose name is not an identifier)
raises :class:`ValueError` when it cannot be printed at all.

>>> from huntsman.kql.parser import parse
>>> q = parse("T | where a has @'C:\\\\x' and b > 1d | project ['my col'] = c * 2 + 1")
>>> print(to_kql(q))
T
| where (a has "C:\\\\x") and (b > 1d)
| project ['my col'] = (c * 2) + 1
>>> w = parse("T | where x in ('a', 'b') or -y < 2 | take 10")
>>> print(to_kql(w))
T
| where (x in ("a", "b")) or (-y < 2)
| take 10
>>> parse(to_kql(w)) == w
True
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from huntsman.kql import ast as A
from huntsman.kql.literals import format_timespan

__all__ = ["to_kql", "quote_string", "format_name"]

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*")  # the lexer's identifier token

# Words the lexer or the parser treats specially somewhere (keywords, literal words, operator
# parameters, clause words). A name spelled like one of them is printed bracketed, which the
# parser accepts in every position where it reads a name.
RESERVED = frozenset({
    # statements and sources
    "let", "set", "declare", "alias", "restrict", "pattern", "view", "datatable", "range",
    "print", "union", "materialize", "find", "search", "evaluate", "externaldata",
    "external_data", "cluster", "database", "table", "toscalar", "typeof",
    # opaque literal words (the lexer reads `word (` as a literal body)
    "datetime", "date", "timespan", "time", "guid", "uuid", "uniqueid",
    # type names and typed-literal calls
    "int", "long", "real", "double", "bool", "boolean", "decimal", "dynamic", "string",
    "int64", "int32", "float",
    # literal words
    "true", "True", "TRUE", "false", "False", "FALSE", "null", "nan", "inf",
    # scalar operators spelled as words
    "and", "or", "not", "in", "has_any", "has_all", "between", "matches", "regex",
    "has", "has_cs", "hasprefix", "hasprefix_cs", "hassuffix", "hassuffix_cs", "contains",
    "contains_cs", "startswith", "startswith_cs", "endswith", "endswith_cs",
    "containscs", "notcontains", "notcontainscs", "like", "likecs", "notlike", "notlikecs",
    # clause words
    "by", "on", "with", "from", "to", "step", "asc", "desc", "nulls", "first", "last", "limit",
    "as", "bin", "hint", "of", "others", "default", "project", "project-smart", "project-away",
    "pack_all",
    # operator parameters (read as `name=value` before an operator's operands)
    "kind", "withsource", "with_source", "isfuzzy", "bagexpansion", "with_itemindex", "flags",
    "decodeblocks", "project_smart", "materialized", "context_id",
})

# Literal types written as `type(value)` (typed nulls, int, decimal, special reals, dynamic).
_TYPED_FORMS = ("int", "long", "real", "decimal", "bool", "dynamic", "string")

# Words that are not read as a tabular call when followed by '(' (special sources, literals),
# so no tabular call of that name can be written.
_TABULAR_SOURCE_WORDS = frozenset({
    "datatable", "print", "union", "materialize", "table", "find", "search", "evaluate",
    "externaldata", "external_data", "cluster", "database",
    "datetime", "date", "timespan", "time", "guid", "uuid", "uniqueid",
    "int", "long", "real", "double", "bool", "boolean", "decimal", "dynamic", "string",
    "typeof", "toscalar",
})

# The lexer reads `datetime (...)` etc. as a literal body, whatever precedes the word.
_OPAQUE_WORDS = frozenset({"datetime", "date", "timespan", "time", "guid", "uuid", "uniqueid"})

_JOIN_DEFAULT_KIND = "innerunique"
_LOOKUP_DEFAULT_KIND = "leftouter"

_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Timespan units, largest first: printed as `<n><unit>` when the tick count is a multiple.
_TIMESPAN_UNITS = (
    ("d", 864_000_000_000), ("h", 36_000_000_000), ("m", 600_000_000), ("s", 10_000_000),
    ("ms", 10_000), ("microsecond", 10), ("tick", 1),
)
# The lexer computes `<n><unit>` through a float: only exact below 2**53.
_FLOAT_EXACT = 2**53


def to_kql(node: object) -> str:
    """Print an AST node (script, statement, tabular, operator or scalar expression) as KQL."""
    return _Printer().node(node)


# ---------------------------------------------------------------- lexical helpers


def quote_string(value: str, quote: str = '"') -> str:
    """A KQL string literal for ``value``: ``quote``-delimited with backslash escapes.

    >>> print(quote_string('say "hi"\\n'))
    "say \\"hi\\"\\n"
    """
    out = [quote]
    for ch in value:
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append(quote)
    return "".join(out)


def format_name(name: str) -> str:
    """A name as an identifier when that is unambiguous, else bracketed: ``['x y']``.

    >>> format_name("Timestamp"), format_name("my col"), format_name("by")
    ('Timestamp', "['my col']", "['by']")
    """
    if _IDENT.fullmatch(name) and name not in RESERVED:
        return name
    return "[" + quote_string(name, "'") + "]"


def _plain_ident(name: str, what: str) -> str:
    """Positions that only take an identifier token (set names, tuple targets, callees)."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"cannot print {what} {name!r}: it is not an identifier")
    return name


def _format_real(value: float) -> str:
    """A finite real as a token the lexer reads as real (always has a '.' or an exponent)."""
    text = repr(float(value))
    if not any(c in text for c in ".eE"):
        text += ".0"
    return text


def _format_datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
            f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
    if value.microsecond:
        text += f".{value.microsecond:06d}0"
    return f"datetime({text})"


def _format_timespan(ticks: int) -> str:
    ticks = int(ticks)
    if ticks == 0:
        return "0s"
    if abs(ticks) < _FLOAT_EXACT:
        for unit, size in _TIMESPAN_UNITS:
            if ticks % size == 0:
                return f"{ticks // size}{unit}"
    return f"timespan({format_timespan(ticks)})"


def _format_json(value: Any) -> str:
    """A dynamic literal's body (JSON with KQL string literals)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot print {value!r} inside a dynamic literal")
        return _format_real(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote_string(str(k))}: {_format_json(v)}"
                               for k, v in value.items()) + "}"
    raise ValueError(f"cannot print {type(value).__name__} value {value!r} in a dynamic literal")


def _format_param_value(value: Any) -> str:
    """An operator parameter value (``kind=inner``, ``hint.num_partitions=4``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return _format_real(value)
    if isinstance(value, str):
        return format_name(value)
    raise ValueError(f"cannot print operator parameter value {value!r}")


def _format_param_key(key: str) -> str:
    if not all(_IDENT.fullmatch(part) for part in key.split(".")):
        raise ValueError(f"cannot print operator parameter name {key!r}")
    return key


def _format_pattern(pattern: str) -> str:
    """A column or table wildcard pattern: names and ``*`` written without spaces."""
    if pattern == "":
        raise ValueError("cannot print an empty column pattern")
    pieces = re.split(r"(\*)", pattern)
    return "".join(p if p == "*" else format_name(p) for p in pieces if p)


def _format_properties(props: dict[str, Any]) -> str:
    """``with (name = value, ...)`` of externaldata and parse-kv: a list repeats its name."""
    items = []
    for key, value in props.items():
        for v in value if isinstance(value, list) else [value]:
            text = quote_string(v) if isinstance(v, str) else _format_param_value(v)
            items.append(f"{format_name(key)}={text}")
    return ", ".join(items)


def _format_render_value(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(_format_render_value(v) for v in value) + ")"
    if isinstance(value, str):
        return value if _IDENT.fullmatch(value) and value not in ("true", "false") \
            else quote_string(value)
    return _format_param_value(value)


# ---------------------------------------------------------------- the printer


class _Printer:
    def node(self, node: object) -> str:
        if isinstance(node, A.Script):
            return self.script(node)
        if isinstance(node, A.Statement):
            return self.statement(node)
        if isinstance(node, A.Tabular):
            return self.tabular(node)
        if isinstance(node, A.Operator):
            return self.operator(node)
        if isinstance(node, A.Expr):
            return self.expr(node)
        if isinstance(node, A.NamedExpr):
            return self.named(node)
        if isinstance(node, A.SortKey):
            return self.sort_key(node)
        if isinstance(node, A.FunctionDef):
            return self.function_def(node)
        if isinstance(node, A.Param):
            return self.param(node)
        if isinstance(node, A.MakeSeriesAgg):
            return self.make_series_agg(node)
        if isinstance(node, A.TopNestedClause):
            return self.top_nested_clause(node)
        if isinstance(node, A.JoinCondition):
            return f"{self.operand(node.left)} == {self.operand(node.right)}"
        raise TypeError(f"to_kql: not a KQL syntax tree node: {type(node).__name__}")

    # ------------------------------------------------------------ statements

    def script(self, script: A.Script) -> str:
        return ";\n".join(self.statement(s) for s in script.statements)

    def statement(self, stmt: A.Statement) -> str:
        if isinstance(stmt, A.Let):
            return f"let {format_name(stmt.name)} = {self.let_value(stmt.value)}"
        if isinstance(stmt, A.Set):
            name = _plain_ident(stmt.name, "the option")
            if stmt.value is None:
                return f"set {name}"
            return f"set {name} = {self.expr(stmt.value)}"
        if isinstance(stmt, A.QueryStatement):
            return self.body_value(stmt.query)
        raise TypeError(f"to_kql: unknown statement {type(stmt).__name__}")

    def let_value(self, value: A.Expr | A.Tabular | A.FunctionDef) -> str:
        if isinstance(value, A.FunctionDef):
            return self.function_def(value)
        return self.body_value(value)

    def body_value(self, value: A.Expr | A.Tabular) -> str:
        """A `let` value or statement: the parser tries a tabular reading before a scalar one."""
        if isinstance(value, A.Tabular):
            return self.tabular(value)
        return self.expr(value, head_space=True)

    def function_def(self, fn: A.FunctionDef) -> str:
        params = ", ".join(self.param(p) for p in fn.params)
        body = "; ".join(self.statement(s) for s in fn.body)
        return f"{'view ' if fn.view else ''}({params}) {{ {body} }}"

    def param(self, p: A.Param) -> str:
        if p.tabular or p.type is None:
            return f"{format_name(p.name)}:(*)"
        text = f"{format_name(p.name)}:{p.type}"
        if p.default is not None:
            text += f" = {self.expr(p.default)}"
        return text

    # ------------------------------------------------------------ tabular expressions

    def tabular(self, t: A.Tabular) -> str:
        if isinstance(t, A.Pipe):
            return f"{self.tabular(t.input)}\n| {self.operator(t.op)}"
        if isinstance(t, A.TableRef):
            return format_name(t.name)
        if isinstance(t, A.TabularCall):
            if t.name in _TABULAR_SOURCE_WORDS:
                raise ValueError(f"cannot print a tabular call of {t.name!r}")
            name = _plain_ident(t.name, "the function")
            return f"{name}({self.args(t.args, t.arg_names)})"
        if isinstance(t, A.Datatable):
            cols = ", ".join(f"{format_name(c)}:{ty}" for c, ty in t.columns)
            values = ", ".join(self.expr(v) for v in t.values)
            return f"datatable({cols}) [{values}]"
        if isinstance(t, A.Range):
            col = _plain_ident(t.column, "the range column")
            return (f"range {col} from {self.expr(t.start)} to {self.expr(t.stop)} "
                    f"step {self.expr(t.step)}")
        if isinstance(t, A.Print):
            return "print" + (" " + self.named_list(t.exprs) if t.exprs else "")
        if isinstance(t, A.Materialize):
            return f"materialize({self.tabular(t.query)})"
        if isinstance(t, A.UnionSource):
            return "union " + self.union_body(t.tables, t.kind, t.withsource, t.isfuzzy)
        if isinstance(t, A.SearchSource):
            parts = ["search"]
            if t.kind != "default":
                parts.append(f"kind={format_name(t.kind)}")
            if t.tables:
                parts.append(f"in ({self.table_list(t.tables)})")
            parts.append(self.search_predicate(t.predicate))
            return " ".join(parts)
        if isinstance(t, A.Find):
            return self.find(t)
        if isinstance(t, A.ExternalData):
            cols = ", ".join(f"{format_name(c)}:{ty}" for c, ty in t.columns)
            uris = ", ".join(self.expr(u) for u in t.uris)
            text = f"externaldata ({cols}) [{uris}]"
            if t.properties:
                text += f" with ({_format_properties(t.properties)})"
            return text
        raise TypeError(f"to_kql: unknown tabular expression {type(t).__name__}")

    def nested(self, t: A.Tabular) -> str:
        """A tabular operand of join/lookup/union/in: bare when it is a single source."""
        if isinstance(t, A.TableRef | A.TabularCall):
            return self.tabular(t)
        return f"({self.tabular(t)})"

    def union_body(self, tables: list[A.Tabular], kind: str, withsource: str | None,
                   isfuzzy: bool) -> str:
        opts = []
        if kind != "outer":
            opts.append(f"kind={format_name(kind)}")
        if withsource is not None:
            opts.append(f"withsource={format_name(withsource)}")
        if isfuzzy:
            opts.append("isfuzzy=true")
        return " ".join([*opts, self.table_list(tables)])

    def table_list(self, tables: list[A.Tabular]) -> str:
        """The tables of union/search/find: names, wildcard patterns, parenthesized queries."""
        parts = []
        for t in tables:
            if isinstance(t, A.TableRef) and _is_wildcard_table(t.name):
                parts.append(t.name)
            else:
                parts.append(self.nested(t))
        return ", ".join(parts)

    def find(self, t: A.Find) -> str:
        parts = ["find"]
        if t.withsource is not None:
            parts.append(f"withsource={format_name(t.withsource)}")
        if t.tables is not None:
            parts.append(f"in ({self.table_list(t.tables)})")
        parts += ["where", self.search_predicate(t.predicate)]
        if t.project is not None:
            items = [format_name(c) + (f":{ty}" if ty else "") for c, ty in t.project]
            if t.pack:
                items.append("pack_all()")
            parts.append("project " + ", ".join(items))
        if t.project_away:
            parts.append("project-away " + ", ".join(
                "*" if c == "*" else format_name(c) for c in t.project_away))
        return " ".join(parts)

    def search_predicate(self, e: A.Expr) -> str:
        """A search/find predicate: ``and``/``or`` of terms and (equality-level) expressions."""
        if isinstance(e, A.Binary) and e.op in ("and", "or"):
            return f"{self.search_operand(e.left)} {e.op} {self.search_operand(e.right)}"
        return self.search_operand(e)

    def search_operand(self, e: A.Expr) -> str:
        if isinstance(e, A.Binary) and e.op in ("and", "or"):
            return f"({self.search_predicate(e)})"
        if isinstance(e, A.SearchTerm):
            return self.search_term(e)
        return self.expr(e)

    def search_term(self, e: A.SearchTerm) -> str:
        if e.column is None:
            return quote_string(e.term)
        # any identifier token works before ':' (the parser does not take ['x']:"term")
        column = e.column if _IDENT.fullmatch(e.column) else format_name(e.column)
        return f"{column}:{quote_string(e.term)}"

    # ------------------------------------------------------------ operators

    def operator(self, op: A.Operator) -> str:
        method = getattr(self, f"op_{type(op).__name__}", None)
        if method is None:
            raise TypeError(f"to_kql: unknown operator {type(op).__name__}")
        text: str = method(op)
        return text

    def op_Where(self, op: A.Where) -> str:
        return f"where {self.expr(op.predicate)}"

    def op_Project(self, op: A.Project) -> str:
        return f"project {self.named_list(op.exprs)}"

    def op_ProjectAway(self, op: A.ProjectAway) -> str:
        return "project-away " + ", ".join(_format_pattern(p) for p in op.patterns)

    def op_ProjectKeep(self, op: A.ProjectKeep) -> str:
        return "project-keep " + ", ".join(_format_pattern(p) for p in op.patterns)

    def op_ProjectRename(self, op: A.ProjectRename) -> str:
        return "project-rename " + ", ".join(f"{format_name(new)} = {format_name(old)}"
                                             for new, old in op.renames)

    def op_ProjectReorder(self, op: A.ProjectReorder) -> str:
        parts = [_format_pattern(p) + (f" {order}" if order else "") for p, order in op.patterns]
        return "project-reorder " + ", ".join(parts)

    def op_Extend(self, op: A.Extend) -> str:
        return f"extend {self.named_list(op.exprs)}"

    def op_Summarize(self, op: A.Summarize) -> str:
        parts = ["summarize", *self.params(op.params)]
        if op.aggs:
            parts.append(self.named_list(op.aggs))
        if op.by:
            parts.append("by " + self.named_list(op.by))
        return " ".join(parts)

    def op_Count(self, op: A.Count) -> str:
        return "count" if op.name == "Count" else f"count as {format_name(op.name)}"

    def op_Take(self, op: A.Take) -> str:
        return f"take {self.expr(op.count)}"

    def op_Sort(self, op: A.Sort) -> str:
        return "sort by " + ", ".join(self.sort_key(k) for k in op.keys)

    def op_Top(self, op: A.Top) -> str:
        return f"top {self.expr(op.count)} by {self.sort_key(op.key)}"

    def op_Distinct(self, op: A.Distinct) -> str:
        if op.star:
            return "distinct *"
        return f"distinct {self.named_list(op.exprs)}"

    def op_Join(self, op: A.Join) -> str:
        parts = ["join"]
        if op.kind != _JOIN_DEFAULT_KIND:
            parts.append(f"kind={format_name(op.kind)}")
        parts += self.params(op.params)
        parts.append(f"({self.tabular(op.right)})")
        parts.append("on " + ", ".join(self.expr(c) for c in op.on))
        return " ".join(parts)

    def op_Lookup(self, op: A.Lookup) -> str:
        parts = ["lookup"]
        if op.kind != _LOOKUP_DEFAULT_KIND:
            parts.append(f"kind={format_name(op.kind)}")
        parts.append(f"({self.tabular(op.right)})")
        parts.append("on " + ", ".join(self.expr(c) for c in op.on))
        return " ".join(parts)

    def op_Union(self, op: A.Union) -> str:
        return "union " + self.union_body(op.tables, op.kind, op.withsource, op.isfuzzy)

    def op_MvExpand(self, op: A.MvExpand) -> str:
        parts = ["mv-expand"]
        if op.bagexpansion != "bag":
            parts.append(f"bagexpansion={format_name(op.bagexpansion)}")
        if op.itemindex:
            parts.append(f"with_itemindex={format_name(op.itemindex)}")
        cols = []
        for ne, to_type in op.columns:
            cols.append(self.named(ne) + (f" to typeof({to_type})" if to_type else ""))
        parts.append(", ".join(cols))
        if op.limit is not None:
            parts.append(f"limit {self.expr(op.limit)}")
        return " ".join(parts)

    def op_ParseOp(self, op: A.ParseOp) -> str:
        parts = ["parse-where" if op.where else "parse"]
        if op.kind != "simple":
            parts.append(f"kind={format_name(op.kind)}")
        if op.flags:
            parts.append(f"flags={quote_string(op.flags)}")
        parts += [self.expr(op.source), "with"]
        for piece in op.pattern:
            if isinstance(piece, str):
                parts.append(quote_string(piece))
            elif piece[0] == "*":
                parts.append("*")
            else:
                _, cname, ctype = piece
                parts.append(format_name(cname) + ("" if ctype == "string" else f":{ctype}"))
        return " ".join(parts)

    def op_ParseKv(self, op: A.ParseKv) -> str:
        keys = ", ".join(f"{format_name(k)}:{ty}" for k, ty in op.keys)
        text = f"parse-kv {self.expr(op.source)} as ({keys})"
        if op.options:
            text += f" with ({_format_properties(op.options)})"
        return text

    def op_MakeSeries(self, op: A.MakeSeries) -> str:
        parts = ["make-series", *self.params(op.params)]
        aggs = ", ".join(self.make_series_agg(agg) for agg in op.aggs)
        parts += [aggs, "on", self.operand(op.axis.expr)]
        if op.in_range:
            if op.start is None or op.end is None:
                raise ValueError("make-series ... in range() needs a start and an end")
            parts.append(f"in range({self.expr(op.start)}, {self.expr(op.end)}, "
                         f"{self.expr(op.step)})")
        else:
            if op.start is not None:
                parts.append(f"from {self.expr(op.start)}")
            if op.end is not None:
                parts.append(f"to {self.expr(op.end)}")
            parts.append(f"step {self.expr(op.step)}")
        if op.by:
            parts.append("by " + self.named_list(op.by))
        return " ".join(parts)

    def make_series_agg(self, agg: A.MakeSeriesAgg) -> str:
        text = self.named(agg.expr)
        if agg.default is not None:
            text += f" default={self.operand(agg.default)}"
        return text

    def op_MvApply(self, op: A.MvApply) -> str:
        parts = ["mv-apply"]
        if op.itemindex:
            parts.append(f"with_itemindex={format_name(op.itemindex)}")
        parts.append(", ".join(self.named(ne) + (f" to typeof({ty})" if ty else "")
                               for ne, ty in op.columns))
        if op.limit is not None:
            parts.append(f"limit {self.expr(op.limit)}")
        parts.append("on (" + " | ".join(self.operator(o) for o in op.subquery) + ")")
        return " ".join(parts)

    def op_TopNested(self, op: A.TopNested) -> str:
        return ", ".join(self.top_nested_clause(c) for c in op.clauses)

    def top_nested_clause(self, c: A.TopNestedClause) -> str:
        text = "top-nested"
        if c.count is not None:
            text += f" {self.expr(c.count)}"
        text += f" of {self.named(c.expr)}"
        if c.others is not None:
            text += f" with others = {self.expr(c.others)}"
        return text + f" by {self.named(c.agg)} {'desc' if c.desc else 'asc'}"

    def op_Sample(self, op: A.Sample) -> str:
        return f"sample {self.expr(op.count)}"

    def op_Search(self, op: A.Search) -> str:
        kind = "" if op.kind == "default" else f"kind={format_name(op.kind)} "
        return f"search {kind}{self.search_predicate(op.predicate)}"

    def op_Evaluate(self, op: A.Evaluate) -> str:
        parts = ["evaluate", *self.params(op.params),
                 f"{format_name(op.name)}({self.args(op.args, op.arg_names)})"]
        text = " ".join(parts)
        if op.schema is not None or op.schema_star:
            cols = ["*"] if op.schema_star else []
            cols += [f"{format_name(c)}:{ty}" for c, ty in op.schema or []]
            text += f" : ({', '.join(cols)})"
        return text

    def op_Serialize(self, op: A.Serialize) -> str:
        return "serialize" + (" " + self.named_list(op.exprs) if op.exprs else "")

    def op_As(self, op: A.As) -> str:
        return f"as {format_name(op.name)}"

    def op_GetSchema(self, op: A.GetSchema) -> str:
        return "getschema"

    def op_Render(self, op: A.Render) -> str:
        text = f"render {format_name(op.visualization)}"
        if op.properties:
            props = ", ".join(f"{format_name(k)}={_format_render_value(v)}"
                              for k, v in op.properties.items())
            text += f" with ({props})"
        return text

    def op_Invoke(self, op: A.Invoke) -> str:
        return f"invoke {format_name(op.name)}({self.args(op.args, [])})"

    def op_Unsupported(self, op: A.Unsupported) -> str:
        return op.name

    def params(self, params: dict[str, Any]) -> list[str]:
        return [f"{_format_param_key(k)}={_format_param_value(v)}" for k, v in params.items()]

    # ------------------------------------------------------------ lists and helpers

    def named(self, ne: A.NamedExpr) -> str:
        value = self.expr(ne.expr)
        if not ne.names:
            return value
        if len(ne.names) == 1:
            return f"{format_name(ne.names[0])} = {value}"
        names = ", ".join(_plain_ident(n, "the tuple target") for n in ne.names)
        return f"({names}) = {value}"

    def named_list(self, items: list[A.NamedExpr]) -> str:
        return ", ".join(self.named(ne) for ne in items)

    def sort_key(self, key: A.SortKey) -> str:
        text = f"{self.expr(key.expr)} {'desc' if key.desc else 'asc'}"
        if key.nulls_first is not None:
            text += " nulls first" if key.nulls_first else " nulls last"
        return text

    def args(self, args: list[A.Expr], names: list[str | None]) -> str:
        out = []
        for i, arg in enumerate(args):
            name = names[i] if i < len(names) else None
            text = self.arg(arg)
            out.append(f"{format_name(name)} = {text}" if name is not None else text)
        return ", ".join(out)

    def arg(self, arg: A.Expr) -> str:
        if isinstance(arg, A.Subquery):
            return f"({self.tabular(arg.query)})"
        return self.expr(arg)

    # ------------------------------------------------------------ scalar expressions

    def expr(self, e: A.Expr, head_space: bool = False) -> str:
        """An expression in a position that takes a whole expression (no outer parentheses).

        ``head_space`` is for a `let` value or function body, where the parser tries a tabular
        reading first: it writes ``f (x)`` instead of ``f(x)`` for a call at the head (else a
        tabular call) and ``bool (true)`` for a boolean (else a table named ``true``).
        """
        if isinstance(e, A.Binary):
            return f"{self.operand(e.left)} {e.op} {self.operand(e.right)}"
        if isinstance(e, A.InExpr):
            if e.subquery is not None:
                inner = f"({self.tabular(e.subquery)})"
            else:
                inner = "(" + ", ".join(self.expr(i) for i in e.items) + ")"
            return f"{self.operand(e.left)} {e.op} {inner}"
        if isinstance(e, A.Between):
            op = "!between" if e.negated else "between"
            return (f"{self.operand(e.left)} {op} "
                    f"({self.expr(e.low)} .. {self.expr(e.high)})")
        return self.operand(e, head_space)

    def operand(self, e: A.Expr, head_space: bool = False) -> str:
        """An expression as the operand of an operator: parenthesized unless it is atomic."""
        if isinstance(e, A.Binary | A.InExpr | A.Between):
            return f"({self.expr(e)})"
        if isinstance(e, A.Unary):
            return f"{e.op}{self.unary_operand(e.operand)}"
        return self.postfix(e, head_space)

    def unary_operand(self, e: A.Expr) -> str:
        if isinstance(e, A.Unary):
            # `- -x`: keep the tokens apart so the text never reads as a comment or `--`
            return " " + self.operand(e)
        if isinstance(e, A.Literal) and isinstance(e.value, int | float) \
                and not isinstance(e.value, bool) and e.value < 0:
            return f"({self.operand(e)})"
        return self.operand(e)

    def postfix(self, e: A.Expr, head_space: bool = False) -> str:
        sep = " " if head_space else ""
        if isinstance(e, A.Member):
            obj = self.postfix_object(e.obj)
            if _IDENT.fullmatch(e.name) and e.name not in _OPAQUE_WORDS:
                return f"{obj}.{e.name}"
            return f"{obj}.[{quote_string(e.name, chr(39))}]"
        if isinstance(e, A.Index):
            return f"{self.postfix_object(e.obj)}[{self.expr(e.index)}]"
        if isinstance(e, A.Name):
            return format_name(e.name)
        if isinstance(e, A.Star):
            return "*"
        if isinstance(e, A.Literal):
            return self.literal(e, sep)
        if isinstance(e, A.TypeLiteral):
            return f"typeof{sep}({e.type})"
        if isinstance(e, A.Call):
            return self.call(e, sep)
        if isinstance(e, A.Subquery):
            return f"toscalar({self.tabular(e.query)})"
        if isinstance(e, A.SearchTerm):
            return self.search_term(e)
        if isinstance(e, A.Binary | A.InExpr | A.Between | A.Unary):
            return f"({self.expr(e)})"
        raise TypeError(f"to_kql: unknown expression {type(e).__name__}")

    def postfix_object(self, e: A.Expr) -> str:
        """The object of ``.name`` or ``[index]``: literals and operators need parentheses."""
        if isinstance(e, A.Name | A.Call | A.Member | A.Index | A.TypeLiteral):
            return self.postfix(e)
        return f"({self.expr(e)})"

    def call(self, e: A.Call, sep: str) -> str:
        if e.name in ("toscalar", "materialize") and len(e.args) == 1 \
                and isinstance(e.args[0], A.Subquery) and not e.arg_names:
            return f"{e.name}{sep}({self.tabular(e.args[0].query)})"
        name = _plain_ident(e.name, "the function")
        return f"{name}{sep}({self.args(e.args, e.arg_names)})"

    def literal(self, lit: A.Literal, sep: str = "") -> str:
        v, ty = lit.value, lit.type
        if v is None:
            if ty == "string":
                return '""'
            return f"{ty}{sep}(null)" if ty in _TYPED_FORMS else f"{ty}(null)"
        if ty == "string":
            return quote_string(str(v))
        if ty == "bool":
            text = "true" if v else "false"
            # in a `let` value, a bare `true` would be read as a table name
            return f"bool{sep}({text})" if sep else text
        if ty == "long":
            if isinstance(v, bool) or not isinstance(v, int):
                return f"long{sep}({_format_number(v)})"
            return str(v)
        if ty == "int":
            return f"int{sep}({_format_number(int(v))})"
        if ty in ("real", "decimal"):
            f = float(v)
            if math.isnan(f):
                return f"{ty}{sep}(nan)"
            if math.isinf(f):
                return f"{ty}{sep}({'-' if f < 0 else ''}inf)"
            return _format_real(f) if ty == "real" else f"decimal{sep}({_format_real(f)})"
        if ty == "timespan":
            return _format_timespan(v)
        if ty == "datetime":
            if not isinstance(v, datetime):
                raise ValueError(f"cannot print datetime literal value {v!r}")
            return _format_datetime(v)
        if ty == "guid":
            return f"guid({v})"
        if ty == "dynamic":
            return f"dynamic{sep}({_format_json(v)})"
        raise ValueError(f"cannot print a literal of type {ty!r}")


def _format_number(v: Any) -> str:
    return str(v) if isinstance(v, int) else _format_real(v)


def _is_wildcard_table(name: str) -> bool:
    """``Device*Events``: a union table pattern the parser reads without brackets."""
    if "*" not in name or name in RESERVED:
        return False
    first, *rest = name.split("*")
    return bool(_IDENT.fullmatch(first)) and first not in RESERVED and all(
        seg == "" or _IDENT.fullmatch(seg) for seg in rest)
