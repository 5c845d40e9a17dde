"""From a rule's result rows to alerts: event keys (dedup), entities, grouping, titles.

* An event's key is ``ReportId`` + ``Timestamp`` + ``DeviceId`` when the row has a DeviceId,
  else ``ReportId`` + ``Timestamp`` + the row's entity values: an event that raised an alert
  never raises another one of the same rule.
* Rows of one run that share their impacted entities and custom details become one alert.
* ``{{Column}}`` in the title and description take the value of the alert's first row.

>>> from datetime import datetime, UTC
>>> from huntsman.detections.model import Rule
>>> rule = Rule(name="r", query="T", title="Run on {{DeviceName}}", entities={"device": "DeviceId"})
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> rows = [{"Timestamp": t, "ReportId": i, "DeviceId": "d1", "DeviceName": "pc1"} for i in (1, 2)]
>>> [(d.alert.title, len(d.rows)) for d in group_rows(rule, rows)]
[('Run on pc1', 2)]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from huntsman.detections.model import CORRELATION_COLUMNS, ENTITY_COLUMNS, PLACEHOLDER, Rule
from huntsman.state.detections import NewAlert

IGNORED_ENTITY_VALUES = frozenset({
    "", "s-1-5-18", "s-1-5-19", "s-1-5-20", "system", "local service", "network service",
    "127.0.0.1", "::1", "0.0.0.0", "-",
})
"""Values that name no real entity (well-known service accounts, loopback): they never make
alerts related, or every alert of a tenant would share an incident."""
MAX_EVIDENCE_ROWS = 1000
"""Rows kept as evidence on one alert (the rest are counted in ``custom_details``)."""


def jsonable(value: Any) -> Any:
    """A result value as JSON (datetimes ISO 8601 UTC, timespans in seconds)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def _text(value: Any) -> str:
    v = jsonable(value)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return "" if v is None else str(v)


def event_key(row: Mapping[str, Any]) -> str:
    """The dedup key of one result row (see the module docstring).

    >>> row = {"ReportId": 1, "Timestamp": "t", "DeviceId": "d"}
    >>> event_key(row) == event_key({**row, "FileName": "x"}), len(event_key(row))
    (True, 64)
    """
    if row.get("DeviceId") not in (None, ""):
        parts = [row.get("ReportId"), row.get("Timestamp"), row.get("DeviceId")]
    else:
        parts = [row.get("ReportId"), row.get("Timestamp")] + [
            row.get(c) for cols in ENTITY_COLUMNS.values() for c in cols if c in row]
    return hashlib.sha256(json.dumps([_text(p) for p in parts]).encode()).hexdigest()


def impacted_columns(rule: Rule, columns: Sequence[str]) -> list[str]:
    """The columns naming the alert's impacted entities: the rule's mapping, else every
    identifier column of the result."""
    if rule.entities:
        return list(rule.entities.values())
    return [c for cols in ENTITY_COLUMNS.values() for c in cols if c in columns]


def render(template: str, row: Mapping[str, Any]) -> str:
    """``{{Column}}`` → the row's value.

    >>> render("{{A}} on {{ B }}", {"A": 1, "B": "pc"})
    '1 on pc'
    """
    return PLACEHOLDER.sub(lambda m: _text(row.get(m.group(1))), template)


def entities_of(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every distinct entity the rows name, as ``{"kind", "value", "column"}``."""
    seen: set[tuple[str, str]] = set()
    out = []
    for row in rows:
        for kind, cols in CORRELATION_COLUMNS.items():
            for col in cols:
                value = _text(row.get(col))
                if value.lower() in IGNORED_ENTITY_VALUES or (kind, value.lower()) in seen:
                    continue
                seen.add((kind, value.lower()))
                out.append({"kind": kind, "value": value, "column": col})
    return out


@dataclass
class Draft:
    """One alert a run would raise, with the rows it groups and their event keys."""

    alert: NewAlert
    rows: list[Mapping[str, Any]]
    keys: list[str] = field(default_factory=list)


def group_rows(rule: Rule, rows: Sequence[Mapping[str, Any]], rule_id: str | None = None
               ) -> list[Draft]:
    """The alerts ``rows`` raise: one per distinct (impacted entities, custom details),
    oldest first."""
    if not rows:
        return []
    columns = list(rows[0].keys())
    impacted = impacted_columns(rule, columns)
    details = list(rule.custom_details.items())
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = tuple(_text(row.get(c)) for c in impacted) + tuple(
            _text(row.get(col)) for _, col in details)
        groups.setdefault(key, []).append(row)
    drafts = []
    for members in groups.values():
        members.sort(key=lambda r: _text(r.get("Timestamp")))
        first = members[0]
        times = [r["Timestamp"] for r in members if isinstance(r.get("Timestamp"), datetime)]
        custom = {k: jsonable(first.get(col)) for k, col in details}
        if len(members) > MAX_EVIDENCE_ROWS:
            custom["evidenceRowsOmitted"] = len(members) - MAX_EVIDENCE_ROWS
        alert = NewAlert(
            title=render(rule.title or rule.name, first)[:512],
            description=render(rule.description, first), severity=rule.severity,
            rule_id=rule_id, rule_name=rule.name, category=rule.category,
            mitre_techniques=list(rule.mitre_techniques),
            recommended_actions=rule.recommended_actions, custom_details=custom,
            entities=entities_of(members),
            evidence=[jsonable(dict(r)) for r in members[:MAX_EVIDENCE_ROWS]],
            actions=[{"type": a.type, "column": a.column, "status": "Recorded",
                      "targets": sorted({_text(r.get(a.column)) for r in members
                                         if a.column and _text(r.get(a.column))})}
                     for a in rule.actions],
            first_event_time=min(times) if times else None,
            last_event_time=max(times) if times else None,
            machine_id=_text(first.get("DeviceId")),
            computer_dns_name=_text(first.get("DeviceName")),
            related_user=_first_user(first))
        drafts.append(Draft(alert, members, [event_key(r) for r in members]))
    drafts.sort(key=lambda d: (d.alert.first_event_time is None,
                               d.alert.first_event_time or datetime.min))
    return drafts


def _first_user(row: Mapping[str, Any]) -> str:
    for col in ("AccountUpn", "AccountName", "InitiatingProcessAccountUpn",
                "InitiatingProcessAccountName", "RecipientEmailAddress"):
        value = _text(row.get(col))
        if value and value.lower() not in IGNORED_ENTITY_VALUES:
            return value
    return ""
