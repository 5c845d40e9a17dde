"""The Advanced Hunting catalog as data: tables, columns, Kusto types, entity columns.

>>> from huntsman.schema import catalog
>>> catalog().table("DeviceProcessEvents").column("FileName").type
'string'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

KUSTO_TYPES = ("string", "long", "int", "real", "decimal", "bool", "datetime", "timespan",
               "dynamic", "guid")
TYPE_ALIASES = {"double": "real", "boolean": "bool", "date": "datetime", "time": "timespan",
                "uuid": "guid", "uniqueid": "guid", "int64": "long", "int32": "int",
                "float": "real"}


def normalize_type(name: str) -> str:
    """The canonical Kusto type name for ``name`` (``double`` → ``real``), or raise ValueError."""
    n = name.strip().lower()
    n = TYPE_ALIASES.get(n, n)
    if n not in KUSTO_TYPES:
        raise ValueError(f"unknown Kusto type '{name}' (expected one of {', '.join(KUSTO_TYPES)})")
    return n


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    description: str = ""
    nrt_supported: bool = False
    entity_columns: tuple[str, ...] = ()
    builtin: bool = True
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({c.name: c for c in self.columns})

    def column(self, name: str) -> Column:
        return self._by_name[name]

    def has_column(self, name: str) -> bool:
        return name in self._by_name


@dataclass
class Catalog:
    tables: dict[str, Table]

    def table(self, name: str) -> Table:
        return self.tables[name]

    def names(self) -> list[str]:
        return sorted(self.tables)


@cache
def catalog() -> Catalog:
    """The built-in Advanced Hunting tables, loaded once from the packaged ``tables.json``."""
    raw = json.loads(resources.files(__package__).joinpath("tables.json").read_text("utf-8"))
    tables: dict[str, Table] = {}
    for name, t in raw["tables"].items():
        cols = tuple(Column(c["name"], normalize_type(c["type"]), c.get("description", ""))
                     for c in t["columns"])
        tables[name] = Table(name, cols, t.get("description", ""), bool(t.get("nrt_supported")),
                             tuple(t.get("entity_columns", ())))
    return Catalog(tables)


@cache
def action_types() -> dict[str, list[str]]:
    """Documented ActionType values per table."""
    raw = json.loads(resources.files(__package__).joinpath("action_types.json").read_text("utf-8"))
    return {name: list(t.get("values", [])) for name, t in raw["tables"].items()}
