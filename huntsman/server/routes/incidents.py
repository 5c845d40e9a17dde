"""Incidents, shaped like Microsoft Defender's ``/api/incidents``: list with OData
``$filter``/``$top``/``$skip``, get one (with its alerts and a timeline of their evidence),
``PATCH`` status, assignment, classification, determination, tags or add a ``comment``; and
``POST /api/incidents/link`` to link hunting results (a query and its selected rows) to a new
or existing incident, as a manual alert.

Reading needs ``viewer``; changing and linking need ``analyst``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from huntsman.detections.alerts import jsonable
from huntsman.incidents.link import link_rows
from huntsman.incidents.odata import parse_filter
from huntsman.server.auth import Principal, require_async
from huntsman.server.routes.alerts import alert_out, page_args
from huntsman.server.routes.detectionrules import detections
from huntsman.state.detections import INCIDENT_FIELDS, IncidentInfo

router = APIRouter(prefix="/api/incidents", tags=["incidents"])


def incident_out(request: Request, i: IncidentInfo, alerts: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "incidentId": i.id, "incidentName": i.name, "severity": i.severity,
        "status": i.status, "assignedTo": i.assigned_to or None,
        "classification": i.classification or None, "determination": i.determination or None,
        "tags": i.tags, "comments": i.comments, "createdTime": i.created_at,
        "lastUpdateTime": i.updated_at, "resolvedTime": i.resolved_at,
        "firstActivity": i.first_activity, "lastActivity": i.last_activity,
        "alertIds": i.alert_ids,
    }
    if alerts:
        db = detections(request).service.db
        out["alerts"] = [alert_out(db.get_alert(i.tenant, a), full=False) for a in i.alert_ids]
    return jsonable(out)  # type: ignore[no-any-return]


@router.get("", summary="List incidents ($filter, $top, $skip)")
def list_incidents(request: Request,
                   filter_: str | None = Query(None, alias="$filter"),
                   top: int | None = Query(None, alias="$top"),
                   skip: int = Query(0, alias="$skip"),
                   principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    top, skip = page_args(top, skip)
    where = parse_filter(filter_, INCIDENT_FIELDS)
    page = detections(request).incidents.db.list_incidents(principal.tenant, where=where,
                                                           top=top, skip=skip)
    return {"@odata.context": "/api/$metadata#Incidents", "@odata.count": page.total,
            "value": [incident_out(request, i) for i in page.items]}


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(description="The hunting query the rows came from")
    rows: list[dict[str, Any]] = Field(description="The selected result rows")
    incidentId: int | None = Field(None, description="An existing incident (else a new one)")
    incidentName: str | None = None
    title: str = Field(min_length=1, max_length=512, description="The alert's title")
    severity: str = "Medium"
    category: str = ""
    description: str = ""
    recommendedActions: str = ""
    impactedEntities: dict[str, str] = Field(default_factory=dict, description="device, "
                                             "mailbox, user → a column of the rows")


@router.post("/link", status_code=201, summary="Link hunting results to an incident")
def link(body: LinkIn, request: Request,
         principal: Principal = Depends(require_async("analyst"))) -> dict[str, Any]:
    db = detections(request).incidents.db
    alert, incident = link_rows(
        db, principal.tenant, principal.actor, body.query, body.rows, title=body.title,
        severity=body.severity, category=body.category, description=body.description,
        recommended_actions=body.recommendedActions, impacted=body.impactedEntities,
        incident_id=body.incidentId, incident_name=body.incidentName)
    return {"alert": alert_out(alert), "incident": incident_out(request, incident)}


@router.get("/{incident_id}", summary="One incident with its alerts")
def get_incident(incident_id: int, request: Request,
                 principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    inc = detections(request).incidents.db.get_incident(principal.tenant, incident_id)
    return incident_out(request, inc)


@router.get("/{incident_id}/timeline", summary="The incident's alerts, evidence and comments, "
            "oldest first")
def timeline(incident_id: int, request: Request,
             principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    return {"value": detections(request).incidents.timeline(principal.tenant, incident_id)}


class IncidentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(None, description="Active, InProgress, Resolved or Redirected")
    assignedTo: str | None = None
    classification: str | None = None
    determination: str | None = None
    tags: list[str] | None = None
    comment: str | None = None


@router.patch("/{incident_id}", summary="Update status, assignment, classification, tags; "
              "comment")
def update_incident(incident_id: int, body: IncidentPatch, request: Request,
                    principal: Principal = Depends(require_async("analyst"))) -> dict[str, Any]:
    inc = detections(request).incidents.db.update_incident(
        principal.tenant, incident_id, principal.actor, status=body.status,
        assigned_to=body.assignedTo, classification=body.classification,
        determination=body.determination, tags=body.tags, comment=body.comment)
    request.app.state.state.audit(principal.tenant, principal.actor, "incident.update",
                                  target=str(incident_id),
                                  detail=body.model_dump(exclude_none=True, exclude={"comment"}))
    return incident_out(request, inc)
