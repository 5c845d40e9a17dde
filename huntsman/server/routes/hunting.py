"""Running hunting queries, in Defender's two API shapes and the portal's.

- ``POST /api/advancedqueries/run`` ``{"Query"}`` → ``{"Schema": [{"Name", "Type"}],
  "Results": [{...}], "Stats": {...}}`` (Defender for Endpoint's API; also at
  ``/api/advancedhunting/run``, Defender XDR's path),
- ``POST /api/v1/security/runHuntingQuery`` (and ``/v1.0/security/runHuntingQuery``)
  ``{"Query", "Timespan"}`` → ``{"schema": [{"name", "type"}], "results": [...]}`` (Graph),
- ``POST /api/v1/hunting/query`` ``{"query", "timespan"}`` → columns, rows, resource usage,
  the SQL, a usage indicator and optimization hints (the portal).

Every answer streams: rows are encoded a chunk at a time.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from huntsman.hunting.service import HuntingOutcome, HuntingService
from huntsman.server.auth import Principal, require_async
from huntsman.server.errors import ApiError
from huntsman.server.results import defender_type, respond

router = APIRouter(tags=["hunting"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The query is wrong (`KqlSyntaxError`, `KqlSemanticError`, ... with "
                         "`line` and `column`) or stopped at a limit (`limit`: `timeout`)"},
    401: {"description": "Missing, invalid or expired token"},
    403: {"description": "The caller's role is too weak, or `tid` names another tenant"},
    429: {"description": "Request rate or CPU quota spent (`Retry-After` says when to retry)"},
}


def _example(body: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": "The result (streamed)",
                  "content": {"application/json": {"example": body}}}, **_ERRORS}


_DEFENDER_EXAMPLE = _example({
    "Schema": [{"Name": "Timestamp", "Type": "DateTime"}, {"Name": "FileName", "Type": "String"}],
    "Results": [{"Timestamp": "2024-01-15T12:00:00.0000000Z", "FileName": "powershell.exe"}],
    "Stats": {"ExecutionTime": 0.02, "resource_usage": {"cpu": {"user": 0.01, "kernel": 0.0},
                                                        "memory": {"peak_per_node": 1048576}},
              "dataset_statistics": [{"table_row_count": 1, "table_size": 2048}],
              "Truncated": False, "Messages": []}})
_GRAPH_EXAMPLE = _example({
    "schema": [{"name": "FileName", "type": "String"}],
    "results": [{"FileName": "powershell.exe"}]})

_ISO_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                           r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_timespan(text: str | None) -> timedelta | None:
    """An ISO 8601 duration (``P30D``, ``PT12H``; a year is 365 days, a month 30) or a KQL
    timespan (``7d``, ``12h``, ``1.02:00:00``), as Graph's ``Timespan`` takes.

    >>> parse_timespan("P1DT12H"), parse_timespan("7d")
    (datetime.timedelta(days=1, seconds=43200), datetime.timedelta(days=7))
    """
    if text is None or not text.strip():
        return None
    s = text.strip()
    m = _ISO_DURATION.match(s.upper())
    if m and s.upper() not in ("P", "PT"):
        y, mo, w, d, h, mi, sec = m.groups()
        return timedelta(days=365 * int(y or 0) + 30 * int(mo or 0) + 7 * int(w or 0)
                         + int(d or 0), hours=int(h or 0), minutes=int(mi or 0),
                         seconds=float(sec or 0))
    from huntsman.kql.literals import parse_timespan as kql_timespan
    try:
        ticks = kql_timespan(s)
    except ValueError:
        ticks = None
    if ticks is None:
        raise ApiError(400, "InvalidTimespan",
                       f"Timespan {text!r} is not an ISO 8601 duration (e.g. 'P7D', 'PT12H') "
                       f"or a KQL timespan (e.g. '7d')")
    return timedelta(microseconds=ticks // 10)


class AdvancedQuery(BaseModel):
    """Defender for Endpoint's ``/api/advancedqueries/run`` body."""

    Query: str = Field(description="The KQL query")


class GraphHuntingQuery(BaseModel):
    """Microsoft Graph's ``runHuntingQuery`` body."""

    model_config = ConfigDict(populate_by_name=True)
    Query: str = Field(description="The KQL query")
    Timespan: str | None = Field(None, description="ISO 8601 duration, e.g. P7D (only rows "
                                 "of that period before now are read)")


class PortalQuery(BaseModel):
    query: str = Field(description="The KQL query")
    timespan: str | None = Field(None, description="ISO 8601 duration or KQL timespan")
    hints: bool = Field(True, description="Compute optimization hints")


def _service(request: Request) -> HuntingService:
    hunting: HuntingService = request.app.state.hunting
    return hunting


