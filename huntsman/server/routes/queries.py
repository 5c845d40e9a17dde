"""Saved queries: personal and shared, in folders, with who changed them and when.

Every change names the ``version`` it was made from; a stale version → 409 Conflict (someone
else saved in between). Personal queries are the caller's own; shared ones are visible to the
whole tenant and need the ``analyst`` role to create, change or delete.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from huntsman.hunting.service import query_hash
from huntsman.server.auth import Principal, require_async
from huntsman.server.errors import ApiError

router = APIRouter(prefix="/api/v1/queries", tags=["saved queries"])


class SavedQueryIn(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    query: str = Field(min_length=1)
    folder: str = ""
    shared: bool = False
    description: str = ""


class SavedQueryPatch(BaseModel):
    version: int = Field(description="The version this change was made from (409 if stale)")
    name: str | None = None
    query: str | None = None
    folder: str | None = None
    shared: bool | None = None
    description: str | None = None


class SavedQueryOut(BaseModel):
    id: str
    name: str
    query: str
    folder: str
    shared: bool
    description: str
    owner: str
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    version: int


def _out(q: Any) -> SavedQueryOut:
    return SavedQueryOut(id=q.id, name=q.name, query=q.query, folder=q.folder, shared=q.shared,
                         description=q.description, owner=q.owner, created_by=q.created_by,
                         created_at=q.created_at, updated_by=q.updated_by,
                         updated_at=q.updated_at, version=q.version)


def _need_analyst_for_shared(principal: Principal, shared: bool) -> None:
    if shared and not principal.has("analyst"):
        raise ApiError(403, "Forbidden", "shared queries need the 'analyst' role; save it as a "
                       "personal query (shared=false) instead")


@router.get("", summary="The caller's personal queries and the tenant's shared ones")
def list_queries(request: Request, folder: str | None = None,
                 principal: Principal = Depends(require_async("viewer"))) -> list[SavedQueryOut]:
    rows = request.app.state.state.list_queries(principal.tenant, principal.actor)
    return [_out(q) for q in rows if folder is None or q.folder == folder]


@router.post("", status_code=201, summary="Save a query")
def create_query(body: SavedQueryIn, request: Request,
                 principal: Principal = Depends(require_async("viewer"))) -> SavedQueryOut:
    _need_analyst_for_shared(principal, body.shared)
    state = request.app.state.state
    q = state.create_query(principal.tenant, principal.actor, name=body.name, query=body.query,
                           folder=body.folder, shared=body.shared,
                           description=body.description)
    state.audit(principal.tenant, principal.actor, "query.create", target=q.id,
                detail={"name": q.name, "folder": q.folder, "shared": q.shared},
                query_hash=query_hash(q.query))
    return _out(q)


@router.get("/{query_id}", summary="One saved query")
def get_query(query_id: str, request: Request,
              principal: Principal = Depends(require_async("viewer"))) -> SavedQueryOut:
    return _out(request.app.state.state.get_query(principal.tenant, principal.actor, query_id))


@router.patch("/{query_id}", summary="Change a saved query (409 if `version` is stale)")
def update_query(query_id: str, body: SavedQueryPatch, request: Request,
                 principal: Principal = Depends(require_async("viewer"))) -> SavedQueryOut:
    state = request.app.state.state
    current = state.get_query(principal.tenant, principal.actor, query_id)
    _need_analyst_for_shared(principal, current.shared or bool(body.shared))
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    changes = {k: v for k, v in changes.items() if v is not None}
    q = state.update_query(principal.tenant, principal.actor, query_id, version=body.version,
                           **changes)
    state.audit(principal.tenant, principal.actor, "query.update", target=q.id,
                detail={"fields": sorted(changes), "version": q.version},
                query_hash=query_hash(q.query))
    return _out(q)


@router.delete("/{query_id}", status_code=204, summary="Delete a saved query")
def delete_query(query_id: str, request: Request,
                 principal: Principal = Depends(require_async("viewer"))) -> Response:
    state = request.app.state.state
    current = state.get_query(principal.tenant, principal.actor, query_id)
    _need_analyst_for_shared(principal, current.shared)
    state.delete_query(principal.tenant, principal.actor, query_id)
    state.audit(principal.tenant, principal.actor, "query.delete", target=query_id,
                detail={"name": current.name})
    return Response(status_code=204)
