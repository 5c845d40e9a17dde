"""Alerts, shaped like Microsoft Defender's ``/api/alerts``: list with OData ``$filter``
(``eq ne gt ge lt le`` joined by ``and`` on the common fields), ``$top`` and ``$skip``; get one
(with its evidence rows, entities and comments); ``PATCH`` its status, assignment,
classification and determination, or add a ``comment``.

Reading needs ``viewer``; changing needs ``analyst``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from huntsman.detections.alerts import jsonable
from huntsman.incidents.odata import parse_filter
from huntsman.server.auth import Principal, require_async
from huntsman.server.routes.detectionrules import detections
from huntsman.state.detections import ALERT_FIELDS, AlertInfo

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
MAX_TOP = 10_000


def alert_out(a: AlertInfo, full: bool = True) -> dict[str, Any]:
    out = {
        "id": a.id, "incidentId": a.incident_id, "title": a.title,
        "description": a.description, "severity": a.severity, "status": a.status,
        "classification": a.classification or None, "determination": a.determination or None,
        "assignedTo": a.assigned_to or None, "category": a.category,
        "detectionSource": a.detection_source, "detectorId": a.rule_id,
        "detectorName": a.rule_name, "kind": a.kind,
        "alertCreationTime": a.created_at, "lastUpdateTime": a.updated_at,
        "firstEventTime": a.first_event_time, "lastEventTime": a.last_event_time,
        "resolvedTime": a.resolved_at, "machineId": a.machine_id or None,
        "computerDnsName": a.computer_dns_name or None, "relatedUser": a.related_user or None,
        "mitreTechniques": a.mitre_techniques, "recommendedActions": a.recommended_actions,
        "customDetails": a.custom_details, "entities": a.entities, "actions": a.actions,
        "comments": a.comments,
    }
    if full:
        out["evidence"] = a.evidence
    return jsonable(out)  # type: ignore[no-any-return]


def page_args(top: int | None, skip: int) -> tuple[int | None, int]:
    from huntsman.errors import HuntsmanError
    if top is not None and not 0 <= top <= MAX_TOP:
        raise HuntsmanError(f"$top must be between 0 and {MAX_TOP}, not {top}")
    if skip < 0:
        raise HuntsmanError(f"$skip must be 0 or more, not {skip}")
    return top, skip


@router.get("", summary="List alerts ($filter, $top, $skip)")
def list_alerts(request: Request,
                filter_: str | None = Query(None, alias="$filter"),
                top: int | None = Query(None, alias="$top"),
                skip: int = Query(0, alias="$skip"),
                evidence: bool = Query(False, description="Include each alert's evidence rows"),
                principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    top, skip = page_args(top, skip)
    where = parse_filter(filter_, ALERT_FIELDS)
    page = detections(request).service.db.list_alerts(principal.tenant, where=where, top=top,
                                                      skip=skip)
    return {"@odata.context": "/api/$metadata#Alerts", "@odata.count": page.total,
            "value": [alert_out(a, evidence) for a in page.items]}


@router.get("/{alert_id}", summary="One alert with its evidence")
def get_alert(alert_id: str, request: Request,
              principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    return alert_out(detections(request).service.db.get_alert(principal.tenant, alert_id))


class AlertPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(None, description="New, InProgress or Resolved")
    assignedTo: str | None = None
    classification: str | None = Field(None, description="TruePositive, "
                                       "InformationalExpectedActivity or FalsePositive")
    determination: str | None = None
    comment: str | None = None


@router.patch("/{alert_id}", summary="Update status, assignment, classification; comment")
def update_alert(alert_id: str, body: AlertPatch, request: Request,
                 principal: Principal = Depends(require_async("analyst"))) -> dict[str, Any]:
    a = detections(request).service.db.update_alert(
        principal.tenant, alert_id, principal.actor, status=body.status,
        assigned_to=body.assignedTo, classification=body.classification,
        determination=body.determination, comment=body.comment)
    request.app.state.state.audit(principal.tenant, principal.actor, "alert.update",
                                  target=alert_id,
                                  detail=body.model_dump(exclude_none=True, exclude={"comment"}))
    return alert_out(a)
