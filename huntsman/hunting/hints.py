"""Optimization hints: advice read from a query's text, in the spirit of Microsoft's
"Advanced hunting query best practices" (filter on time first, prefer ``has`` to
``contains``, project before ``join``, smaller table on the left, no search across every
table, case-sensitive operators where the values are exact-case, no regex where a string
operator does the same).

Each :class:`Hint` has a stable ``code``, a message saying what to change, and the 1-based
line and column of the offending spot. Hints come from the parsed query (never from running
it); the sizes of the tables it reads (``table_rows``) sharpen the ones about large tables.

>>> [h.code for h in optimization_hints('DeviceProcessEvents | where FileName contains "cmd"')]
['no-time-filter', 'use-has']
>>> optimization_hints('DeviceProcessEvents | where Timestamp > ago(1h) | take 10')
[]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Literal

from huntsman.errors import KqlError
from huntsman.kql import ast as A
from huntsman.kql.parser import parse
from huntsman.schema import action_types, catalog

Severity = Literal["info", "warning"]
UsageLevel = Literal["low", "medium", "high"]

LARGE_TABLE_ROWS = 1_000_000
"""A table this large is worth a time filter (and a warning when a query reads it without)."""
MIN_INDEXED_TERM = 3
"""Terms shorter than this are not in Kusto's term index: ``has`` scans every value."""
TIME_COLUMNS = frozenset({"timestamp", "timegenerated"})
"""Column names whose filter counts as a time filter."""
EXACT_CASE_COLUMNS = frozenset({"ActionType"})
"""Columns whose values are spelled one way only, so case-insensitive matching is wasted."""
_NARROWING = (A.Project, A.ProjectKeep, A.ProjectAway, A.Summarize, A.Distinct, A.Count)
"""Operators after which a pipeline carries only the columns the query asked for."""
_REDUCING = (A.Summarize, A.Distinct, A.Count, A.Take, A.Top)
"""Operators that change a pipeline's row count far more than a filter does."""
_ORDER_SENSITIVE_AGGREGATES = frozenset({"make_list", "make_list_if", "make_list_with_nulls",
                                         "make_set", "make_set_if", "make_bag", "make_bag_if"})
_REGEX_META = set(".^$*+?()[]{}|\\")
_HEAVY = (A.Join, A.Lookup, A.Union, A.MvExpand, A.MvApply, A.ParseOp, A.ParseKv, A.Sort)
"""Operators a time filter should come before: each does work on every row it gets, and
filtering first gives the same rows (unlike summarize or top, whose results it changes)."""
_CASE_FOLDS = frozenset({"tolower", "toupper"})
_CASE_INSENSITIVE = {"==": "=~", "!=": "!~", "has": "has", "contains": "contains",
                     "startswith": "startswith", "endswith": "endswith", "in": "in~"}
"""Operators that, compared with a tolower()/toupper() column, have a case-insensitive form."""


@dataclass(frozen=True)
class Hint:
    """One piece of advice about a query: where (1-based line, column) and what to change."""

    code: str
    message: str
    line: int
    column: int
    severity: Severity = "info"

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "line": self.line,
                "column": self.column, "severity": self.severity}


def usage_level(cpu_seconds: float, quota_seconds: float | None,
                window_cpu: float | None = None) -> UsageLevel:
    """How heavy one query was against a CPU quota, like Defender's resource-usage indicator:
    ``high`` when it took 10% of the quota or more, ``medium`` from 1%, else ``low``. An
    unlimited quota (None or infinity) makes every query ``low``; a quota of 0 every one
    ``high``. ``window_cpu``, the CPU-seconds the tenant has used in the quota's window (this
    query included), raises the level to ``high`` when the window is 80% spent and to
    ``medium`` at 50%.

    >>> usage_level(0.5, 600), usage_level(10, 600), usage_level(90, 600), usage_level(90, None)
    ('low', 'medium', 'high', 'low')
    >>> [usage_level(0.5, 600, window_cpu=spent) for spent in (3, 310, 500)]
    ['low', 'medium', 'high']
    """
    if quota_seconds is None or math.isinf(quota_seconds):
        return "low"
    if quota_seconds <= 0 or cpu_seconds >= 0.10 * quota_seconds:
        return "high"
    spent = 0.0 if window_cpu is None else window_cpu / quota_seconds
    if spent >= 0.80:
        return "high"
    if cpu_seconds >= 0.01 * quota_seconds or spent >= 0.50:
        return "medium"
    return "low"


