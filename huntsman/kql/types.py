"""Kusto scalar types: how each is stored in SQL, and which implicit conversions exist.

Storage (DuckDB, the reference backend):

| Kusto | SQL | note |
|---|---|---|
| string | VARCHAR | never null: a missing string is '' |
| long / int | BIGINT / INTEGER | |
| real / decimal | DOUBLE / DECIMAL(38,10) | |
| bool | BOOLEAN | |
| datetime | TIMESTAMP | UTC, microseconds (Kusto has 100 ns ticks) |
| timespan | BIGINT | microseconds, so that arithmetic and bin() are integer operations |
| dynamic | JSON | |
| guid | UUID | |
"""

from __future__ import annotations

SQL_TYPES = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "int": "INTEGER",
    "real": "DOUBLE",
    "decimal": "DECIMAL(38, 10)",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMP",
    "timespan": "BIGINT",
    "dynamic": "JSON",
    "guid": "UUID",
}

NUMERIC = {"int", "long", "real", "decimal"}
INTEGRAL = {"int", "long"}

# .NET type names that getschema reports in DataType
DOTNET_TYPES = {
    "string": "System.String", "long": "System.Int64", "int": "System.Int32",
    "real": "System.Double", "decimal": "System.Data.SqlTypes.SqlDecimal",
    "bool": "System.SByte", "datetime": "System.DateTime", "timespan": "System.TimeSpan",
    "dynamic": "System.Object", "guid": "System.Guid",
}


def numeric_result(a: str, b: str) -> str:
    """The type of ``a op b`` for numeric operands: the wider one (int < long < decimal < real)."""
    order = ["int", "long", "decimal", "real"]
    return order[max(order.index(a), order.index(b))]
