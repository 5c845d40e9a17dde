"""Coercion of incoming records to a table's Kusto schema, as Arrow.

The rules (the same on every path): missing strings become ``""``; datetimes accept ISO 8601
(with or without ``Z``/offset, up to 9 fraction digits, rounded to the microsecond like KQL
literals), the other documented Kusto forms (RFC 822/850, ``M/D/YYYY h:mm:ss``) and Unix
seconds, and become UTC; numbers in strings become ``long``/``int``/``real`` (a fraction in a
whole-number column is an error); ``true``/``"True"``/``1`` become bools; JSON text or objects
become ``dynamic``, and an object or array in a ``string`` column (``AdditionalFields``) is kept
as its JSON text, as Defender types it.

Two implementations share these rules:

* :class:`Coercer` — vectorized: SQL over Arrow in a private, locked, in-memory DuckDB
  (``json_transform`` parses JSON lines; ``TRY_CAST`` and patterns validate whole columns).
  The canonical forms (``2024-01-15T10:00:00.1234567Z``, ``-?[0-9]+``, ``true``) take a cheap
  branch that gives exactly what the full rules give; only other values reach the full rules.
  Unknown keys are found from one hash of each record's key list, each distinct list being
  looked at once. Rows it cannot accept are handed back as *suspects*;
* :func:`coerce_record` — one record in Python, used only for those suspects: it either accepts
  the row (a datetime form the vectorized pass does not know) or says exactly why not.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from huntsman.errors import IngestError
from huntsman.kql.literals import parse_datetime, parse_timespan

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "long": pa.int64(), "int": pa.int32(), "real": pa.float64(),
    "decimal": pa.float64(), "bool": pa.bool_(), "datetime": pa.timestamp("us"),
    "timespan": pa.int64(), "dynamic": pa.string(), "guid": pa.string(),
}
OVERFLOW_COLUMN = "AdditionalFields"
"""Unknown columns of a record are kept here when the table has it (else the record is rejected)."""
ALIASES = {"TimeGenerated": "Timestamp"}
"""Other spellings accepted for a column (Sentinel's ``TimeGenerated``)."""

_WHOLE = re.compile(r"^\s*[+-]?\d+(?:\.0*)?\s*$")
_NUMBER = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")
MAX_KEY_LISTS = 256
"""Distinct key lists in a chunk checked one by one; past this, every record is checked in SQL."""
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_PORTAL_FORMS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M:%S.%f %p", "%m/%d/%Y %I:%M %p",
                 "%m/%d/%Y %H:%M:%S.%f", "%b %d %Y %I:%M:%S %p", "%b %d %Y %I:%M:%S.%f %p",
                 "%b %d %Y %H:%M:%S", "%d %b %Y %H:%M:%S.%f")


# ---------------------------------------------------------------- one value, in Python