def optimization_hints(kql: str, table_rows: Mapping[str, int] | None = None) -> list[Hint]:
    """Advice for ``kql``, in the order of the query text; none for a query that does not
    parse (running it reports the error). ``table_rows`` maps table names to their sizes.

    >>> h = optimization_hints('DeviceEvents | where Timestamp > ago(1d)\\n'
    ...                        '| where ActionType =~ "processcreated"')
    >>> h[0].code, h[0].line, h[0].column
    ('case-sensitive-equals', 2, 20)
    >>> h[0].message
    'ActionType values are exact-case: use == "ProcessCreated" instead of =~ (faster)'
    """
    try:
        script = parse(kql)
    except KqlError:
        return []
    return _Advisor(kql, table_rows).run(script)


class _Advisor:
    def __init__(self, text: str, table_rows: Mapping[str, int] | None):
        self.text = text
        self.table_rows = {k.lower(): v for k, v in (table_rows or {}).items()}
        self.sized = table_rows is not None
        self.lets: dict[str, A.Tabular] = {}
        self.hints: dict[tuple[str, int], Hint] = {}
        self.tables = {name.lower(): t for name, t in catalog().tables.items()}
        self.action_types = {v.lower(): v for values in action_types().values() for v in values}

    def run(self, script: A.Script) -> list[Hint]:
        for st in script.statements:
            if isinstance(st, A.Let) and isinstance(st.value, A.Tabular):
                self.lets[st.name] = st.value
        for node in _nodes(script):
            self.expression(node)
            if isinstance(node, A.Pipe):
                self.pipeline(node)
            elif isinstance(node, A.SearchSource) and not node.tables:
                self.add("search-all-tables", node.pos, "warning",
                         "search without 'in (Table, ...)' scans every column of every table: "
                         "name the tables (and columns) to look in")
            elif isinstance(node, A.Find) and node.tables is None:
                self.add("search-all-tables", node.pos, "warning",
                         "find without 'in (Table, ...)' scans every table: name the tables "
                         "to look in")
        last = next((st.query for st in reversed(script.statements)
                     if isinstance(st, A.QueryStatement)), None)
        if isinstance(last, A.Tabular):
            self.time_filters(last, [], set())
        return sorted(self.hints.values(), key=lambda h: (h.line, h.column, h.code))

    def add(self, code: str, pos: int, severity: Severity, message: str) -> None:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        self.hints.setdefault((code, pos), Hint(code, message, line, column, severity))

    # ------------------------------------------------------------ scalar operators

    def expression(self, node: object) -> None:
        if isinstance(node, A.Binary):
            self.binary(node)
        elif isinstance(node, A.InExpr):
            if node.op.lower() in ("has_any", "has_all"):
                for item in node.items:
                    self.short_term(node.op, _string(item), item.pos or node.pos)
            elif node.op == "in":
                self.case_fold(node.op, node.left, node.pos)
            elif node.op == "in~" and _column(node.left) in EXACT_CASE_COLUMNS:
                self.add("case-sensitive-equals", node.pos, "info",
                         f"{_column(node.left)} values are exact-case: use in instead of in~ "
                         f"(faster)")

    def binary(self, node: A.Binary) -> None:
        op, value = node.op.lower(), _string(node.right)
        self.case_fold(node.op, node.left, node.pos)
        if isinstance(node.left, A.Star) and op in ("has", "contains", "has_cs", "contains_cs",
                                                     "==", "=~"):
            self.add("search-all-columns", node.pos, "info",
                     f"'* {node.op}' searches every column: name the column(s) to look in")
        if op in ("has", "!has", "has_cs", "!has_cs"):
            self.short_term(node.op, value, node.pos)
        elif op in ("contains", "!contains", "contains_cs", "!contains_cs"):
            if value is not None and len(value) >= MIN_INDEXED_TERM and value.isalnum():
                better = node.op.replace("contains", "has")
                self.add("use-has", node.pos, "info",
                         f"looking for the whole term \"{value}\"? use {better} \"{value}\": "
                         f"it matches whole terms through the term index, much faster than "
                         f"{node.op}, which scans every value for a substring")
        elif op == "=~" and _column(node.left) in EXACT_CASE_COLUMNS:
            canonical = self.action_types.get(value.lower()) if value is not None else None
            shown = f'== "{canonical}"' if canonical else "=="
            self.add("case-sensitive-equals", node.pos, "info",
                     f"{_column(node.left)} values are exact-case: use {shown} instead of =~ "
                     f"(faster)")
        elif op == "matches regex" and value is not None:
            plain = _regex_alternative(value)
            if plain is not None:
                self.add("regex-not-needed", node.pos, "info",
                         f"this regular expression is a plain string: use {plain} instead of "
                         f"matches regex (much faster)")

    def case_fold(self, op: str, left: A.Expr, pos: int) -> None:
        """``tolower(Col) == "x"`` converts every value before comparing: ``Col =~ "x"``."""
        better = _CASE_INSENSITIVE.get(op)
        if (better is not None and isinstance(left, A.Call) and left.name in _CASE_FOLDS
                and len(left.args) == 1 and isinstance(left.args[0], A.Name)):
            col = left.args[0].name
            self.add("case-insensitive-operator", left.pos or pos, "info",
                     f"{left.name}({col}) {op} ... converts every value before comparing: use "
                     f"{col} {better} ..., which ignores case already and is faster")

    def short_term(self, op: str, value: str | None, pos: int) -> None:
        if value and len(value) < MIN_INDEXED_TERM:
            self.add("short-has-term", pos, "info",
                     f"{op} \"{value}\": terms shorter than {MIN_INDEXED_TERM} characters are "
                     f"not indexed, so every value is scanned; use a longer term, or == on "
                     f"the whole value")

    # ------------------------------------------------------------ pipelines

    def pipeline(self, node: A.Pipe) -> None:
        """Order-dependent advice on the operators of one pipeline ``source | op | op ...``."""
        source, ops = _chain(node)
        if not isinstance(node.op, (A.Join, A.Lookup)) and not isinstance(node.op, A.Summarize):
            return
        if isinstance(node.op, A.Summarize):
            self.sort_before_summarize(ops)
            return
        join, before = node.op, ops[:-1]
        left_table, right_table = self.stored_source(source), self.stored_source(join.right)
        right_ops = _chain(join.right)[1]
        what = "join" if isinstance(join, A.Join) else "lookup"
        unprojected = []
        if left_table and not any(isinstance(op, _NARROWING) for op in before):
            unprojected.append(f"left ({left_table})")
        if right_table and not any(isinstance(op, _NARROWING) for op in right_ops):
            unprojected.append(f"right ({right_table})")
        if unprojected:
            sides = (f"{unprojected[0]} side carries" if len(unprojected) == 1
                     else f"{' and '.join(unprojected)} sides carry")
            self.add("project-before-join", join.pos, "info",
                     f"project only the columns you need before this {what}: its {sides} "
                     f"every column of the table")
        if (isinstance(join, A.Join) and left_table and right_table
                and not any(isinstance(op, _REDUCING) for op in before + right_ops)):
            left_n = self.table_rows.get(left_table.lower())
            right_n = self.table_rows.get(right_table.lower())
            if left_n is not None and right_n is not None and left_n > right_n:
                self.add("smaller-table-left", join.pos, "info",
                         f"the left side of this join reads {left_table} ({left_n:,} rows), "
                         f"larger than the right side's {right_table} ({right_n:,} rows): put "
                         f"the smaller table on the left")

    def sort_before_summarize(self, ops: Sequence[A.Operator]) -> None:
        summarize = ops[-1]
        assert isinstance(summarize, A.Summarize)
        if any(isinstance(n, A.Call) and n.name.lower() in _ORDER_SENSITIVE_AGGREGATES
               for n in _nodes(summarize)):
            return
        for op in reversed(ops[:-1]):
            if isinstance(op, A.Sort):
                self.add("sort-before-summarize", op.pos, "info",
                         "summarize does not keep row order, so this sort is wasted work: "
                         "sort after the summarize instead")
                return
            if not isinstance(op, (A.Where, A.Extend, A.Project, A.ProjectAway, A.ProjectKeep,
                                   A.ProjectRename, A.ProjectReorder)):
                return  # take, top, serialize ... use the order

    def stored_source(self, node: A.Tabular, depth: int = 0) -> str | None:
        """The stored table a pipeline starts from (through ``let`` names), if any."""
        while isinstance(node, A.Pipe):
            node = node.input
        if isinstance(node, A.TableRef):
            if node.name in self.lets and depth < 20:
                return self.stored_source(self.lets[node.name], depth + 1)
            if node.name.lower() in self.tables or node.name.lower() in self.table_rows:
                return node.name
        return None

    # ------------------------------------------------------------ time filters

    def time_filters(self, node: A.Tabular, downstream: list[A.Operator],
                     seen: set[str]) -> None:
        """Flag stored tables with a Timestamp whose rows reach the result unfiltered by time.

        ``downstream`` holds the operators applied after ``node`` in the query."""
        if isinstance(node, A.Pipe):
            op = node.op
            self.time_filters(node.input, [op, *downstream], seen)
            if isinstance(op, (A.Join, A.Lookup)):
                self.time_filters(op.right, [], seen)
            elif isinstance(op, A.Union):
                for t in op.tables:
                    self.time_filters(t, downstream, seen)
        elif isinstance(node, A.TableRef):
            if node.name in self.lets:
                if node.name not in seen:
                    self.time_filters(self.lets[node.name], downstream, seen | {node.name})
                return
            self.table_time_filter(node, downstream)
        elif isinstance(node, (A.UnionSource, A.SearchSource)):
            for t in node.tables:
                self.time_filters(t, downstream, seen)
        elif isinstance(node, A.Materialize):
            self.time_filters(node.query, downstream, seen)

    def table_time_filter(self, node: A.TableRef, downstream: list[A.Operator]) -> None:
        table = self.tables.get(node.name.lower())
        if table is not None and not any(c.name == "Timestamp" for c in table.columns):
            return
        rows = self.table_rows.get(node.name.lower())
        if table is None and rows is None:
            return  # a name we know nothing about (a function, a custom table unmeasured)
        first = next((i for i, op in enumerate(downstream)
                      if isinstance(op, A.Where) and _mentions_time(op.predicate)), None)
        if first is not None:
            heavy = next((op for op in downstream[:first] if isinstance(op, _HEAVY)), None)
            if heavy is not None:
                self.add("time-filter-first", downstream[first].pos, "info",
                         f"filter on time right after {node.name}, before the "
                         f"{_operator_name(heavy)}: every row the {_operator_name(heavy)} "
                         f"handles costs, and the time filter would drop most of them")
            return
        if rows is not None and rows < LARGE_TABLE_ROWS:
            return
        size = f" ({rows:,} rows)" if rows is not None else ""
        self.add("no-time-filter", node.pos, "warning" if rows is not None else "info",
                 f"no time filter on {node.name}{size}: filter on Timestamp first, e.g. "
                 f"'| where Timestamp > ago(7d)', so that only that period is read")


