"""The OData ``$filter`` subset Defender's list APIs take: ``field op value`` joined by ``and``.

Operators ``eq``, ``ne``, ``gt``, ``ge``, ``lt``, ``le``; values are ``'strings'`` (``''``
escapes a quote), numbers, ``null``, ``true``/``false`` or ISO 8601 datetimes
(``2026-11-01T00:00:00Z``). Field names are case-insensitive.

>>> from sqlalchemy import column
>>> cond = parse_filter("status eq 'New' and severity ne 'Low'",
...                     {"status": column("status"), "severity": column("severity")})
>>> str(cond)
'status = :status_1 AND severity != :severity_1'
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_

from huntsman.errors import HuntsmanError

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)|"
                    r"(?P<dt>\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)|"
                    r"(?P<num>-?\d+(?:\.\d+)?)|(?P<bad>\S))")
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
    "lt": operator.lt, "le": operator.le}


class FilterError(HuntsmanError):
    """A ``$filter`` this API cannot apply; the message says which part."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup or "bad"
        value = m.group(kind)
        if kind == "bad":
            raise FilterError(f"$filter: unexpected {value!r} at position {m.start(kind) + 1}")
        out.append((kind, value))
    return out


def _value(kind: str, text: str) -> Any:
    if kind == "str":
        return text[1:-1].replace("''", "'")
    if kind == "num":
        return float(text) if "." in text else int(text)
    if kind == "dt":
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FilterError(f"$filter: invalid datetime {text!r}") from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    lowered = text.lower()
    if lowered in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[lowered]
    raise FilterError(f"$filter: expected a value ('text', a number, a datetime or null), "
                      f"not {text!r}")


def parse_filter(text: str | None, fields: Mapping[str, Any]) -> Any:
    """A SQLAlchemy condition for ``text`` over ``fields`` (name → column); None if empty."""
    if text is None or not text.strip():
        return None
    by_lower = {k.lower(): v for k, v in fields.items()}
    toks = _tokens(text)
    conds = []
    i = 0
    while True:
        if i + 3 > len(toks):
            raise FilterError("$filter: expected 'field op value' (e.g. status eq 'New')")
        (fk, field), (ok, op), (vk, value) = toks[i:i + 3]
        if fk != "word" or field.lower() not in by_lower:
            raise FilterError(f"$filter: unknown field {field!r}; filterable fields are "
                              f"{', '.join(fields)}")
        if ok != "word" or op.lower() not in _OPS:
            raise FilterError(f"$filter: unknown operator {op!r}; use eq, ne, gt, ge, lt or le")
        column = by_lower[field.lower()]
        v = _value(vk, value)
        if v is None:
            if op.lower() not in ("eq", "ne"):
                raise FilterError("$filter: null can only be compared with eq or ne")
            conds.append(column.is_(None) if op.lower() == "eq" else column.isnot(None))
        else:
            conds.append(_OPS[op.lower()](column, v))
        i += 3
        if i == len(toks):
            break
        if toks[i][0] != "word" or toks[i][1].lower() != "and":
            raise FilterError(f"$filter: expected 'and' between conditions, not "
                              f"{toks[i][1]!r} (or, not and parentheses are not supported)")
        i += 1
    return and_(*conds) if len(conds) > 1 else conds[0]
