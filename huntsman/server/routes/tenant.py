"""The caller's tenant: its limits and current CPU usage, the audit log.

- ``GET /api/v1/tenant`` — name, limits, CPU used in the current quota window (viewer),
- ``PATCH /api/v1/tenant/limits`` — change limits (admin; ``null`` resets ``lookback_days`` to
  unlimited), audited,
- ``GET /api/v1/audit?since=&action=&limit=`` — the tenant's audit log, newest first (admin).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request

from huntsman.server.auth import Principal, require_async
from huntsman.server.errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["tenant"])


@router.get("/tenant", summary="The caller's tenant: limits and CPU usage")
def tenant(request: Request, principal: Principal = Depends(require_async("viewer"))
           ) -> dict[str, Any]:
    state = request.app.state.state
    limits = state.tenant_limits(principal.tenant)
    since = datetime.now(UTC) - timedelta(seconds=limits.cpu_window_seconds)
    return {"tenant": principal.tenant, "you": principal.actor,
            "roles": sorted(principal.roles), "limits": limits.to_dict(),
            "cpu_used": round(state.cpu_used(principal.tenant, since), 4)}


@router.patch("/tenant/limits", summary="Change the tenant's limits (admin)")
def set_limits(request: Request, changes: dict[str, int | None] = Body(
                   ..., examples=[{"max_rows_api": 50000, "lookback_days": None}]),
               principal: Principal = Depends(require_async("admin"))) -> dict[str, Any]:
    if not changes:
        raise ApiError(422, "InvalidRequest", "name at least one limit to change")
    state = request.app.state.state
    limits = state.set_tenant_limits(principal.tenant, **changes)
    request.app.state.hunting.invalidate(principal.tenant)
    state.audit(principal.tenant, principal.actor, "tenant.limits", target=principal.tenant,
                detail=changes)
    return {"tenant": principal.tenant, "limits": limits.to_dict()}


@router.get("/audit", summary="The tenant's audit log, newest first (admin)")
def audit(request: Request, since: datetime | None = None, action: str | None = None,
          limit: int = Query(100, ge=1, le=10_000),
          principal: Principal = Depends(require_async("admin"))) -> list[dict[str, Any]]:
    request.app.state.hunting.flush()
    events = request.app.state.state.audit_log(principal.tenant, since=since, limit=limit,
                                               action=action)
    return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
             "target": e.target, "detail": e.detail, "query_hash": e.query_hash}
            for e in events]