def _operator_name(op: A.Operator) -> str:
    name = type(op).__name__
    return {"MvExpand": "mv-expand", "MvApply": "mv-apply", "ParseOp": "parse",
            "ParseKv": "parse-kv", "MakeSeries": "make-series", "TopNested": "top-nested"
            }.get(name, name.lower())


def _chain(node: A.Tabular) -> tuple[A.Tabular, list[A.Operator]]:
    """A pipeline as its source and its operators in order."""
    ops: list[A.Operator] = []
    while isinstance(node, A.Pipe):
        ops.append(node.op)
        node = node.input
    return node, ops[::-1]


def _nodes(root: object) -> Iterator[object]:
    """Every AST node under ``root`` (itself included), depth first."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif is_dataclass(node) and not isinstance(node, type):
            yield node
            stack.extend(reversed([getattr(node, f.name) for f in fields(node)]))


def _string(node: object) -> str | None:
    if isinstance(node, A.Literal) and isinstance(node.value, str):
        return node.value
    return None


def _column(node: object) -> str | None:
    return node.name if isinstance(node, A.Name) else None


def _mentions_time(predicate: A.Expr) -> bool:
    return any(isinstance(n, A.Name) and n.name.lower() in TIME_COLUMNS
               for n in _nodes(predicate))


def _regex_alternative(pattern: str) -> str | None:
    """The string operator that does what ``matches regex pattern`` does, if it is one."""
    flags = ""
    if pattern.startswith("(?i)"):
        flags, pattern = "i", pattern[4:]
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    core = pattern[1 if start else 0: len(pattern) - (1 if end else 0)]
    if not core or any(c in _REGEX_META for c in core):
        return None
    cs = "" if flags else "_cs"
    if start and end:
        return f'{"=~" if flags else "=="} "{core}"'
    if start:
        return f'startswith{cs} "{core}"'
    if end:
        return f'endswith{cs} "{core}"'
    if re.fullmatch(r"[A-Za-z0-9]+", core):
        return f'has{cs} "{core}" (whole term) or contains{cs} "{core}"'
    return f'contains{cs} "{core}"'


__all__ = ["Hint", "LARGE_TABLE_ROWS", "optimization_hints", "usage_level"]
