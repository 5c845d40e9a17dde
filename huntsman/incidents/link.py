"""Link hunting results to an incident, as Defender's "Link to incident" does.

The rows (selected from a query's result) become one manual alert, with its rows as evidence
and the chosen impacted entities, added to an existing incident or to a new one. Like Defender,
the rows need ``Timestamp``, ``ReportId`` and an entity id column, and a query of several
statements is refused.

>>> try:
...     check_linkable("T | take 1; T | take 2", [])
... except LinkError as e:
...     print(e)
Link to incident isn't supported for queries with multiple statements: run a single query (let statements are fine), then link its results
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from huntsman.detections.alerts import entities_of, jsonable
from huntsman.detections.model import ENTITY_COLUMNS, IDENTIFIER_COLUMNS
from huntsman.errors import HuntsmanError
from huntsman.kql import ast as A
from huntsman.kql.parser import parse
from huntsman.state.detections import AlertInfo, DetectionStore, IncidentInfo, NewAlert

MULTIPLE_STATEMENTS = ("Link to incident isn't supported for queries with multiple statements: "
                       "run a single query (let statements are fine), then link its results")


class LinkError(HuntsmanError):
    """Rows that cannot be linked; the message names what is missing."""


def check_linkable(query: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Refuse several statements, and rows without Timestamp, ReportId or an entity column."""
    if query and query.strip():
        script = parse(query)
        if sum(isinstance(s, A.QueryStatement) for s in script.statements) > 1:
            raise LinkError(MULTIPLE_STATEMENTS)
    if not rows:
        raise LinkError("select at least one row of the result to link")
    for i, row in enumerate(rows, 1):
        for column in ("Timestamp", "ReportId"):
            if row.get(column) in (None, ""):
                raise LinkError(f"row {i} has no {column} column: the query must project "
                                f"{column} (with ReportId, Timestamp and an entity id column "
                                f"such as DeviceId) to link its results to an incident")
        if not any(row.get(c) not in (None, "") for c in IDENTIFIER_COLUMNS):
            raise LinkError(f"row {i} has no entity id column: the query must project one of "
                            f"{', '.join(IDENTIFIER_COLUMNS)} to link its results to an "
                            f"incident")


def link_rows(store: DetectionStore, tenant: str, actor: str, query: str,
              rows: Sequence[Mapping[str, Any]], *, title: str, severity: str = "Medium",
              category: str = "", description: str = "", recommended_actions: str = "",
              impacted: Mapping[str, str] | None = None, incident_id: int | None = None,
              incident_name: str | None = None) -> tuple[AlertInfo, IncidentInfo]:
    """Make the rows a manual alert in incident ``incident_id`` (or a new incident)."""
    check_linkable(query, rows)
    for kind, column in (impacted or {}).items():
        if kind not in ENTITY_COLUMNS:
            raise LinkError(f"unknown impacted entity {kind!r}: use device, mailbox or user")
        if not any(column in r for r in rows):
            raise LinkError(f"the impacted {kind} is column '{column}', which the rows do "
                            f"not have")
    evidence = [jsonable(dict(r)) for r in rows]
    times = sorted(str(r["Timestamp"]) for r in evidence)
    first = dict(rows[0])
    entities = entities_of(evidence)
    if impacted:
        keep = set(impacted.values())
        entities = [e for e in entities if e["column"] in keep] + [
            e for e in entities if e["column"] not in keep and e["kind"] in ("file", "ip")]
    alert = NewAlert(title=title, severity=severity, kind="manual", description=description,
                     category=category, detection_source="Manual",
                     recommended_actions=recommended_actions, entities=entities,
                     evidence=evidence, custom_details={"query": query[:4000]},
                     first_event_time=_parse_time(times[0]), last_event_time=_parse_time(times[-1]),
                     machine_id=str(first.get("DeviceId") or ""),
                     computer_dns_name=str(first.get("DeviceName") or ""),
                     related_user=str(first.get("AccountUpn") or first.get("AccountName") or ""))
    created = store.create_alerts(tenant, [alert])[0]
    if incident_id is None:
        incident = store.create_incident(tenant, name=incident_name or title, severity=severity,
                                         alert_ids=[created.id])
    else:
        incident = store.add_alerts_to_incident(tenant, incident_id, [created.id])
    store.state.audit(tenant, actor, "incident.link", target=str(incident.id),
                      detail={"alert": created.id, "rows": len(rows)})
    return store.get_alert(tenant, created.id), incident


def _parse_time(text: str) -> Any:
    from datetime import UTC, datetime
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
