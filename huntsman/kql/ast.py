"""The KQL syntax tree: scalar expressions, tabular operators and statements.

Every node keeps ``pos`` (an offset into the query text) so that later stages can report
line and column. Nodes are plain dataclasses; ``printer.py`` turns them back into KQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- scalar expressions


@dataclass
class Expr:
    pos: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Literal(Expr):
    """A constant. ``type`` is a Kusto type name; timespans are ticks (int), datetimes are
    timezone-naive UTC ``datetime``s, dynamics are JSON-compatible Python values."""

    value: Any
    type: str


@dataclass
class Name(Expr):
    """A column, ``let`` name or parameter reference."""

    name: str


@dataclass
class Star(Expr):
    pass


@dataclass
class Call(Expr):
    name: str
    args: list[Expr]
    arg_names: list[str | None] = field(default_factory=list)  # f(x = 1): named arguments


@dataclass
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass
class Unary(Expr):
    op: str
    operand: Expr


@dataclass
class Member(Expr):
    """``obj.name``: dynamic property access (or a ``$left.col`` / ``$right.col`` reference)."""

    obj: Expr
    name: str


@dataclass
class Index(Expr):
    """``obj[index]``: dynamic array element or property."""

    obj: Expr
    index: Expr


@dataclass
class InExpr(Expr):
    """``x in (a, b)`` and friends; ``op`` is one of in, !in, in~, !in~, has_any, has_all."""

    op: str
    left: Expr
    items: list[Expr]
    subquery: Tabular | None = None


@dataclass
class Between(Expr):
    left: Expr
    low: Expr
    high: Expr
    negated: bool = False


@dataclass
class TypeLiteral(Expr):
    """``typeof(long)`` as a type literal."""

    type: str


@dataclass
class SearchTerm(Expr):
    """A bare string term of a ``search``/``find`` predicate (``"err*"``) or ``Col:"term"``."""

    term: str
    column: str | None = None


@dataclass
class Subquery(Expr):
    """A tabular expression in scalar position: ``toscalar(T | ...)``, ``materialize(...)``."""

    query: Tabular


@dataclass
class NamedExpr:
    """``Name = expr`` (``names`` has several entries for ``(a, b) = f(...)``) or a bare expr."""

    expr: Expr
    names: list[str] = field(default_factory=list)
    pos: int = field(default=0, compare=False, repr=False)


# ---------------------------------------------------------------- tabular expressions


@dataclass
class Tabular:
    pos: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class TableRef(Tabular):
    """A table, tabular ``let`` name or parameterless view/function by name."""

    name: str


@dataclass
class TabularCall(Tabular):
    """A call of a user function (or ``table('x')``) as a tabular source."""

    name: str
    args: list[Expr]
    arg_names: list[str | None] = field(default_factory=list)


@dataclass
class Datatable(Tabular):
    columns: list[tuple[str, str]]
    values: list[Expr]


@dataclass
class Range(Tabular):
    column: str
    start: Expr
    stop: Expr
    step: Expr


@dataclass
class Print(Tabular):
    exprs: list[NamedExpr]


@dataclass
class Pipe(Tabular):
    """``input | op``."""

    input: Tabular
    op: Operator


@dataclass
class Materialize(Tabular):
    query: Tabular


@dataclass
class SearchSource(Tabular):
    """``search [kind=...] [in (T1, T2)] predicate`` at the start of a pipeline."""

    predicate: Expr
    tables: list[Tabular]
    kind: str = "default"


@dataclass
class Find(Tabular):
    """``find [withsource=C] [in (T1, ...)] where predicate [project-smart | project ...]``.

    ``project`` is None for project-smart, else (column, type or None) pairs; ``pack`` means the
    list ends with ``pack_all()``."""

    predicate: Expr
    tables: list[Tabular] | None
    withsource: str | None = None
    project: list[tuple[str, str | None]] | None = None
    pack: bool = False
    project_away: list[str] = field(default_factory=list)


@dataclass
class ExternalData(Tabular):
    """``externaldata (col:type, ...) [ "uri", ... ] with (format="csv", ...)``."""

    columns: list[tuple[str, str]]
    uris: list[Expr]
    properties: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- operators (after a pipe)


@dataclass
class Operator:
    pos: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Where(Operator):
    predicate: Expr


@dataclass
class Project(Operator):
    exprs: list[NamedExpr]


@dataclass
class ProjectAway(Operator):
    patterns: list[str]


@dataclass
class ProjectKeep(Operator):
    patterns: list[str]


@dataclass
class ProjectRename(Operator):
    renames: list[tuple[str, str]]  # (new, old)


@dataclass
class ProjectReorder(Operator):
    patterns: list[tuple[str, str | None]]  # (pattern, asc|desc|granny-asc|granny-desc|None)


@dataclass
class Extend(Operator):
    exprs: list[NamedExpr]


@dataclass
class Summarize(Operator):
    aggs: list[NamedExpr]
    by: list[NamedExpr]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Count(Operator):
    name: str = "Count"


@dataclass
class Take(Operator):
    count: Expr


@dataclass
class SortKey:
    expr: Expr
    desc: bool = True
    nulls_first: bool | None = None


@dataclass
class Sort(Operator):
    keys: list[SortKey]


@dataclass
class Top(Operator):
    count: Expr
    key: SortKey


@dataclass
class Distinct(Operator):
    exprs: list[NamedExpr]  # empty list with star=True means `distinct *`
    star: bool = False


@dataclass
class JoinCondition:
    left: Expr
    right: Expr


@dataclass
class Join(Operator):
    right: Tabular
    kind: str
    on: list[Expr]  # Name(col) for `on col`, Binary('==', $left.a, $right.b)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lookup(Operator):
    right: Tabular
    kind: str
    on: list[Expr]


@dataclass
class Union(Operator):
    tables: list[Tabular]
    kind: str = "outer"
    withsource: str | None = None
    isfuzzy: bool = False


@dataclass
class UnionSource(Tabular):
    """``union T1, T2`` at the start of a pipeline."""

    tables: list[Tabular]
    kind: str = "outer"
    withsource: str | None = None
    isfuzzy: bool = False


@dataclass
class MvExpand(Operator):
    columns: list[tuple[NamedExpr, str | None]]  # (column/expr, to-typeof type)
    itemindex: str | None = None
    limit: Expr | None = None
    bagexpansion: str = "bag"


@dataclass
class ParseOp(Operator):
    source: Expr
    kind: str
    pattern: list[Any]  # str literal pieces, ('col', name, type) or ('*',)
    flags: str = ""
    where: bool = False  # parse-where: drop the rows that do not match


@dataclass
class ParseKv(Operator):
    """``parse-kv expr as (key:type, ...) with (pair_delimiter=..., kv_delimiter=..., ...)``;
    ``quote`` and ``escape`` may repeat, so options hold lists for them."""

    source: Expr
    keys: list[tuple[str, str]]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MakeSeriesAgg:
    expr: NamedExpr
    default: Expr | None = None


@dataclass
class MakeSeries(Operator):
    """``make-series aggs on axis [from a] [to b] step s [by ...]`` (or ``in range(a, b, s)``)."""

    aggs: list[MakeSeriesAgg]
    axis: NamedExpr
    start: Expr | None
    end: Expr | None
    step: Expr
    by: list[NamedExpr] = field(default_factory=list)
    in_range: bool = False
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class MvApply(Operator):
    """``mv-apply [with_itemindex=i] cols [limit n] on (subquery)``: the subquery is a list of
    operators applied to each row's expanded subtable."""

    columns: list[tuple[NamedExpr, str | None]]
    subquery: list[Operator]
    itemindex: str | None = None
    limit: Expr | None = None


