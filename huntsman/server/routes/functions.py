"""Saved KQL functions with parameters, callable from any query of the tenant, like Defender's
own ``FileProfile()``: ``{"name": "RecentProcs", "parameters": [["d", "timespan", "1d"]],
"body": "DeviceProcessEvents | where Timestamp > ago(d)"}`` → ``RecentProcs() | take 10``.

Reading needs ``viewer``; creating, changing (with ``version``; stale → 409) and deleting need
``analyst``. A function is compiled before it is saved, so a broken body is refused with the
error's position.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from huntsman.kql.stored import StoredFunction
from huntsman.server.auth import Principal, require_async

router = APIRouter(prefix="/api/v1/functions", tags=["functions"])

Parameter = tuple[str, str, str | None] | tuple[str, str]


class FunctionIn(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    body: str = Field(min_length=1, description="The function's KQL (a tabular or scalar "
                      "expression, possibly after let statements)")
    parameters: list[Parameter] = Field(default_factory=list, description="[name, kusto type, "
                                        "default literal or null]")
    description: str = ""


class FunctionPatch(BaseModel):
    version: int = Field(description="The version this change was made from (409 if stale)")
    body: str | None = None
    parameters: list[Parameter] | None = None
    description: str | None = None


class FunctionOut(BaseModel):
    name: str
    body: str
    parameters: list[tuple[str, str, str | None]]
    description: str
    declaration: str
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


def _params(params: Any) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((str(p[0]), str(p[1]), None if len(p) < 3 or p[2] is None else str(p[2]))
                 for p in params)


def _out(f: Any) -> FunctionOut:
    params = _params(f.parameters)
    return FunctionOut(name=f.name, body=f.body, parameters=list(params),
                       description=f.description,
                       declaration=StoredFunction(f.name, f.body, params).declaration(),
                       version=f.version, created_by=f.created_by, created_at=f.created_at,
                       updated_by=f.updated_by, updated_at=f.updated_at)


def _check_compiles(request: Request, principal: Principal, fn: StoredFunction) -> None:
    """Refuse a function whose body does not compile (KqlError → 400 with its position).

    The function is called once as a table and once as a scalar, with a plain value (1, '', 1d...) for each
    parameter without a default; an error inside the body is the function's fault, an error about the call's
    shape (a scalar function called as a table) is not.
    """
    from huntsman.errors import KqlError
    db = request.app.state.hunting.database(principal.tenant)
    others = [f for f in request.app.state.hunting.functions(principal.tenant)
              if f.name != fn.name]
    args = ", ".join(d if d is not None else _sample_of(t) for _, t, d in fn.parameters)
    call = f"{fn.name}({args})"
    for query in (call, f"print __value = {call}"):
        try:
            db.compile(query, functions=[*others, fn])
            return
        except KqlError as e:
            if e.message.startswith(f"in function '{fn.name}'"):
                raise


_SAMPLES = {"string": '""', "long": "1", "int": "1", "real": "1.0", "decimal": "1.0",
            "bool": "false", "datetime": "datetime(2024-01-01)", "timespan": "1d",
            "dynamic": "dynamic(null)", "guid": "guid(00000000-0000-0000-0000-000000000000)"}


def _sample_of(ktype: str) -> str:
    t = ktype.strip().lower()
    if t.startswith("(") or t == "table":
        return "datatable(x:long)[]"
    return _SAMPLES.get(t, f"{t}(null)")


@router.get("", summary="The tenant's saved functions")
def list_functions(request: Request, principal: Principal = Depends(require_async("viewer"))
                   ) -> list[FunctionOut]:
    return [_out(f) for f in request.app.state.state.list_functions(principal.tenant)]


@router.post("", status_code=201, summary="Save a function")
def create_function(body: FunctionIn, request: Request,
                    principal: Principal = Depends(require_async("analyst"))) -> FunctionOut:
    params = _params(body.parameters)
    _check_compiles(request, principal, StoredFunction(body.name, body.body, params))
    state = request.app.state.state
    f = state.create_function(principal.tenant, principal.actor, name=body.name,
                              body=body.body, parameters=params, description=body.description)
    request.app.state.hunting.invalidate(principal.tenant)
    state.audit(principal.tenant, principal.actor, "function.create", target=f.name)
    return _out(f)


@router.get("/{name}", summary="One saved function")
def get_function(name: str, request: Request,
                 principal: Principal = Depends(require_async("viewer"))) -> FunctionOut:
    return _out(request.app.state.state.get_function(principal.tenant, name))


@router.patch("/{name}", summary="Change a function (409 if `version` is stale)")
def update_function(name: str, body: FunctionPatch, request: Request,
                    principal: Principal = Depends(require_async("analyst"))) -> FunctionOut:
    state = request.app.state.state
    current = state.get_function(principal.tenant, name)
    changes: dict[str, Any] = {}
    if body.body is not None:
        changes["body"] = body.body
    if body.parameters is not None:
        changes["parameters"] = _params(body.parameters)
    if body.description is not None:
        changes["description"] = body.description
    _check_compiles(request, principal, StoredFunction(
        name, changes.get("body", current.body),
        changes.get("parameters", _params(current.parameters))))
    f = state.update_function(principal.tenant, principal.actor, name, version=body.version,
                              **changes)
    request.app.state.hunting.invalidate(principal.tenant)
    state.audit(principal.tenant, principal.actor, "function.update", target=name,
                detail={"fields": sorted(changes), "version": f.version})
    return _out(f)


@router.delete("/{name}", status_code=204, summary="Delete a function")
def delete_function(name: str, request: Request,
                    principal: Principal = Depends(require_async("analyst"))) -> Response:
    state = request.app.state.state
    state.delete_function(principal.tenant, principal.actor, name)
    request.app.state.hunting.invalidate(principal.tenant)
    state.audit(principal.tenant, principal.actor, "function.delete", target=name)
    return Response(status_code=204)
