"""Validation of a rule against the engine, before it is saved.

The query must compile, and its result must hold ``Timestamp``, ``ReportId`` and at least one
impacted-entity column; the columns the alert refers to (entities, custom details, title and
description placeholders, actions) must be in it. A continuous (NRT) rule must read exactly one
table that supports continuous detection, with row-by-row operators only, no join, union,
externaldata, comments or non-literal regular expressions.

>>> from huntsman.store import Database
>>> from huntsman.detections.model import Rule
>>> db = Database()
>>> validate_rule(Rule(name="r", query="DeviceProcessEvents | project Timestamp, DeviceId"), db)
Traceback (most recent call last):
...
huntsman.detections.model.RuleError: the query's result has no ReportId column: project ReportId (with Timestamp and an entity column such as DeviceId) so that each alert can point at its events
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from huntsman.detections.model import IDENTIFIER_COLUMNS, Rule, RuleError, Schedule
from huntsman.kql import ast as A
from huntsman.kql.parser import parse
from huntsman.schema import catalog

if TYPE_CHECKING:
    from huntsman.compiler.compiler import CompiledQuery
    from huntsman.kql.stored import StoredFunction
    from huntsman.store.database import Database

NRT_OPERATORS: dict[type, str] = {
    A.Where: "where", A.Extend: "extend", A.Project: "project",
    A.ProjectAway: "project-away", A.ProjectKeep: "project-keep",
    A.ProjectRename: "project-rename", A.ProjectReorder: "project-reorder", A.ParseOp: "parse",
}
"""The operators a continuous rule may use: each works on one row at a time."""
REGEX_ARGUMENT: dict[str, int] = {"extract": 0, "extract_all": 0, "replace_regex": 1,
                                  "replace": 0, "extractjson": 0}
"""Functions whose argument at this index is a regular expression."""


def _line_col(text: str, pos: int) -> tuple[int, int]:
    before = text[:pos]
    return before.count("\n") + 1, pos - (before.rfind("\n") + 1) + 1


def _nodes(node: Any) -> Iterator[Any]:
    """Every AST node under ``node`` (dataclasses, lists and tuples walked)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend(n)
        elif dataclasses.is_dataclass(n) and not isinstance(n, type):
            yield n
            stack.extend(getattr(n, f.name) for f in dataclasses.fields(n))


def comment_offset(text: str) -> int | None:
    """Where the first ``//`` comment outside string literals starts, or None.

    >>> comment_offset('T | where a == "http://x" // mine'), comment_offset("T")
    (26, None)
    """
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "@" and i + 1 < n and text[i + 1] in "'\"":
            end = text.find(text[i + 1], i + 2)
            i = n if end < 0 else end + 1
            continue
        if ch in "'\"":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch == "/" and i + 1 < n and text[i + 1] == "/":
            return i
        i += 1
    return None