def coerce_value(value: Any, ktype: str) -> Any:
    """One value to the Python form of its Arrow column; raises ValueError when impossible."""
    if ktype == "string":
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)
    if value is None or (isinstance(value, str) and value.strip() == "" and ktype != "dynamic"):
        return None
    if ktype in ("long", "int"):
        if isinstance(value, bool):
            raise ValueError(f"{json.dumps(value)} is not a number")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not a whole number")
            value = int(value)
        elif isinstance(value, str):
            if not _WHOLE.match(value):
                raise ValueError(f"{value!r} is not a whole number")
            value = int(value.strip().split(".")[0])
        elif not isinstance(value, int):
            raise ValueError(f"{_show(value)} is not a number")
        lo, hi = _INT32 if ktype == "int" else _INT64
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of the range of {ktype}")
        return value
    if ktype in ("real", "decimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{_show(value)} is not a number")
        if isinstance(value, str) and not _NUMBER.match(value) and \
                value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity",
                                              "-infinity"):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if ktype == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(f"{_show(value)} is not a bool (true/false)")
    if ktype == "datetime":
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        if isinstance(value, bool):
            raise ValueError(f"{json.dumps(value)} is not a datetime")
        if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.match(value)):
            seconds = float(value)
            if not math.isfinite(seconds):
                raise ValueError(f"{value!r} is not a datetime")
            try:
                return datetime(1970, 1, 1) + timedelta(microseconds=round(seconds * 1e6))
            except OverflowError:
                raise ValueError(f"{value!r} is out of the datetime range") from None
        if not isinstance(value, str):
            raise ValueError(f"{_show(value)} is not a datetime")
        text = " ".join(value.replace(",", " ").split())
        if not text.upper().endswith((" AM", " PM")):
            try:
                return parse_datetime(value)
            except (ValueError, OverflowError):
                pass
        for fmt in _PORTAL_FORMS:  # as spreadsheets and portals write them, in UTC
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise ValueError(f"{value!r} is not a datetime (use ISO 8601, e.g. "
                         f"2024-01-15T10:00:00Z)")
    if ktype == "timespan":
        if isinstance(value, timedelta):
            micros = value // timedelta(microseconds=1)
        elif isinstance(value, bool):
            raise ValueError(f"{json.dumps(value)} is not a timespan")
        elif isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a timespan")
            micros = int(value)
        else:
            ticks = parse_timespan(str(value))
            if ticks is None:
                return None
            micros = ticks // 10
        if not -(2**63) <= micros < 2**63:
            raise ValueError(f"{_show(value)} is out of the timespan range")
        return micros
    if ktype == "dynamic":
        if isinstance(value, str):
            try:
                json.loads(value)
                return value
            except ValueError:
                return json.dumps(value, ensure_ascii=False)
        return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    if ktype == "guid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise ValueError(f"{_show(value)} is not a guid") from None
    raise ValueError(f"unknown type {ktype}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- one record, in Python

def split_known(rec: Mapping[str, Any], columns: Sequence[tuple[str, str]]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record's values by column (aliases resolved) and its unknown keys."""
    names = {c for c, _ in columns}
    known: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for k, v in rec.items():
        if k in names:
            known[k] = v
        elif k in ALIASES and ALIASES[k] in names:
            if known.get(ALIASES[k]) is None:
                known[ALIASES[k]] = v
        else:
            unknown[k] = v
    return known, unknown


def coerce_record(rec: Any, columns: Sequence[tuple[str, str]], table: str = "") -> \
        tuple[dict[str, Any], list[str]]:
    """One record to column values; returns it with the unknown keys it kept in the overflow.

    Raises ValueError with the reason the record cannot be stored.
    """
    if not isinstance(rec, Mapping):
        raise ValueError(f"a record must be a JSON object, not {type(rec).__name__}"
                         if not isinstance(rec, (list, str, int, float, bool)) or rec is None
                         else f"a record must be a JSON object, not {_json_kind(rec)}")
    known, unknown = split_known(rec, columns)
    types = dict(columns)
    kept: list[str] = []
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        if types.get(OVERFLOW_COLUMN) not in ("string", "dynamic"):
            raise ValueError(f"unknown column(s) {names}: {table or 'the table'} has no "
                             f"such column and no {OVERFLOW_COLUMN} to keep them in")
        known[OVERFLOW_COLUMN] = merge_overflow(known.get(OVERFLOW_COLUMN), unknown)
        kept = list(unknown)
    out: dict[str, Any] = {}
    for c, t in columns:
        try:
            out[c] = coerce_value(known.get(c), t)
        except (ValueError, TypeError, OverflowError) as e:
            raise ValueError(f"column '{c}' ({t}): {e}") from None
    return out, kept


def merge_overflow(current: Any, unknown: Mapping[str, Any]) -> str:
    """``AdditionalFields`` with the unknown keys added (the record's own fields win)."""
    base: Any = current
    if isinstance(current, str):
        try:
            base = json.loads(current) if current.strip() else {}
        except ValueError:
            base = current
    if base is None:
        base = {}
    if isinstance(base, dict):
        return json.dumps({**base, **{k: v for k, v in unknown.items() if k not in base}},
                          separators=(",", ":"), default=str, ensure_ascii=False)
    merged = {OVERFLOW_COLUMN: base, **unknown}
    return json.dumps(merged, separators=(",", ":"), default=str, ensure_ascii=False)


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a bool"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "an array"


def rows_to_arrow(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]
                  ) -> pa.Table:
    """Already coerced rows (from :func:`coerce_record`) as an Arrow table."""
    return pa.table({c: pa.array([r[c] for r in rows], ARROW_TYPES[t]) for c, t in columns})


def records_to_arrow(records: Iterable[Mapping[str, Any]], columns: list[tuple[str, str]],
                     source: str | None = None, strict_columns: bool = True) -> pa.Table:
    """Coerce dict records to an Arrow table with exactly ``columns`` (first error raises)."""
    rows = []
    for i, rec in enumerate(records, 1):
        try:
            rows.append(coerce_record(rec, columns)[0])
        except ValueError as e:
            raise IngestError(str(e), i, source) from None
    return rows_to_arrow(rows, columns)


# ---------------------------------------------------------------- vectorized, in DuckDB

@dataclass
class Coerced:
    """A vectorized pass: the rows accepted as Arrow in the schema, and the suspects.

    ``numbers`` holds the record number of each accepted row; ``suspects`` the record numbers
    and a short code (``json``, ``object``, ``unknown``, or the failing columns) of the others.
    """

    table: pa.Table
    numbers: pa.Array
    suspects: list[tuple[int, str]] = field(default_factory=list)


def json_column_rules(columns: Sequence[tuple[str, str]]
                      ) -> tuple[list[str], str, list[tuple[str, str, str, str | None]]]:
    """What coercing JSON records in SQL needs: the keys read (columns and their aliases),
    the ``json_transform`` structure reading each as text, and per column its source
    expression (``s.<key>``, an alias as fallback), coerced value and rule kind."""
    names = [c for c, _ in columns]
    aliases = [a for a, target in ALIASES.items() if target in names]
    fields = names + aliases
    struct = _sql_str(json.dumps({c: "VARCHAR" for c in fields}))
    raws: list[tuple[str, str, str, str | None]] = []
    for c, t in columns:
        x = f"s.{_qi(c)}"
        for alias in aliases:
            if ALIASES[alias] == c:
                x = f"coalesce({x}, s.{_qi(alias)})"
        v, kind = _text_rules(x, t)
        raws.append((c, x, v, kind))
    return fields, struct, raws


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_ISO_PLAIN = r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?Z?\s*"


def _us_rounded(ns: str) -> str:
    """SQL: epoch nanoseconds → TIMESTAMP, rounded to the microsecond half-to-even.

    A lambda over a one-element list evaluates ``ns`` (a cast) once instead of four times.
    The remainder is taken non-negative (SQL's ``%`` and ``//`` truncate toward zero), so that
    times before 1970 round the same way.
    """
    r = "((n % 1000) + 1000) % 1000"
    q = f"((n - {r}) // 1000)"
    return (f"list_transform([{ns}], lambda n: make_timestamp({q} + CASE WHEN "
            f"{r} > 500 OR ({r} = 500 AND {q} % 2 <> 0) THEN 1 ELSE 0 END))[1]")


def _text_rules(x: str, ktype: str) -> tuple[str, str | None]:
    """SQL coercing the VARCHAR expression ``x`` to ``ktype``: (value, error kind).

    The error kind ``text`` means: a non-blank ``x`` whose value came out NULL is bad.
    """
    if ktype == "string":
        return f"coalesce({x}, '')", None
    if ktype == "dynamic":
        return (f"CASE WHEN {x} IS NULL THEN NULL WHEN json_valid({x}) THEN {x} "
                f"ELSE CAST(to_json({x}) AS VARCHAR) END"), None
    if ktype in ("long", "int", "timespan"):
        sql_t = "INTEGER" if ktype == "int" else "BIGINT"
        frac = "" if ktype == "timespan" else "(\\.0*)?"
        v = (f"CASE WHEN regexp_full_match({x}, '\\s*[+-]?[0-9]+{frac}\\s*') "
             f"THEN TRY_CAST(trim({x}) AS {sql_t}) END")
    elif ktype in ("real", "decimal"):
        v = (f"CASE WHEN lower(trim({x})) IN ('nan', 'inf', '+inf', '-inf', 'infinity', "
             f"'-infinity') OR regexp_full_match({x}, {_sql_str(_NUMBER.pattern[1:-1])}) "
             f"THEN TRY_CAST(trim({x}) AS DOUBLE) END")
    elif ktype == "bool":
        v = (f"CASE lower(trim({x})) WHEN 'true' THEN true WHEN '1' THEN true "
             f"WHEN 'false' THEN false WHEN '0' THEN false END")
    elif ktype == "datetime":
        # ISO 8601 in UTC (the common case) exactly to the nanosecond, then rounded to the
        # microsecond half-to-even as KQL literals are; with an offset through the engine's
        # zone-aware parser; Unix seconds; other forms are left to Python
        ns = f"epoch_ns(TRY_CAST(rtrim(trim({x}), 'Z') AS TIMESTAMP_NS))"
        tz = f"TRY_CAST(trim({x}) AS TIMESTAMPTZ)"
        tz_ns = (f"(epoch_us({tz}) * 1000 + "
                 f"coalesce((epoch_ns(TRY_CAST(trim({x}) AS TIMESTAMP_NS)) % 1000 + 1000) % 1000, 0))")
        v = (f"CASE WHEN regexp_full_match({x}, {_sql_str(_ISO_PLAIN)}) "
             f"THEN {_us_rounded(ns)} "
             f"WHEN regexp_full_match({x}, {_sql_str(_NUMBER.pattern[1:-1])}) "
             f"THEN make_timestamp(CAST(round(TRY_CAST(trim({x}) AS DOUBLE) * 1000000) AS BIGINT))"
             f" WHEN regexp_full_match({x}, '\\s*[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9:.]+"
             f"\\s*[+-][0-9]{{2}}:?[0-9]{{2}}\\s*') AND isfinite({tz}) "
             f"AND abs(epoch_us({tz})) < 9223372036854775 THEN {_us_rounded(tz_ns)} "
             f"END")
    elif ktype == "guid":
        v = f"CAST(TRY_CAST(trim({x}) AS UUID) AS VARCHAR)"
    else:  # pragma: no cover - the catalog only has the types above
        raise ValueError(f"unknown type {ktype}")
    exact = f"CASE WHEN {x} IS NULL OR trim({x}) = '' THEN NULL ELSE {v} END"
    fast = _fast_text_rule(x, ktype)
    if fast is None:
        return exact, "text"
    guard, value = fast
    # DuckDB evaluates a CASE branch only on the rows that reach it: the exact rules above
    # run only on the values the guard does not recognise
    return f"CASE WHEN {guard} THEN {value} ELSE {exact} END", "text"


_FAST_ISO = (r"(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
             r"(\.[0-9]{1,7})?Z")
"""ISO 8601 in UTC as Defender writes it (``2024-01-15T10:00:00.1234567Z``), after 1970."""


def _fast_text_rule(x: str, ktype: str) -> tuple[str, str] | None:
    """SQL (guard, value) for the canonical text of ``ktype``, giving exactly the value the
    exact rules give for it, but much cheaper; None when the type has no such shortcut."""
    if ktype == "long":
        return f"regexp_full_match({x}, '-?[0-9]{{1,18}}')", f"CAST({x} AS BIGINT)"
    if ktype == "int":
        return f"regexp_full_match({x}, '-?[0-9]{{1,9}}')", f"CAST({x} AS INTEGER)"
    if ktype == "bool":
        return f"{x} IN ('true', 'false')", f"{x} = 'true'"
    if ktype == "datetime":
        # the cast truncates to the microsecond; a 7th fraction digit rounds half-to-even
        # (as the exact rules do: nanoseconds % 1000 is that digit times 100)
        up = (f"CASE WHEN length({x}) = 28 AND (({x})[27] > '5' OR (({x})[27] = '5' AND "
              f"({x})[26] IN ('1', '3', '5', '7', '9'))) THEN 1 ELSE 0 END")
        return (f"regexp_full_match({x}, {_sql_str(_FAST_ISO)})",
                f"TRY_CAST({x} AS TIMESTAMP) + to_microseconds({up})")
    return None


def _typed_rules(x: str, src: pa.DataType, ktype: str) -> tuple[str, str | None]:
    """SQL for a typed Arrow column ``x`` (Parquet, Arrow) to ``ktype``: (value, error kind).

    The error kind ``typed`` means: a non-null ``x`` whose value came out NULL is bad.
    """
    if pa.types.is_string(src) or pa.types.is_large_string(src) or pa.types.is_string_view(src):
        return _text_rules(x, ktype)
    nested = pa.types.is_struct(src) or pa.types.is_list(src) or pa.types.is_large_list(src) \
        or pa.types.is_map(src)
    if ktype == "string":
        if nested:
            return f"coalesce(CAST(to_json({x}) AS VARCHAR), '')", None
        if pa.types.is_boolean(src):
            return f"coalesce(CASE WHEN {x} THEN 'true' ELSE 'false' END, '')", None
        return f"coalesce(CAST({x} AS VARCHAR), '')", None
    if ktype == "dynamic":
        return f"CAST(to_json({x}) AS VARCHAR)", None
    if ktype == "datetime" and (pa.types.is_timestamp(src) or pa.types.is_date(src)):
        return f"CAST({x} AS TIMESTAMP)", "typed"
    if ktype == "timespan" and pa.types.is_duration(src):
        return f"epoch_us({x})", "typed"
    numeric = pa.types.is_integer(src) or pa.types.is_floating(src) or pa.types.is_decimal(src)
    if numeric and ktype in ("long", "int", "real", "decimal", "timespan"):
        sql_t = {"long": "BIGINT", "int": "INTEGER", "timespan": "BIGINT"}.get(ktype, "DOUBLE")
        v = f"TRY_CAST({x} AS {sql_t})"
        if sql_t != "DOUBLE" and not pa.types.is_integer(src):
            v = f"CASE WHEN {x} = trunc({x}) THEN {v} END"
        return v, "typed"
    if ktype == "bool" and pa.types.is_boolean(src):
        return x, None
    # anything else: through its text form, by the text rules (a value is never blank: its
    # error kind is the typed one)
    v, kind = _text_rules(f"CAST({x} AS VARCHAR)", ktype)
    return v, "typed" if kind else None


SCANNED_TYPES: dict[str, pa.DataType | None] = {
    "VARCHAR": pa.string(), "BIGINT": pa.int64(), "UBIGINT": pa.uint64(),
    "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "JSON": None, "NULL": None,
}
"""The types DuckDB's JSON reader gives top-level values (nested ones read as ``JSON``), as
the Arrow types whose rules apply; ``None``: read as the value's JSON text."""


def scanned_rules(columns: Sequence[tuple[str, str]], scanned: Mapping[str, str], alias: str = "s"
                  ) -> list[tuple[str, str, str, str | None]] | None:
    """Per column (raw, value, error kind) SQL coercing the columns of a JSON reader's scan
    (``alias``, its columns ``scanned``: name → DuckDB type) to ``columns`` by the same rules
    as :func:`json_column_rules`; None when a scanned key is no column, or of a type not
    listed in :data:`SCANNED_TYPES` (those records need the exact rules)."""
    types = dict(columns)
    if any(k not in types and ALIASES.get(k) not in types for k in scanned):
        return None
    # a key read as UUID (every sampled value parsed as one) keeps its text only as the
    # canonical form a guid column stores; other types (objects, times) keep it in no column
    if any(t not in SCANNED_TYPES and not (t == "UUID" and types.get(k) == "guid")
           for k, t in scanned.items()):
        return None

    def text(key: str) -> str:
        x = f"{alias}.{_qi(key)}"
        t = scanned[key]
        if t == "VARCHAR":
            return x
        return f"json_extract_string({x}, '$')" if SCANNED_TYPES[t] is None \
            else f"CAST({x} AS VARCHAR)"

    raws: list[tuple[str, str, str, str | None]] = []
    for c, t in columns:
        keys = [k for k in [c, *(a for a, target in ALIASES.items() if target == c)]
                if k in scanned]
        if not keys:
            raws.append((c, "NULL", _sql_str("") if t == "string" else "NULL", None))
            continue
        if len(keys) == 1 and scanned[keys[0]] == "UUID":
            raws.append((c, f"{alias}.{_qi(keys[0])}",
                         f"CAST({alias}.{_qi(keys[0])} AS VARCHAR)", None))
            continue
        src = SCANNED_TYPES.get(scanned[keys[0]])
        if len(keys) == 1 and src is not None:
            x = f"{alias}.{_qi(keys[0])}"
            v, kind = _typed_rules(x, src, t)
        elif any(scanned[k] == "UUID" for k in keys):
            return None
        else:  # read as text (JSON values, or a column and its alias, the first one given)
            x = f"coalesce({', '.join(text(k) for k in keys)})"
            v, kind = _text_rules(x, t)
        raws.append((c, x, v, kind))
    return raws


def _two_level(source: str, raws: Sequence[tuple[str, str, str, str | None]],
               pre_error: str | None = None, carry: Mapping[str, str] | None = None) -> str:
    """SELECT values and a per-row ``__err`` (the failing columns), computing each value once.

    ``raws`` are (column, raw expression, value expression, error kind); ``source`` yields
    ``__n`` and whatever the raw expressions read; ``carry`` adds columns (name: expression).
    """
    inner, outer, errs, nulls = [], [], [], []
    for i, (col, raw, value, kind) in enumerate(raws):
        inner.append(f"{value} AS __v{i}")
        outer.append(f"__v{i} AS {_qi(col)}")
        if kind is not None:
            inner.append(f"{raw} AS __r{i}")
            present = (f"__r{i} IS NOT NULL AND trim(__r{i}) <> ''" if kind == "text"
                       else f"__r{i} IS NOT NULL")
            errs.append(f"CASE WHEN __v{i} IS NULL AND {present} THEN {_sql_str(col)} END")
            nulls.append(f"__v{i} IS NULL")
    # only a row with a NULL value can have failed: the others skip building the message
    err = (f"CASE WHEN {' OR '.join(nulls)} THEN nullif(concat_ws(',', {', '.join(errs)}), '') "
           f"END" if errs else "NULL::VARCHAR")
    if pre_error:
        inner.append(f"{pre_error} AS __pre")
        err = f"coalesce(__pre, {err})"
    for name, expr in (carry or {}).items():
        inner.append(f"{expr} AS {name}")
        outer.append(name)
    return (f"SELECT __n, {', '.join(outer)}, {err} AS __err FROM "
            f"(SELECT __n, {', '.join(inner)} FROM {source})")


def rebatch(tbl: pa.Table, parts: int = 16, min_rows: int = 2048) -> pa.Table:
    """The table in several record batches: DuckDB scans Arrow in parallel by batch."""
    size = max(min_rows, -(-tbl.num_rows // parts))
    if tbl.num_rows <= size or all(len(c) <= size for c in tbl.column(0).chunks):
        return tbl
    return pa.Table.from_batches(tbl.to_batches(max_chunksize=size), schema=tbl.schema)


class Coercer:
    """The vectorized coercion engine: a private in-memory DuckDB that can read nothing else.

    It never holds telemetry: each call registers its Arrow input, runs one query and drops it.
    """

    def __init__(self, threads: int | None = None):
        config: dict[str, object] = {
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,
            "preserve_insertion_order": True,
        }
        if threads:
            config["threads"] = threads
        self.con = duckdb.connect(":memory:", config=config)  # type: ignore[arg-type]
        self.con.execute("SET GLOBAL TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET lock_configuration = true")
        self._lock = threading.Lock()

    def _run(self, inputs: Mapping[str, pa.Table], sql: str) -> pa.Table:
        with self._lock:
            cur = self.con.cursor()
        try:
            for name, tbl in inputs.items():
                cur.register(name, rebatch(tbl))
            return cur.sql(sql).to_arrow_table()
        finally:
            cur.close()

    # -------------------------------------------------------------- JSON lines

    def json_lines(self, lines: pa.Array, numbers: pa.Array,
                   columns: Sequence[tuple[str, str]]) -> Coerced:
        """Coerce JSON text records (one object per element) to ``columns``.

        ``numbers`` gives each element's record (line) number. Blank elements are skipped.
        """
        fields, struct, raws = json_column_rules(columns)
        known = "[" + ", ".join(_sql_str(k) for k in fields) + "]"
        is_object = "(starts_with(line, '{') OR starts_with(ltrim(line), '{'))"
        pre = f"CASE WHEN s IS NULL THEN 'json' WHEN NOT {is_object} THEN 'object' END"
        # unknown keys: one hash of each record's key list here, each distinct list looked
        # at once afterwards (a file's records mostly share one or a few)
        keys = f"CASE WHEN s IS NOT NULL AND {is_object} THEN hash(json_keys(line)) END"
        source = (f"(SELECT __n, line, try(json_transform(line, {struct})) AS s FROM __raw "
                  f"WHERE starts_with(line, '{{') OR NOT regexp_full_match(line, '\\s*'))")
        sql = _two_level(source, raws, pre, {"__keys": keys})
        raw = pa.table({"line": lines, "__n": numbers})
        out = self._run({"__raw": raw}, sql)
        unknown = self._unknown_keys(out, raw, set(fields), known)
        if unknown is not None:
            err = out.column("__err")
            out = out.set_column(out.schema.get_field_index("__err"), "__err",
                                 pc.if_else(pc.and_(unknown, pc.is_null(err)), "unknown", err))
        return self._split(out.drop_columns(["__keys"]), columns)

    def _unknown_keys(self, out: pa.Table, raw: pa.Table, known: set[str], known_sql: str
                      ) -> pa.ChunkedArray | pa.Array | None:
        """Which rows of ``out`` have a key that is no column (None: no row has one)."""
        hashes = out.column("__keys")
        distinct = pc.unique(hashes).drop_null()
        if len(distinct) > MAX_KEY_LISTS:
            # many shapes of record: the exact check in SQL, on every record
            bad = self._run({"__raw": raw}, f"""
                SELECT __n FROM __raw WHERE json_valid(line) AND json_type(line) = 'OBJECT'
                AND len(list_filter(json_keys(line),
                                    lambda k: NOT list_contains({known_sql}, k))) > 0""")
            if bad.num_rows == 0:
                return None
            return pc.is_in(out.column("__n"), value_set=bad.column("__n").combine_chunks())
        numbers = raw.column("__n").to_numpy()
        lines = raw.column("line")
        unknown = []
        for h in distinct:
            n = out.column("__n")[pc.index(hashes, h).as_py()].as_py()
            rec = json.loads(lines[int(np.searchsorted(numbers, n))].as_py())
            if not known.issuperset(rec):
                unknown.append(h)
        if not unknown:
            return None
        return pc.fill_null(pc.is_in(hashes, value_set=pa.array(unknown, hashes.type)), False)

    def explode_export(self, envelopes: pa.Array, numbers: pa.Array) -> pa.Table:
        """Defender streaming-export envelopes → one row per record.

        Columns: ``__n`` (the envelope's line), ``__item`` (1-based position in ``records``;
        0 for a bare record), ``category`` and ``properties`` (JSON text), and ``__err``
        (``json`` for text that is not JSON, ``envelope`` for JSON that is not an export).
        """
        # one parse of each envelope: its records' category, and properties as JSON text
        rec = '{"category": "VARCHAR", "properties": "JSON"}'
        shape = _sql_str('{"records": [' + rec + '], ' + rec[1:])
        sql = f"""
            SELECT __n, CASE WHEN is_list THEN i ELSE 0 END AS __item,
                   rec.category AS category, CAST(rec.properties AS VARCHAR) AS properties,
                   CASE WHEN pre IS NOT NULL THEN pre
                        WHEN rec IS NULL OR rec.properties IS NULL
                             OR NOT starts_with(CAST(rec.properties AS VARCHAR), '{{')
                        THEN 'envelope' END AS __err
            FROM (
                SELECT __n, pre, is_list, unnest(recs) AS rec,
                       unnest(range(1, len(recs) + 1)) AS i
                FROM (
                    SELECT __n, env.records IS NOT NULL AS is_list,
                           CASE WHEN env IS NULL THEN CASE WHEN json_valid(line)
                                THEN 'envelope' ELSE 'json' END END AS pre,
                           CASE WHEN env IS NULL THEN [NULL]
                                WHEN env.records IS NOT NULL THEN env.records
                                ELSE [{{'category': env.category,
                                        'properties': env.properties}}] END AS recs
                    FROM (
                        SELECT __n, line, try(json_transform(line, {shape})) AS env
                        FROM __raw
                        WHERE starts_with(line, '{{') OR NOT regexp_full_match(line, '\\s*'))))"""
        out = self._run({"__raw": pa.table({"line": envelopes, "__n": numbers})}, sql)
        order = np.lexsort((out.column("__item").to_numpy(), out.column("__n").to_numpy()))
        if out.num_rows and not np.array_equal(order, np.arange(out.num_rows)):
            out = out.take(pa.array(order))
        return out

    # -------------------------------------------------------------- Arrow / CSV

    def arrow(self, data: pa.Table, numbers: pa.Array, columns: Sequence[tuple[str, str]]
              ) -> Coerced:
        """Coerce an Arrow table whose columns are named like the schema's (any types).

        Unknown columns must have been dealt with by the caller.
        """
        present = set(data.column_names)
        raws: list[tuple[str, str, str, str | None]] = []
        for c, t in columns:
            src = c if c in present else next(
                (a for a, target in ALIASES.items() if target == c and a in present), None)
            if src is None:
                raws.append((c, "NULL", _sql_str("") if t == "string" else "NULL", None))
                continue
            x = f"r.{_qi(src)}"
            v, kind = _typed_rules(x, data.schema.field(src).type, t)
            raws.append((c, x, v, kind))
        sql = _two_level("__raw AS r", raws)
        raw = data.append_column("__n", numbers)
        out = self._run({"__raw": raw}, sql)
        return self._split(out, columns)

    @staticmethod
    def _split(out: pa.Table, columns: Sequence[tuple[str, str]]) -> Coerced:
        err = out.column("__err")
        numbers = out.column("__n")
        if err.null_count == len(err):
            good = out
            suspects: list[tuple[int, str]] = []
        else:
            ok = pc.is_null(err)
            good = out.filter(ok)
            bad = out.filter(pc.invert(ok)).select(["__n", "__err"])
            suspects = list(zip(bad.column(0).to_pylist(), bad.column(1).to_pylist(),
                                strict=True))
        numbers = good.column("__n")
        table = good.select([c for c, _ in columns])
        table = table.cast(pa.schema([(c, ARROW_TYPES[t]) for c, t in columns]))
        return Coerced(table, numbers.combine_chunks(), suspects)


_COERCER: Coercer | None = None
_COERCER_LOCK = threading.Lock()


def coercer() -> Coercer:
    """The process-wide coercion engine (created on first use)."""
    global _COERCER
    with _COERCER_LOCK:
        if _COERCER is None:
            _COERCER = Coercer()
        return _COERCER


def arrow_to_schema(table: pa.Table, columns: list[tuple[str, str]],
                    source: str | None = None) -> pa.Table:
    """Conform an Arrow table (from Parquet, CSV or the caller) to ``columns``; errors raise."""
    names = {c for c, _ in columns}
    unknown = [c for c in table.column_names if c not in names
               and not (c in ALIASES and ALIASES[c] in names)]
    if unknown:
        raise IngestError(f"unknown column(s) {', '.join(map(repr, unknown))}", None, source)
    numbers = pa.array(range(1, table.num_rows + 1), pa.int64())
    res = coercer().arrow(table, numbers, columns)
    if res.suspects:
        n, cols = res.suspects[0]
        row = table.slice(n - 1, 1).to_pylist()[0]
        try:
            coerce_record(row, columns)
        except ValueError as e:
            raise IngestError(str(e), n, source) from None
        raise IngestError(f"column(s) {cols} could not be converted", n, source)
    return res.table
