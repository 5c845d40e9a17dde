"""Reader of ``*.kqltest`` golden cases and the comparison of results with them.

The format is described in ``tests/conformance/README.md``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from huntsman.kql.literals import parse_datetime, parse_timespan

CASES = Path(__file__).parent / "cases"
FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Case:
    name: str
    kind: str  # query | error
    query: str
    file: Path
    line: int
    ordered: bool = False
    header: list[tuple[str, str]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    error: str = ""
    error_text: str = ""
    notimpl: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file.parent.name}/{self.file.stem}::{self.name}"


class FormatError(Exception):
    pass


def read_cases(path: Path) -> list[Case]:
    lines = path.read_text("utf-8").split("\n")
    cases: list[Case] = []
    i = 0
    notimpl: dict[str, str] = {}
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        m = re.match(r"notimpl\s+(\w+)\s*:\s*(.*)$", stripped)
        if m:
            notimpl[m.group(1)] = m.group(2)
            i += 1
            continue
        m = re.match(r"(query|error)\s+(\S+)(\s+ordered)?\s*$", stripped)
        if not m:
            raise FormatError(f"{path}:{i + 1}: expected 'query NAME' or 'error NAME', "
                              f"got {line!r}")
        case = Case(m.group(2), m.group(1), "", path, i + 1, ordered=bool(m.group(3)),
                    notimpl=notimpl)
        notimpl = {}
        i += 1
        q: list[str] = []
        while i < len(lines) and lines[i].strip() != "----":
            q.append(lines[i])
            i += 1
        if i >= len(lines):
            raise FormatError(f"{path}:{case.line}: case '{case.name}' has no '----'")
        case.query = "\n".join(q).strip()
        i += 1
        if case.kind == "error":
            spec = lines[i].strip() if i < len(lines) else ""
            cls, _, text = spec.partition(":")
            case.error = cls.strip()
            case.error_text = text.strip()
            i += 1
        else:
            header = lines[i] if i < len(lines) else ""
            case.header = [parse_header_field(f) for f in header.split(" | ")]
            i += 1
            while i < len(lines) and lines[i].strip() != "":
                case.rows.append(split_row(lines[i], len(case.header)))
                i += 1
        cases.append(case)
    return cases


def parse_header_field(f: str) -> tuple[str, str]:
    name, _, t = f.strip().rpartition(":")
    return name, t.strip()


def split_row(line: str, ncols: int) -> list[str]:
    """Split on ' | ' outside double-quoted JSON text."""
    if ncols == 1:
        return [line.strip()]
    parts: list[str] = []
    buf: list[str] = []
    in_str = False
    i = 0
    while i < len(line):
        ch = line[i]
        if in_str and ch == "\\":
            buf.append(line[i:i + 2])
            i += 2
            continue
        if ch == '"':
            in_str = not in_str
        elif not in_str and line.startswith(" | ", i):
            parts.append("".join(buf))
            buf = []
            i += 3
            continue
        buf.append(ch)
        i += 1
    parts.append("".join(buf))
    if len(parts) != ncols:
        # a raw string with a lone quote: fall back to a plain split
        parts = line.split(" | ")
    return [p.strip() for p in parts]


def all_cases() -> list[Case]:
    out: list[Case] = []
    for path in sorted(CASES.rglob("*.kqltest")):
        out.extend(read_cases(path))
    return out


# ---------------------------------------------------------------- values

MISSING = object()


def parse_expected(text: str, ktype: str) -> Any:
    if text == "null":
        return None
    if ktype == "string":
        if text.startswith('"'):
            return json.loads(text)
        return text
    if ktype in ("long", "int"):
        return int(text)
    if ktype in ("real", "decimal"):
        return float(text)
    if ktype == "bool":
        if text not in ("true", "false"):
            raise FormatError(f"bad bool {text!r}")
        return text == "true"
    if ktype == "datetime":
        dt = parse_datetime(text)
        return dt.replace(tzinfo=UTC) if dt else None
    if ktype == "timespan":
        ticks = parse_timespan(text)
        return None if ticks is None else timedelta(microseconds=round(ticks / 10))
    if ktype == "dynamic":
        return json.loads(text)
    if ktype == "guid":
        return text.lower()
    raise FormatError(f"unknown type {ktype!r}")


def values_equal(actual: Any, expected: Any, ktype: str) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if ktype in ("real", "decimal"):
        a, e = float(actual), float(expected)
        if math.isnan(e):
            return math.isnan(a)
        if math.isinf(e):
            return a == e
        return math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-9)
    if ktype == "datetime":
        return isinstance(actual, datetime) and abs(actual - expected) < timedelta(microseconds=1)
    if ktype == "dynamic":
        return dynamic_equal(actual, expected)
    if ktype == "guid":
        return str(actual).lower() == expected
    return bool(actual == expected) and type(actual) is not bool or actual is expected


def dynamic_equal(a: Any, e: Any) -> bool:
    if isinstance(e, float) or isinstance(a, float):
        if isinstance(a, bool) or isinstance(e, bool):
            return a is e
        try:
            return math.isclose(float(a), float(e), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(e, dict):
        return isinstance(a, dict) and a.keys() == e.keys() and all(
            dynamic_equal(a[k], e[k]) for k in e)
    if isinstance(e, list):
        return isinstance(a, list) and len(a) == len(e) and all(
            dynamic_equal(x, y) for x, y in zip(a, e, strict=True))
    return type(a) is type(e) and a == e


def render(value: Any, ktype: str) -> str:
    if value is None:
        return "null"
    if ktype == "string":
        s = str(value)
        if (s == "" or s.startswith('"') or s != s.strip() or " | " in s or "\n" in s
                or s == "null"):
            return json.dumps(s)
        return s
    if ktype == "bool":
        return "true" if value else "false"
    if ktype == "datetime":
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")
    if ktype == "timespan":
        from huntsman.kql.literals import format_timespan
        return format_timespan(int(value / timedelta(microseconds=1)) * 10)
    if ktype == "dynamic":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def rows_match(actual: list[tuple[Any, ...]], expected: list[list[Any]],
               types: list[str], ordered: bool) -> bool:
    if len(actual) != len(expected):
        return False
    if ordered:
        return all(row_equal(a, e, types) for a, e in zip(actual, expected, strict=True))
    remaining = list(actual)
    for e in expected:
        for i, a in enumerate(remaining):
            if row_equal(a, e, types):
                del remaining[i]
                break
        else:
            return False
    return True


def row_equal(a: tuple[Any, ...], e: list[Any], types: list[str]) -> bool:
    return len(a) == len(e) and all(values_equal(x, y, t) for x, y, t in zip(a, e, types,
                                                                               strict=True))
