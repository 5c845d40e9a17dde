"""Relations, columns and name bindings used while compiling.

A :class:`Rel` is the result of one pipe step: the SQL source it can be selected from (a CTE or
a table) and its *logical* columns — Kusto names and types, in Kusto order — each pointing at a
*physical* SQL column. Physical names are internal: they never collide case-insensitively (DuckDB
folds identifier case while Kusto does not) and the final result is renamed to the Kusto names
after execution, so user-chosen names never have to be valid SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from sqlglot import exp

from huntsman.kql import ast as A


@dataclass(frozen=True)
class Col:
    name: str  # Kusto name
    type: str  # Kusto type
    sql: str  # physical column in the relation


@dataclass
class Rel:
    source: str  # CTE or table name to select from
    cols: list[Col]
    physical: set[str] = field(default_factory=set)  # lower-cased physical names present
    order: list[exp.Ordered] | None = None  # row order, over physical columns, if serialized
    serialized: bool = False
    render: dict[str, Any] | None = None
    alias: str | None = None  # the name given by `as`, used by union withsource

    def col(self, name: str) -> Col | None:
        for c in self.cols:
            if c.name == name:
                return c
        return None

    def names(self) -> list[str]:
        return [c.name for c in self.cols]

    def with_cols(self, cols: list[Col]) -> Rel:
        return replace(self, cols=cols)


_SAFE = re.compile(r"[^A-Za-z0-9_]")


class Namer:
    """Fresh physical column and CTE names."""

    def __init__(self) -> None:
        self.counter = 0

    def physical(self, kusto_name: str, taken: set[str]) -> str:
        """A physical name for ``kusto_name`` not in ``taken`` (lower-cased); adds it there.
        Names starting with ``__`` are reserved for the compiler's own hidden columns."""
        internal = kusto_name.startswith("__") and kusto_name[2:3].isalpha()
        base = _SAFE.sub("_", kusto_name)[:40] or "c"
        if base[0].isdigit() or (base.startswith("__") and not internal):
            base = "c" + base
        name = base
        while name.lower() in taken:
            self.counter += 1
            name = f"{base}_{self.counter}"
        taken.add(name.lower())
        return name

    def cte(self) -> str:
        self.counter += 1
        return f"__s{self.counter}"


def unique_name(name: str, taken: set[str] | list[str]) -> str:
    """Kusto's rule for a clashing output name: append 1, 2, ... (``x`` → ``x1``)."""
    if name not in taken:
        return name
    i = 1
    while f"{name}{i}" in taken:
        i += 1
    return f"{name}{i}"


# ---------------------------------------------------------------- let bindings


@dataclass
class ScalarBinding:
    sql: exp.Expr
    type: str
    const: Any


@dataclass
class TabularBinding:
    node: A.Tabular
    env: Env
    rel: Rel | None = None  # compiled once, on first use
    materialize: bool = False


@dataclass
class FunctionBinding:
    fn: A.FunctionDef
    env: Env


@dataclass
class RelBinding:
    """A relation already compiled (``as`` names, tabular function parameters)."""

    rel: Rel


Binding = ScalarBinding | TabularBinding | FunctionBinding | RelBinding


class Env:
    """Lexical scope of ``let`` names; lookups walk to the parent."""

    def __init__(self, parent: Env | None = None):
        self.parent = parent
        self.names: dict[str, Binding] = {}

    def lookup(self, name: str) -> Binding | None:
        env: Env | None = self
        while env is not None:
            if name in env.names:
                return env.names[name]
            if env.parent is None:
                return env.resolve(name)
            env = env.parent
        return None

    def resolve(self, name: str) -> Binding | None:
        """The outermost scope's fallback for a name no ``let`` binds (stored functions)."""
        return None

    def child(self) -> Env:
        return Env(self)