def check_nrt(query: str) -> str:
    """Check a continuous rule's query; returns the one table it reads."""
    def fail(message: str, pos: int = 0) -> RuleError:
        line, col = _line_col(query, pos) if pos else (0, 0)
        return RuleError(message, "query", line, col, query)

    at = comment_offset(query)
    if at is not None:
        raise fail("continuous (NRT) rules cannot contain comments: remove the // comment", at)
    script = parse(query)
    queries = [s for s in script.statements if isinstance(s, A.QueryStatement)]
    for s in script.statements:
        if isinstance(s, A.Let) and not isinstance(s.value, A.Literal):
            raise fail(f"continuous (NRT) rules may only use let for constant values; "
                       f"'{s.name}' is not one: write it into the query", s.pos)
    if len(queries) != 1:
        raise fail("a continuous (NRT) rule must be one query over one table")
    pipe: Any = queries[0].query
    ops: list[Any] = []
    while isinstance(pipe, A.Pipe):
        ops.append(pipe.op)
        pipe = pipe.input
    if not isinstance(pipe, A.TableRef):
        kind = {A.Datatable: "datatable", A.Range: "range", A.Print: "print",
                A.ExternalData: "externaldata", A.TabularCall: "a function call"}.get(
                    type(pipe), type(pipe).__name__.lower())
        raise fail(f"a continuous (NRT) rule must start with a table that supports "
                   f"continuous detection, not {kind}", getattr(pipe, "pos", 0))
    table = pipe.name
    cat = catalog()
    if table not in cat.tables:
        raise fail(f"'{table}' is not an Advanced Hunting table: continuous (NRT) rules run "
                   f"on the schema's tables only", pipe.pos)
    if not cat.table(table).nrt_supported:
        supported = sorted(t.name for t in cat.tables.values() if t.nrt_supported)
        raise fail(f"table '{table}' does not support continuous (NRT) detection; use a "
                   f"scheduled frequency, or one of: {', '.join(supported)}", pipe.pos)
    for op in reversed(ops):
        name = NRT_OPERATORS.get(type(op))
        if name is None:
            shown = {A.Join: "join", A.Union: "union", A.Lookup: "lookup",
                     A.Summarize: "summarize"}.get(type(op), type(op).__name__.lower())
            raise fail(f"continuous (NRT) rules cannot use '{shown}': only "
                       f"{', '.join(sorted(set(NRT_OPERATORS.values())))} (row by row) are "
                       f"allowed; use a scheduled frequency for this query", op.pos)
        if isinstance(op, A.ParseOp) and op.kind == "regex":
            pass  # parse's pattern is a literal by construction
    for node in _nodes(script):
        if isinstance(node, (A.TableRef, A.ExternalData)) and node is not pipe:
            raise fail("continuous (NRT) rules read one table only: remove the second "
                       "table (joins, unions, subqueries and externaldata are not allowed)",
                       node.pos)
        if isinstance(node, A.Binary) and node.op == "matches regex" \
                and not isinstance(node.right, A.Literal):
            raise fail("continuous (NRT) rules need literal regular expressions: write the "
                       "pattern of 'matches regex' as a string", node.pos)
        if isinstance(node, A.Call) and node.name in REGEX_ARGUMENT:
            i = REGEX_ARGUMENT[node.name]
            if len(node.args) > i and not isinstance(node.args[i], A.Literal):
                raise fail(f"continuous (NRT) rules need literal regular expressions: write "
                           f"the pattern of {node.name}() as a string", node.pos)
    return table


def validate_rule(rule: Rule, db: Database, functions: Sequence[StoredFunction] | None = None
                  ) -> tuple[Schedule, CompiledQuery]:
    """Everything a rule needs before it is saved (RuleError / KqlError say what to change).

    Returns its schedule and its compiled query."""
    schedule = rule.check()
    if schedule.continuous:
        check_nrt(rule.query)
    compiled = db.compile(rule.query, functions=functions)
    columns = dict(compiled.columns)
    needs_entity = (" (with Timestamp and an entity column such as DeviceId) so that each "
                    "alert can point at its events")
    if "Timestamp" not in columns:
        raise RuleError("the query's result has no Timestamp column: project Timestamp"
                        + needs_entity, "query")
    if columns["Timestamp"] != "datetime":
        raise RuleError(f"the query's Timestamp column is a {columns['Timestamp']}, not a "
                        f"datetime: keep the events' own Timestamp", "query")
    if "ReportId" not in columns:
        raise RuleError("the query's result has no ReportId column: project ReportId"
                        + needs_entity, "query")
    if not any(c in columns for c in IDENTIFIER_COLUMNS):
        raise RuleError("the query's result has no impacted-entity column: project one of "
                        + ", ".join(IDENTIFIER_COLUMNS), "query")

    def need(column: str, what: str, field: str) -> None:
        if column not in columns:
            raise RuleError(f"{what} refers to column '{column}', which the query's result "
                            f"does not have: project it, or change {field}", field)

    for kind, column in rule.entities.items():
        need(column, f"the impacted {kind} entity", "entities")
    for key, column in rule.custom_details.items():
        need(column, f"custom detail '{key}'", "custom_details")
    for where, names in rule.placeholders().items():
        for name in names:
            need(name, f"the alert {where}'s placeholder {{{{{name}}}}}", where)
    for action in rule.actions:
        if action.column:
            need(action.column, f"automated action {action.type}", "actions")
    return schedule, compiled
