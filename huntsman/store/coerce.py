"""Coercion of incoming records to a table's Kusto schema, as Arrow.

Missing strings become ``""``; datetimes accept ISO 8601 (with or without ``Z``/offset) and
become UTC; numbers in strings become numbers; ``true``/``"True"`` become bools; JSON text or
objects become dynamic. A value that cannot be coerced raises :class:`IngestError` naming the
record and the column.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from huntsman.errors import IngestError
from huntsman.kql.literals import parse_datetime, parse_timespan

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "long": pa.int64(), "int": pa.int32(), "real": pa.float64(),
    "decimal": pa.float64(), "bool": pa.bool_(), "datetime": pa.timestamp("us"),
    "timespan": pa.int64(), "dynamic": pa.string(), "guid": pa.string(),
}


def coerce_value(value: Any, ktype: str) -> Any:
    """One value to the Python form of its Arrow column; raises ValueError when impossible."""
    if ktype == "string":
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"))
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if value is None or (isinstance(value, str) and value == "" and ktype != "dynamic"):
        return None
    if ktype in ("long", "int"):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not a whole number")
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        return int(value)
    if ktype in ("real", "decimal"):
        return float(value)
    if ktype == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return bool(value)
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(f"{value!r} is not a bool")
    if ktype == "datetime":
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        if isinstance(value, (int, float)):
            return datetime(1970, 1, 1) + timedelta(seconds=value)
        dt = parse_datetime(str(value))
        if dt is None:
            return None
        return dt
    if ktype == "timespan":
        if isinstance(value, timedelta):
            return value // timedelta(microseconds=1)
        if isinstance(value, (int, float)):
            return int(value)
        ticks = parse_timespan(str(value))
        return None if ticks is None else ticks // 10
    if ktype == "dynamic":
        if isinstance(value, str):
            try:
                json.loads(value)
                return value
            except ValueError:
                return json.dumps(value)
        return json.dumps(value, separators=(",", ":"), default=str)
    if ktype == "guid":
        return str(uuid.UUID(str(value)))
    raise ValueError(f"unknown type {ktype}")


def records_to_arrow(records: Iterable[Mapping[str, Any]], columns: list[tuple[str, str]],
                     source: str | None = None, strict_columns: bool = True) -> pa.Table:
    """Coerce dict records to an Arrow table with exactly ``columns``."""
    names = [c for c, _ in columns]
    known = set(names) | ({"TimeGenerated"} if "Timestamp" in names else set())
    data: dict[str, list[Any]] = {c: [] for c in names}
    for i, rec in enumerate(records, 1):
        if strict_columns:
            unknown = [k for k in rec if k not in known]
            if unknown:
                raise IngestError(f"unknown column(s) {', '.join(map(repr, unknown))}",
                                  i, source)
        for c, t in columns:
            v = rec.get(c)
            if v is None and c == "Timestamp" and "TimeGenerated" in rec:
                v = rec["TimeGenerated"]
            try:
                data[c].append(coerce_value(v, t))
            except (ValueError, TypeError, OverflowError) as e:
                raise IngestError(f"column '{c}' ({t}): {e}", i, source) from None
    return pa.table({c: pa.array(data[c], ARROW_TYPES[t]) for c, t in columns})


def arrow_to_schema(table: pa.Table, columns: list[tuple[str, str]],
                    source: str | None = None) -> pa.Table:
    """Conform an Arrow table (from Parquet, CSV or the caller) to ``columns``."""
    present = set(table.column_names)
    unknown = [c for c in table.column_names if c not in {n for n, _ in columns}
               and c != "TimeGenerated"]
    if unknown:
        raise IngestError(f"unknown column(s) {', '.join(map(repr, unknown))}", None, source)
    arrays = []
    for c, t in columns:
        src = c if c in present else ("TimeGenerated" if c == "Timestamp" and
                                      "TimeGenerated" in present else None)
        if src is None:
            if t == "string":
                arrays.append(pa.array([""] * table.num_rows, pa.string()))
            else:
                arrays.append(pa.nulls(table.num_rows, ARROW_TYPES[t]))
            continue
        arr = table.column(src)
        target = ARROW_TYPES[t]
        if arr.type == target and t != "string":
            arrays.append(arr)
            continue
        if t == "datetime" and pa.types.is_timestamp(arr.type):
            arrays.append(arr.cast(pa.timestamp("us", tz=arr.type.tz)).cast(pa.timestamp("us"))
                          if arr.type.tz else arr.cast(target))
            continue
        if t == "string" and pa.types.is_string(arr.type):
            arrays.append(arr.fill_null(""))
            continue
        values = [coerce_value(v, t) for v in arr.to_pylist()]
        try:
            arrays.append(pa.array(values, target))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise IngestError(f"column '{c}' ({t}): {e}", None, source) from None
    return pa.table(arrays, names=[c for c, _ in columns])
