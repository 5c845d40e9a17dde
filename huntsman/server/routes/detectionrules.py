"""Custom detection rules: ``/api/v1/detectionrules`` (shaped like Microsoft Graph's
``detectionRule``), plus running a rule now and backtesting it.

Reading needs ``viewer``; creating, changing, deleting, running and backtesting need
``analyst``. A rule is validated before it is saved (400 with what to change). The body of a
create is the rule's fields (``name``, ``query``, ``frequency``, ``severity``, ``title``...,
as in the YAML form) or ``{"yaml": "<the rule as YAML>"}``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, Field

from huntsman.detections.alerts import jsonable
from huntsman.detections.model import Rule, load_rule_text, parse_duration, rule_from_dict
from huntsman.incidents.service import Detections
from huntsman.server.auth import Principal, require_async
from huntsman.state.detections import RuleRecord

router = APIRouter(prefix="/api/v1/detectionrules", tags=["detection rules"])
_LOCK = threading.Lock()


def start_detections(app: Any) -> Callable[[], None]:
    """Start the app's rule scheduler and continuous rules (the app's lifespan calls this);
    returns the function that stops them."""
    found = _detections(app)
    found.start()
    return found.close


def detections(request: Request) -> Detections:
    """The app's :class:`Detections` (made on first use; the app's lifespan starts its
    scheduler and continuous rules)."""
    return _detections(request.app)


def _detections(app: Any) -> Detections:
    st = app.state
    found = getattr(st, "detections", None)
    if found is None:
        with _LOCK:
            found = getattr(st, "detections", None)
            if found is None:
                # continuous rules run right after each ingest call, on a worker thread
                found = Detections(st.store, st.state, nrt_background=True)
                st.detections = found
    return found  # type: ignore[no-any-return]


def rule_out(r: RuleRecord) -> dict[str, Any]:
    d = r.definition
    return jsonable({
        "id": r.id, "displayName": r.name, "isEnabled": r.enabled,
        "createdBy": r.created_by, "createdDateTime": r.created_at,
        "lastModifiedBy": r.updated_by, "lastModifiedDateTime": r.updated_at,
        "version": r.version, "source": r.source,
        "queryCondition": {"queryText": d.get("query", ""),
                           "lastModifiedDateTime": r.updated_at},
        "schedule": {"period": r.frequency, "lookback": d.get("lookback"),
                     "nextRunDateTime": r.health.next_run_at},
        "lastRunDetails": {"lastRunDateTime": r.health.last_run_at,
                           "status": r.health.status, "failureReason": r.health.last_error,
                           "duration": r.health.last_duration, "rows": r.health.last_rows,
                           "alerts": r.health.last_alerts,
                           "consecutiveFailures": r.health.consecutive_failures},
        "detectionAction": {
            "alertTemplate": {"title": d.get("title") or r.name,
                              "description": d.get("description", ""),
                              "severity": d.get("severity"), "category": d.get("category", ""),
                              "mitreTechniques": d.get("mitre_techniques", []),
                              "recommendedActions": d.get("recommended_actions", ""),
                              "customDetails": d.get("custom_details", {}),
                              "impactedAssets": d.get("entities", {})},
            "responseActions": d.get("actions", [])},
        "rule": d,
    })


def _rule_body(body: dict[str, Any]) -> Rule:
    if set(body) == {"yaml"} and isinstance(body["yaml"], str):
        return load_rule_text(body["yaml"], "yaml")
    return rule_from_dict(body)


@router.get("", summary="The tenant's detection rules, with their health")
def list_rules(request: Request, principal: Principal = Depends(require_async("viewer"))
               ) -> dict[str, Any]:
    rules = detections(request).service.rules(principal.tenant)
    return {"value": [rule_out(r) for r in rules]}


@router.post("", status_code=201, summary="Create a rule (validated first; runs at once)")
def create_rule(request: Request, body: dict[str, Any] = Body(...),
                principal: Principal = Depends(require_async("analyst"))) -> dict[str, Any]:
    rule = _rule_body(body)
    record = detections(request).service.create_rule(principal.tenant, principal.actor, rule,
                                                     source="api")
    return rule_out(record)


@router.get("/{rule_id}", summary="One rule (by id or name)")
def get_rule(rule_id: str, request: Request,
             principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    return rule_out(detections(request).service.get_rule(principal.tenant, rule_id))


@router.patch("/{rule_id}", summary="Change fields of a rule (validated again)")
def update_rule(rule_id: str, request: Request, body: dict[str, Any] = Body(...),
                principal: Principal = Depends(require_async("analyst"))) -> dict[str, Any]:
    changes = dict(body)
    version = changes.pop("version", None)
    if "isEnabled" in changes:
        changes["enabled"] = changes.pop("isEnabled")
    if "displayName" in changes:
        changes["name"] = changes.pop("displayName")
    record = detections(request).service.update_rule(principal.tenant, principal.actor,
                                                     rule_id, changes, version=version)
    return rule_out(record)


@router.delete("/{rule_id}", status_code=204, summary="Delete a rule (its alerts stay)")
def delete_rule(rule_id: str, request: Request,
                principal: Principal = Depends(require_async("analyst"))) -> Response:
    detections(request).service.delete_rule(principal.tenant, principal.actor, rule_id)
    return Response(status_code=204)


@router.post("/{rule_id}/run", summary="Run a scheduled rule now")
def run_rule(rule_id: str, request: Request,
             principal: Principal = Depends(require_async("analyst"))) -> dict[str, Any]:
    result = detections(request).service.run_rule(principal.tenant, rule_id)
    return jsonable({"rows": result.rows, "alerts": [a.id for a in result.alerts],
                     "skippedDuplicates": result.skipped_duplicates,
                     "truncated": result.truncated, "error": result.error,
                     "duration": result.duration, "window": list(result.window)})


class BacktestIn(BaseModel):
    since: str = Field("30d", description="How far back, e.g. 90d")
    rule: dict[str, Any] | None = Field(None, description="A rule not saved yet (else the "
                                        "saved rule of the path)")


@router.post("/{rule_id}/backtest",
             summary="The alerts a rule would have raised over history (none are raised)")
def backtest(rule_id: str, body: BacktestIn, request: Request,
             principal: Principal = Depends(require_async("analyst"))) -> dict[str, Any]:
    service = detections(request).service
    rule = rule_from_dict(body.rule) if body.rule is not None else \
        service.rule_of(service.get_rule(principal.tenant, rule_id))
    result = service.backtest(principal.tenant, rule, parse_duration(body.since, "since"),
                              datetime.now(UTC))
    return jsonable({"rows": result.rows, "duration": result.duration,
                     "alerts": [{"title": d.alert.title, "severity": d.alert.severity,
                                 "firstEventTime": d.alert.first_event_time,
                                 "lastEventTime": d.alert.last_event_time,
                                 "rows": len(d.rows), "entities": d.alert.entities}
                                for d in result.drafts]})