@dataclass
class TopNestedClause:
    count: Expr | None
    expr: NamedExpr
    agg: NamedExpr
    others: Expr | None = None
    desc: bool = True


@dataclass
class TopNested(Operator):
    clauses: list[TopNestedClause]


@dataclass
class Sample(Operator):
    count: Expr


@dataclass
class Search(Operator):
    """``T | search [kind=...] predicate``."""

    predicate: Expr
    kind: str = "default"


@dataclass
class Evaluate(Operator):
    """``evaluate plugin(args) [: (schema)]``; ``schema_star`` for ``: (*, col:type, ...)``."""

    name: str
    args: list[Expr]
    arg_names: list[str | None] = field(default_factory=list)
    schema: list[tuple[str, str]] | None = None
    schema_star: bool = False
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Serialize(Operator):
    exprs: list[NamedExpr]


@dataclass
class As(Operator):
    name: str


@dataclass
class GetSchema(Operator):
    pass


@dataclass
class Render(Operator):
    visualization: str
    properties: dict[str, Any]


@dataclass
class Invoke(Operator):
    name: str
    args: list[Expr]


@dataclass
class Unsupported(Operator):
    """An operator that parses but is not implemented; the compiler reports it by name."""

    name: str


# ---------------------------------------------------------------- statements


@dataclass
class Param:
    name: str
    type: str | None  # None for tabular parameters
    default: Expr | None = None
    tabular: bool = False


@dataclass
class FunctionDef:
    params: list[Param]
    body: list[Statement]  # lets inside, then the final expression
    view: bool = False


@dataclass
class Statement:
    pos: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Let(Statement):
    name: str
    value: Expr | Tabular | FunctionDef


@dataclass
class Set(Statement):
    name: str
    value: Expr | None


@dataclass
class QueryStatement(Statement):
    query: Tabular | Expr


@dataclass
class Script:
    statements: list[Statement]