def _stats(o: HuntingOutcome) -> dict[str, Any]:
    s = o.stats
    return {
        "ExecutionTime": round(s.elapsed, 6),
        "resource_usage": {
            "cpu": {"user": round(s.cpu_time, 6), "kernel": 0.0},
            "memory": {"peak_per_node": s.peak_memory},
        },
        "dataset_statistics": [{"table_row_count": s.rows,
                                "table_size": s.bytes_scanned}],
        "Truncated": o.truncated,
        "Messages": o.messages,
    }


def _headers(o: HuntingOutcome) -> dict[str, str]:
    h: dict[str, str] = {"X-Huntsman-Usage": o.usage_level}
    if o.truncated:
        h["X-Huntsman-Truncated"] = str(o.max_rows)
    return h


@router.post("/api/advancedqueries/run", summary="Run a hunting query (Defender for Endpoint)",
             responses=_DEFENDER_EXAMPLE)
@router.post("/api/advancedhunting/run", summary="Run a hunting query (Defender XDR's path)",
             responses=_DEFENDER_EXAMPLE)
def advanced_queries_run(body: AdvancedQuery, request: Request,
                         principal: Principal = Depends(require_async("viewer"))) -> Response:
    o = _service(request).run(principal, body.Query, surface="api")
    schema = [{"Name": n, "Type": defender_type(t)} for n, t in o.result.columns]
    return respond([("Schema", schema)], "Results", o.result, [("Stats", _stats(o))],
                   headers=_headers(o))


def _graph(body: GraphHuntingQuery, request: Request, principal: Principal
           ) -> Response:
    o = _service(request).run(principal, body.Query, surface="api",
                              timespan=parse_timespan(body.Timespan))
    schema = [{"name": n, "type": defender_type(t)} for n, t in o.result.columns]
    head: list[tuple[str, Any]] = [
        ("@odata.context", "$metadata#microsoft.graph.security.huntingQueryResults"),
        ("schema", schema)]
    return respond(head, "results", o.result, headers=_headers(o))


@router.post("/api/v1/security/runHuntingQuery", summary="Run a hunting query (Graph shape)",
             responses=_GRAPH_EXAMPLE)
def run_hunting_query(body: GraphHuntingQuery, request: Request,
                      principal: Principal = Depends(require_async("viewer"))) -> Response:
    return _graph(body, request, principal)


@router.post("/v1.0/security/runHuntingQuery", summary="Run a hunting query (Graph's path)",
             responses=_GRAPH_EXAMPLE)
def run_hunting_query_graph(body: GraphHuntingQuery, request: Request,
                            principal: Principal = Depends(require_async("viewer"))
                            ) -> Response:
    return _graph(body, request, principal)


@router.post("/api/v1/hunting/query",
             summary="Run a hunting query with resource usage and optimization hints (portal)",
             responses=_ERRORS)
def portal_query(body: PortalQuery, request: Request,
                 principal: Principal = Depends(require_async("viewer"))) -> Response:
    return _portal(request, principal, body.query, body.timespan, body.hints)


class SavedRun(BaseModel):
    timespan: str | None = Field(None, description="ISO 8601 duration or KQL timespan")
    hints: bool = Field(True, description="Compute optimization hints")


@router.post("/api/v1/queries/{query_id}/run", tags=["saved queries"],
             summary="Run a saved query (the portal's answer)", responses=_ERRORS)
def run_saved_query(query_id: str, request: Request, body: SavedRun | None = None,
                    principal: Principal = Depends(require_async("viewer"))) -> Response:
    saved = request.app.state.state.get_query(principal.tenant, principal.actor, query_id)
    body = body or SavedRun(timespan=None, hints=True)
    return _portal(request, principal, saved.query, body.timespan, body.hints)


def _portal(request: Request, principal: Principal, query: str, timespan: str | None,
            hints: bool) -> Response:
    o = _service(request).run(principal, query, surface="portal",
                              timespan=parse_timespan(timespan), hints=hints)
    s = o.stats
    head: list[tuple[str, Any]] = [
        ("columns", [{"name": n, "type": t} for n, t in o.result.columns])]
    lim = o.limits
    tail: list[tuple[str, Any]] = [
        ("truncated", o.truncated),
        ("messages", o.messages),
        ("render", o.result.render),
        ("stats", {
            "elapsed": s.elapsed, "compile_time": s.compile_time,
            "execute_time": s.execute_time, "cpu_time": s.cpu_time,
            "rows": s.rows, "rows_scanned": s.rows_scanned,
            "bytes_scanned": s.bytes_scanned,
            "peak_memory": s.peak_memory, "sql": s.sql, "tables": s.tables}),
        ("usage", {"level": o.usage_level, "cpu_used": round(o.cpu_used, 4),
                   "cpu_quota": lim.cpu_quota_seconds, "window_seconds": lim.cpu_window_seconds}),
        ("window", {"start": o.window[0].isoformat() if o.window[0] else None,
                    "end": o.window[1].isoformat() if o.window[1] else None}),
        ("hints", [h.to_dict() for h in o.hints]),
    ]
    return respond(head, "rows", o.result, tail, as_dicts=False, headers=_headers(o))

