"""The Kusto REST protocol, so that unmodified Kusto clients (azure-kusto-data, and the notebooks
and tools built on it) run KQL against huntsman with a bearer token.

- ``POST /v2/rest/query``: a JSON array of frames — ``DataSetHeader``, the ``@ExtendedProperties``
  table, ``PrimaryResult``, ``QueryCompletionInformation``, ``DataSetCompletion`` — as Kusto sends
  them. The primary table is written in chunks, so a large result never exists as one JSON text.
- ``POST /v1/rest/query``: ``{"Tables": [...]}`` with the primary result, the extended properties,
  the query status and the table of contents.
- ``POST /v1/rest/mgmt``: the read-only control commands clients send to learn the schema
  (``.show version``, ``.show databases``, ``.show tables``, ``.show table T schema as json``,
  ``.show database D schema``, ``.show functions``...); anything else is a Kusto-shaped error.
  A query sent there gets the v1 answer.
- ``GET /v1/rest/auth/metadata``: the cloud metadata the client reads before it authenticates;
  ``GET /metadata/endpoints``: Azure's cloud metadata, naming huntsman as the login endpoint, so
  that Azure tooling configured with a custom cloud (msticpy's ``resource_manager_url``) asks
  huntsman for its tokens.

The request body is ``{"db": ..., "csl": ..., "properties": ...}``. The database is the caller's
tenant: a ``db`` naming another tenant is refused (403). Errors use Kusto's OneApi shape
(``{"error": {"code", "message", "@type", "@message", "@context", "@permanent"}}``) so the
client raises ``KustoServiceError`` carrying our message.

Values are encoded as Kusto does: datetime ``2024-01-02T03:04:05.1234560Z``, timespan
``[-][d.]hh:mm:ss[.fffffff]``, dynamic as embedded JSON, real NaN/±infinity as ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, decimal as a string.

>>> format_timespan(timedelta(days=1, hours=2, seconds=3, microseconds=500000))
'1.02:00:03.5000000'
>>> format_timespan(-timedelta(hours=1))
'-01:00:00'
>>> format_datetime(datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC))
'2024-01-02T03:04:05.1234560Z'
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

import huntsman
from huntsman.errors import (
    HuntsmanError,
    KqlError,
    KqlSemanticError,
    KqlSyntaxError,
    QueryLimitError,
    QueryTimeoutError,
    UnsupportedError,
)
from huntsman.hunting.service import QuotaExceededError
from huntsman.kql.literals import format_datetime_iso
from huntsman.kql.literals import format_timespan as format_timespan_ticks
from huntsman.schema import catalog
from huntsman.server.auth import Principal, require
from huntsman.server.errors import ApiError
from huntsman.server.results import row_chunks

router = APIRouter(tags=["kusto"])

CLR_TYPES: dict[str, str] = {
    "bool": "Boolean", "int": "Int32", "long": "Int64", "real": "Double", "decimal": "Decimal",
    "string": "String", "datetime": "DateTime", "timespan": "TimeSpan", "dynamic": "Object",
    "guid": "Guid",
}
"""Kusto type → the .NET type name of v1 responses' ``DataType`` (``System.`` + it in schemas)."""

_VISUALIZATION_KEYS = ("Visualization", "Title", "XColumn", "Series", "YColumns",
                       "AnomalyColumns", "XTitle", "YTitle", "XAxis", "YAxis", "Legend",
                       "YSplit", "Accumulate", "IsQuerySorted", "Kind", "Ymin", "Ymax", "Xmin",
                       "Xmax")


# ------------------------------------------------------------------ value encodings

def format_datetime(v: datetime) -> str:
    """Kusto's datetime text: UTC, seven fractional digits, ``Z``."""
    if v.tzinfo is not None:
        v = v.astimezone(UTC).replace(tzinfo=None)
    return format_datetime_iso(v)


def format_timespan(v: timedelta) -> str:
    """.NET's constant ("c") TimeSpan format, as Kusto writes timespans."""
    return format_timespan_ticks((v // timedelta(microseconds=1)) * 10)


def _now() -> str:
    return format_datetime(datetime.now(UTC))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# ------------------------------------------------------------------ tables and frames

@dataclass
class KustoTable:
    """One table of a response: typed columns and JSON-ready rows, or a query result whose
    rows are encoded chunk by chunk while the response is written."""

    name: str
    kind: str
    columns: list[tuple[str, str]]
    rows: list[list[Any]] = field(default_factory=list)
    result: Any = None
    """A :class:`huntsman.QueryResult`; when set, the rows come from it."""

    @classmethod
    def of(cls, result: Any, name: str = "PrimaryResult") -> KustoTable:
        """The primary table of a query result."""
        return cls(name, "PrimaryResult", list(result.columns), result=result)

    def chunks(self) -> Iterator[list[list[Any]]]:
        if self.result is not None:
            yield from row_chunks(self.result)
        elif self.rows:
            yield self.rows


def visualization(render: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``Visualization`` property Kusto attaches to a result (from ``| render``).

    >>> visualization({"visualization": "timechart", "title": "t"})["Visualization"]
    'timechart'
    """
    vis: dict[str, Any] = dict.fromkeys(_VISUALIZATION_KEYS)
    vis.update(Accumulate=False, IsQuerySorted=False)
    for key, value in (render or {}).items():
        canon = next((k for k in _VISUALIZATION_KEYS if k.lower() == key.lower()), None)
        if canon is not None:
            vis[canon] = value
    return vis


@dataclass
class Completion:
    """What the ``QueryCompletionInformation`` (v1: ``QueryStatus``) table reports."""

    client_request_id: str
    activity_id: str
    stats: dict[str, Any]
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    """(level: 2 error / 3 warning, status code name, text) — e.g. the result was truncated."""


_COMPLETION_COLUMNS = [
    ("Timestamp", "datetime"), ("ClientRequestId", "string"), ("ActivityId", "guid"),
    ("SubActivityId", "guid"), ("ParentActivityId", "guid"), ("Level", "int"),
    ("LevelName", "string"), ("StatusCode", "int"), ("StatusCodeName", "string"),
    ("EventType", "int"), ("EventTypeName", "string"), ("Payload", "string")]
_LEVEL_NAMES = {2: "Error", 3: "Warning", 4: "Info", 6: "Stats"}
_E_LIMITS = -2133196797
"""Kusto's status code for a query past a limit (E_QUERY_RESULT_SET_TOO_LARGE)."""


def completion_table(c: Completion) -> KustoTable:
    now = _now()
    ids = [c.client_request_id, c.activity_id, c.activity_id, c.activity_id]
    rows: list[list[Any]] = [
        [now, *ids, level, _LEVEL_NAMES[level], _E_LIMITS, status, 1, "QueryLimitsExceeded",
         _dumps({"Count": 1, "Text": text})] for level, status, text in c.problems]
    rows.append([now, *ids, 4, "Info", 0, "S_OK (0)", 4, "QueryInfo",
                 _dumps({"Count": 1, "Text": "Query completed successfully"})])
    rows.append([now, *ids, 6, "Stats", 0, "S_OK (0)", 0, "QueryResourceConsumption",
                 _dumps(c.stats)])
    return KustoTable("QueryCompletionInformation", "QueryCompletionInformation",
                      _COMPLETION_COLUMNS, rows)


def v2_frames(primary: KustoTable, render: Mapping[str, Any] | None, completion: Completion,
              partial_error: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The v2 response (a JSON array of frames) in pieces.

    ``partial_error`` is a OneApi error raised after rows were produced (the result was
    truncated): Kusto appends it to the primary table's rows and reports ``HasErrors``.
    """
    yield ("[" + _dumps({"FrameType": "DataSetHeader", "IsProgressive": False,
                         "Version": "v2.0", "IsFragmented": False,
                         "ErrorReportingPlacement": "InData"})).encode()
    props = KustoTable("@ExtendedProperties", "QueryProperties",
                       [("TableId", "int"), ("Key", "string"), ("Value", "dynamic")],
                       [[1, "Visualization", _dumps(visualization(render))]])
    for table_id, table in enumerate((props, primary, completion_table(completion))):
        head = _dumps({"FrameType": "DataTable", "TableId": table_id, "TableKind": table.kind,
                       "TableName": table.name,
                       "Columns": [{"ColumnName": n, "ColumnType": t} for n, t in table.columns],
                       "Rows": []})
        yield ("," + head[:-2]).encode()  # without the closing "]}": the rows follow
        first = True
        for chunk in table.chunks():
            if chunk:
                body = _dumps(chunk)[1:-1]
                yield (body if first else "," + body).encode()
                first = False
        if table is primary and partial_error is not None:
            yield (("" if first else ",") + _dumps({"OneApiErrors": [{"error": partial_error}]})
                   ).encode()
        yield b"]}"
    done: dict[str, Any] = {"FrameType": "DataSetCompletion",
                            "HasErrors": partial_error is not None, "Cancelled": False}
    if partial_error is not None:
        done["OneApiErrors"] = [{"error": partial_error}]
    yield ("," + _dumps(done) + "]").encode()


def _v1_table(name: str, table: KustoTable) -> dict[str, Any]:
    return {"TableName": name,
            "Columns": [{"ColumnName": n, "DataType": CLR_TYPES.get(t, "Object"),
                         "ColumnType": t} for n, t in table.columns],
            "Rows": [r for chunk in table.chunks() for r in chunk]}


def v1_query_tables(primary: KustoTable, render: Mapping[str, Any] | None,
                    completion: Completion) -> dict[str, Any]:
    """The v1 query response: result, extended properties, query status, table of contents."""
    props = KustoTable("@ExtendedProperties", "QueryProperties", [("Value", "string")],
                       [[_dumps(visualization(render))]])
    now, crid, aid = _now(), completion.client_request_id, completion.activity_id
    status_rows: list[list[Any]] = [
        [now, level, _LEVEL_NAMES[level], _E_LIMITS, text, 1, aid, aid, aid, crid]
        for level, _, text in completion.problems]
    status_rows.append([now, 4, "Info", 0, "Query completed successfully", 1, aid, aid, aid,
                        crid])
    status_rows.append([now, 6, "Stats", 0, _dumps(completion.stats), 1, aid, aid, aid, crid])
    status = KustoTable("QueryStatus", "QueryStatus", [
        ("Timestamp", "datetime"), ("Severity", "int"), ("SeverityName", "string"),
        ("StatusCode", "int"), ("StatusDescription", "string"), ("Count", "int"),
        ("RequestId", "guid"), ("ActivityId", "guid"), ("SubActivityId", "guid"),
        ("ClientActivityId", "string")], status_rows)
    toc = KustoTable("TableOfContents", "TableOfContents", [
        ("Ordinal", "long"), ("Kind", "string"), ("Name", "string"), ("Id", "string"),
        ("PrettyName", "string")], [
        [0, "QueryResult", "PrimaryResult", str(uuid.uuid4()), ""],
        [1, "QueryProperties", "@ExtendedProperties", str(uuid.uuid4()), ""],
        [2, "QueryStatus", "QueryStatus", "00000000-0000-0000-0000-000000000000", ""]])
    return {"Tables": [_v1_table(f"Table_{i}", t)
                       for i, t in enumerate((primary, props, status, toc))]}


def resource_consumption(outcome: Any) -> dict[str, Any]:
    """Kusto's ``QueryResourceConsumption`` payload from a hunting outcome's stats, with
    huntsman's own figures (usage level, the SQL) under ``"huntsman"``."""
    stats = outcome.stats
    cpu = float(getattr(stats, "cpu_time", 0.0) or 0.0)
    scanned = int(getattr(stats, "rows_scanned", 0) or 0)
    cpu_text = format_timespan(timedelta(seconds=cpu))
    return {
        "ExecutionTime": round(float(stats.elapsed), 7),
        "resource_usage": {
            "cache": {"shards": {"hot": {"hitbytes": 0, "missbytes": 0, "retrievebytes": 0},
                                 "cold": {"hitbytes": 0, "missbytes": 0, "retrievebytes": 0},
                                 "bypassbytes": 0}},
            "cpu": {"user": cpu_text, "kernel": "00:00:00", "total cpu": cpu_text},
            "memory": {"peak_per_node": int(getattr(stats, "peak_memory", 0) or 0)},
            "network": {"inter_cluster_total_bytes": 0, "cross_cluster_total_bytes": 0}},
        "input_dataset_statistics": {
            "extents": {"total": 0, "scanned": 0, "scanned_min_datetime": None,
                        "scanned_max_datetime": None},
            "rows": {"total": scanned, "scanned": scanned},
            "rowstores": {"scanned_rows": 0, "scanned_values_size": 0}},
        "dataset_statistics": [{"table_row_count": int(stats.rows),
                                "table_size": int(getattr(stats, "bytes", 0) or 0)}],
        "cross_cluster_resource_usage": {},
        "huntsman": {"usage_level": outcome.usage_level, "truncated": outcome.truncated,
                     "cpu_used_in_window": round(float(outcome.cpu_used), 4),
                     "bytes_scanned": int(getattr(stats, "bytes_scanned", 0) or 0),
                     "sql": getattr(stats, "sql", "")},
    }


# ------------------------------------------------------------------ errors

class KustoRequestError(Exception):
    """A failed request, answered in Kusto's OneApi error shape."""

    def __init__(self, status: int, code: str, kusto_type: str, message: str,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.kusto_type = kusto_type
        self.message = message
        self.headers = dict(headers or {})


_SUMMARIES = {"General_BadRequest": "Request is invalid and cannot be executed.",
              "LimitsExceeded": "Request is invalid and cannot be executed.",
              "Forbidden": "Caller is not authorized to perform this action.",
              "Unauthorized": "Caller is not authenticated.",
              "TooManyRequests": "Request is throttled."}


def one_api_error(code: str, kusto_type: str, message: str, *, client_request_id: str,
                  activity_id: str, permanent: bool = True) -> dict[str, Any]:
    """A OneApi error object (the value of ``"error"``); ``@message`` carries our text."""
    return {"code": code, "message": _SUMMARIES.get(code, message), "@type": kusto_type,
            "@message": message,
            "@context": {"timestamp": _now(), "serviceAlias": "HUNTSMAN",
                         "machineName": "huntsman", "processName": "huntsman",
                         "clientRequestId": client_request_id, "activityId": activity_id},
            "@permanent": permanent}


def translate(e: HuntsmanError) -> KustoRequestError:
    """A huntsman error as Kusto reports one: HTTP status, code, exception type, text.

    >>> translate(KqlSyntaxError("unexpected '|'", 1, 5)).message
    "Request is invalid and cannot be processed: Syntax error: unexpected '|' (line 1, column 5)"
    """
    if isinstance(e, QuotaExceededError):
        return KustoRequestError(429, "TooManyRequests",
                                 "Kusto.DataNode.Exceptions.KustoRequestThrottledException",
                                 f"The request was throttled: {e.message}",
                                 {"Retry-After": str(max(1, math.ceil(e.retry_after)))})
    if isinstance(e, QueryTimeoutError):
        return KustoRequestError(400, "LimitsExceeded",
                                 "Kusto.Data.Exceptions.QueryTimeoutException",
                                 f"Query execution has exceeded the allowed limits "
                                 f"({e.limit}): {e.message}")
    if isinstance(e, QueryLimitError):
        return KustoRequestError(400, "LimitsExceeded",
                                 "Kusto.Data.Exceptions.KustoServiceLimitsExceededException",
                                 f"Query execution has exceeded the allowed limits "
                                 f"({e.limit}): {e.message}")
    if isinstance(e, KqlError):
        where = f" (line {e.line}, column {e.column})" if e.line else ""
        if isinstance(e, KqlSyntaxError):
            kind, prefix = "SyntaxException", "Syntax error"
        elif isinstance(e, (KqlSemanticError, UnsupportedError)):
            kind, prefix = "SemanticException", "Semantic error"
        else:
            return KustoRequestError(400, "General_BadRequest",
                                     "Kusto.Data.Exceptions.KustoDataStreamException",
                                     f"Query execution failed: {e.message}{where}")
        message = e.message
        if message.lower().startswith(prefix.lower() + ":"):
            message = message[len(prefix) + 1:].lstrip()
        return KustoRequestError(400, "General_BadRequest", f"Kusto.Data.Exceptions.{kind}",
                                 f"Request is invalid and cannot be processed: "
                                 f"{prefix}: {message}{where}")
    return KustoRequestError(400, "General_BadRequest",
                             "Kusto.Data.Exceptions.KustoBadRequestException",
                             f"Request is invalid and cannot be processed: {e}")


def _from_api_error(e: ApiError) -> KustoRequestError:
    code = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests"}.get(
        e.status, "General_BadRequest")
    kind = {401: "Kusto.Data.Exceptions.KustoClientAuthenticationException",
            403: "Kusto.Data.Exceptions.KustoRequestDeniedException"}.get(
        e.status, "Kusto.Data.Exceptions.KustoBadRequestException")
    return KustoRequestError(e.status, code, kind, e.message, e.headers)


# ------------------------------------------------------------------ requests

@dataclass
class KustoRequest:
    """A parsed query or command request, with the caller it is for."""

    principal: Principal
    database: str
    csl: str
    options: dict[str, Any]
    client_request_id: str
    activity_id: str


_DEFAULT_DB = "NetDefaultDB"
"""The database name Kusto clients send for cluster-level commands."""


async def _parse(request: Request, crid: str, activity_id: str) -> KustoRequest:
    """Authenticate (the viewer role hunts) and read ``{"db", "csl", "properties"}``."""
    try:
        principal = require("viewer")(request)
    except ApiError as e:
        raise _from_api_error(e) from None
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as e:
        raise KustoRequestError(400, "General_BadRequest",
                                "Kusto.Data.Exceptions.KustoBadRequestException",
                                f"Request is invalid and cannot be processed: the body is not "
                                f"JSON ({e})") from None
    if not isinstance(body, dict) or not isinstance(body.get("csl"), str):
        raise KustoRequestError(400, "General_BadRequest",
                                "Kusto.Data.Exceptions.KustoBadRequestException",
                                "Request is invalid and cannot be processed: the body must be "
                                "a JSON object {\"db\": ..., \"csl\": \"<query>\", "
                                "\"properties\": ...} with the query text in \"csl\"")
    props = body.get("properties") or {}
    if isinstance(props, str):
        try:
            props = json.loads(props) if props.strip() else {}
        except ValueError:
            raise KustoRequestError(400, "General_BadRequest",
                                    "Kusto.Data.Exceptions.KustoBadRequestException",
                                    "Request is invalid and cannot be processed: "
                                    "\"properties\" is not valid JSON") from None
    options = props.get("Options") if isinstance(props, dict) else None
    db = body.get("db")
    database = _check_database(principal, db if isinstance(db, str) else None)
    return KustoRequest(principal, database, body["csl"],
                        options if isinstance(options, dict) else {}, crid, activity_id)


def _check_database(principal: Principal, db: str | None) -> str:
    """The database is the caller's tenant; naming another one is refused."""
    if not db or db == _DEFAULT_DB or db == principal.tenant:
        return principal.tenant
    raise KustoRequestError(
        403, "Forbidden", "Kusto.DataNode.Exceptions.UnauthorizedDatabaseAccessException",
        f"Principal '{principal.actor}' is not authorized to access database '{db}': "
        f"this token is for tenant '{principal.tenant}', whose database is "
        f"'{principal.tenant}'")


def _error_response(e: KustoRequestError, crid: str, activity_id: str) -> JSONResponse:
    body = {"error": one_api_error(e.code, e.kusto_type, e.message, client_request_id=crid,
                                   activity_id=activity_id, permanent=e.status != 429)}
    return JSONResponse(body, status_code=e.status,
                        headers={**e.headers, **_ids(crid, activity_id)})


def _ids(crid: str, activity_id: str) -> dict[str, str]:
    return {"x-ms-client-request-id": crid, "x-ms-activity-id": activity_id}


async def _serve(request: Request,
                 answer: Callable[[Request, KustoRequest], Response]) -> Response:
    """Parse, run ``answer`` on the thread pool, and turn failures into Kusto errors."""
    activity_id = str(uuid.uuid4())
    crid = request.headers.get("x-ms-client-request-id") or f"huntsman;{activity_id}"
    try:
        req = await _parse(request, crid, activity_id)
        response = await run_in_threadpool(answer, request, req)
    except KustoRequestError as e:
        return _error_response(e, crid, activity_id)
    except HuntsmanError as e:
        return _error_response(translate(e), crid, activity_id)
    response.headers.update(_ids(crid, activity_id))
    return response


def _run(request: Request, req: KustoRequest, *, v1: bool = False
         ) -> tuple[Any, Completion, dict[str, Any] | None]:
    """Run the query through the hunting service (limits, quota, audit, functions).

    A truncated result is reported as Kusto does: in v2, a partial failure appended to the rows
    unless the client asked to defer such failures; in v1 (and deferred), an error row of the
    completion table."""
    now = None
    if "query_now" in req.options:
        try:
            now = datetime.fromisoformat(str(req.options["query_now"]).replace("Z", "+00:00"))
        except ValueError:
            raise KustoRequestError(400, "General_BadRequest",
                                    "Kusto.Data.Exceptions.KustoBadRequestException",
                                    f"Request is invalid and cannot be processed: option "
                                    f"query_now={req.options['query_now']!r} is not a "
                                    f"datetime") from None
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
    outcome = request.app.state.hunting.run(req.principal, req.csl, surface="api", now=now,
                                            hints=False)
    completion = Completion(req.client_request_id, req.activity_id,
                            resource_consumption(outcome))
    partial: dict[str, Any] | None = None
    if outcome.truncated:
        text = (f"Query result set has exceeded the internal record count limit "
                f"{outcome.max_rows} (E_QUERY_RESULT_SET_TOO_LARGE; huntsman's max_rows_api "
                f"limit for this tenant): the result holds its first {outcome.max_rows} rows")
        defer = str(req.options.get("deferpartialqueryfailures", "")).lower() == "true"
        if defer or v1:
            completion.problems.append(
                (2, "Query result set too large (E_QUERY_RESULT_SET_TOO_LARGE).", text))
        else:
            partial = one_api_error(
                "LimitsExceeded",
                "Kusto.Data.Exceptions.KustoServicePartialQueryFailureLimitsExceededException",
                text, client_request_id=req.client_request_id, activity_id=req.activity_id,
                permanent=False)
    return outcome, completion, partial


def _answer_v2(request: Request, req: KustoRequest) -> Response:
    outcome, completion, partial = _run(request, req)
    frames = v2_frames(KustoTable.of(outcome.result), outcome.result.render, completion, partial)
    return StreamingResponse(frames, media_type="application/json; charset=utf-8")


def _answer_v1(request: Request, req: KustoRequest) -> Response:
    if req.csl.lstrip().startswith("."):
        return JSONResponse(v1_mgmt(request, req))
    outcome, completion, _ = _run(request, req, v1=True)
    return JSONResponse(v1_query_tables(KustoTable.of(outcome.result), outcome.result.render,
                                        completion))


_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["csl"],
    "properties": {"db": {"type": "string", "description": "the database: your tenant"},
                   "csl": {"type": "string", "description": "the KQL query or command"},
                   "properties": {"description": "ClientRequestProperties as JSON text or an "
                                                 "object: {\"Options\": {...}}"}}}}}}}
"""The request body, for the OpenAPI document (the routes read it themselves, so that a bad
body gets a Kusto-shaped error)."""


@router.post("/v2/rest/query", summary="Kusto query (v2 frames)", openapi_extra=_BODY)
async def query_v2(request: Request) -> Response:
    """Run KQL for a Kusto client: ``{"db", "csl", "properties"}`` → a JSON array of frames."""
    return await _serve(request, _answer_v2)


@router.post("/v1/rest/query", summary="Kusto query (v1 tables)", openapi_extra=_BODY)
async def query_v1(request: Request) -> Response:
    """Run KQL for a Kusto client: ``{"db", "csl", "properties"}`` → ``{"Tables": [...]}``."""
    return await _serve(request, _answer_v1)


@router.post("/v1/rest/mgmt", summary="Kusto control commands (read-only)",
             openapi_extra=_BODY)
async def mgmt_v1(request: Request) -> Response:
    """The read-only ``.show`` commands clients use to learn the schema (a query is run)."""
    return await _serve(request, _answer_v1)


@router.get("/v1/rest/auth/metadata", summary="Kusto cloud metadata")
def auth_metadata(request: Request) -> dict[str, Any]:
    """What a Kusto client reads before it signs in: here, huntsman itself issues the tokens
    (``POST /oauth2/token``); pass one to the client as an application token."""
    base = str(request.base_url).rstrip("/")
    return {"AzureAD": {"LoginEndpoint": base, "LoginMfaRequired": False,
                        "KustoClientAppId": "huntsman", "KustoClientRedirectUri": base,
                        "KustoServiceResourceId": base, "FirstPartyAuthorityUrl": base},
            "dSTS": None}


@router.get("/metadata/endpoints", summary="Azure cloud metadata (for Azure tooling)")
def cloud_endpoints(request: Request) -> dict[str, Any]:
    """An Azure Resource Manager "cloud metadata" document naming huntsman as the login
    endpoint and the Graph/Log Analytics resources, so that tools which take a custom cloud
    (msticpy's ``Azure: resource_manager_url``) request their tokens here
    (``/{tenant}/oauth2/v2.0/token``) instead of at Microsoft's login service."""
    base = str(request.base_url).rstrip("/")
    return {"name": "huntsman", "portal": base,
            "authentication": {"loginEndpoint": base, "audiences": [base],
                               "tenant": "common", "identityProvider": "huntsman"},
            "resourceManager": base + "/", "microsoftGraphResourceId": base + "/",
            "logAnalyticsResourceId": base, "graph": base + "/", "graphAudience": base + "/",
            "suffixes": {}}


# ------------------------------------------------------------------ control commands

_NAME = r"(\[\s*'[^']*'\s*\]|\[\s*\"[^\"]*\"\s*\]|[A-Za-z_][\w.\-]*)"


def _unquote(name: str) -> str:
    name = name.strip()
    if name.startswith("["):
        name = name[1:-1].strip()[1:-1]
    return name


def v1_mgmt(request: Request, req: KustoRequest) -> dict[str, Any]:
    """Answer a control command (``.show ...``) for the caller's tenant."""
    text = req.csl.strip().rstrip(";").strip()
    for pattern, handler in _COMMANDS:
        m = re.fullmatch(pattern, text, flags=re.IGNORECASE | re.DOTALL)
        if m:
            table = handler(request, req, *[_unquote(g) for g in m.groups() if g is not None])
            return {"Tables": [_v1_table("Table_0", table)]}
    known = ", ".join(c for c, _ in _COMMAND_NAMES)
    raise KustoRequestError(400, "General_BadRequest",
                            "Kusto.Data.Exceptions.KustoBadRequestException",
                            f"Request is invalid and cannot be processed: huntsman does not "
                            f"support the control command '{text[:80]}'; it answers only "
                            f"{known}")


def _tables(request: Request, tenant: str) -> dict[str, list[tuple[str, str]]]:
    tables: dict[str, list[tuple[str, str]]] = request.app.state.hunting.database(tenant).tables()
    return dict(sorted(tables.items()))


def _doc(table: str, column: str | None = None) -> str:
    info = catalog().tables.get(table)
    if info is None:
        return ""
    if column is None:
        return info.description
    return info.column(column).description if info.has_column(column) else ""


def _table_named(request: Request, tenant: str, name: str) -> list[tuple[str, str]]:
    tables = _tables(request, tenant)
    if name not in tables:
        raise KustoRequestError(400, "General_BadRequest",
                                "Kusto.Data.Exceptions.EntityNotFoundException",
                                f"Request is invalid and cannot be processed: table '{name}' "
                                f"was not found in database '{tenant}'")
    return tables[name]


def _show_version(request: Request, req: KustoRequest) -> KustoTable:
    return KustoTable("Table_0", "PrimaryResult", [
        ("BuildVersion", "string"), ("BuildTime", "datetime"), ("ServiceType", "string"),
        ("ProductVersion", "string")],
        [[huntsman.__version__, _STARTED, "Engine", f"huntsman {huntsman.__version__}"]])


def _show_databases(request: Request, req: KustoRequest) -> KustoTable:
    tenant = req.principal.tenant
    return KustoTable("Table_0", "PrimaryResult", [
        ("DatabaseName", "string"), ("PersistentStorage", "string"), ("Version", "string"),
        ("IsCurrent", "bool"), ("DatabaseAccessMode", "string"), ("PrettyName", "string"),
        ("CurrentUserIsUnrestrictedViewer", "bool"), ("DatabaseId", "guid")],
        [[tenant, "huntsman", "v1.0", True, "ReadOnly", tenant, False,
          str(uuid.uuid5(uuid.NAMESPACE_URL, f"huntsman:{tenant}"))]])


def _show_tables(request: Request, req: KustoRequest) -> KustoTable:
    tenant = req.principal.tenant
    return KustoTable("Table_0", "PrimaryResult", [
        ("TableName", "string"), ("DatabaseName", "string"), ("Folder", "string"),
        ("DocString", "string")],
        [[t, tenant, "", _doc(t)] for t in _tables(request, tenant)])


def _columns_json(table: str, columns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"Name": c, "Type": f"System.{CLR_TYPES.get(t, 'Object')}", "CslType": t,
             "DocString": _doc(table, c)} for c, t in columns]


def _show_table_schema_json(request: Request, req: KustoRequest, name: str) -> KustoTable:
    tenant = req.principal.tenant
    schema = {"Name": name, "OrderedColumns": _columns_json(name,
                                                            _table_named(request, tenant, name))}
    return KustoTable("Table_0", "PrimaryResult", [
        ("TableName", "string"), ("Schema", "string"), ("DatabaseName", "string"),
        ("Folder", "string"), ("DocString", "string")],
        [[name, _dumps(schema), tenant, "", _doc(name)]])


def _show_table_cslschema(request: Request, req: KustoRequest, name: str) -> KustoTable:
    tenant = req.principal.tenant
    csl = ",".join(f"{c}:{t}" for c, t in _table_named(request, tenant, name))
    return KustoTable("Table_0", "PrimaryResult", [
        ("TableName", "string"), ("Schema", "string"), ("DatabaseName", "string"),
        ("Folder", "string"), ("DocString", "string")],
        [[name, csl, tenant, "", _doc(name)]])


def _functions(request: Request, tenant: str) -> list[Any]:
    functions: list[Any] = request.app.state.hunting.functions(tenant)
    return functions


def _parameters(fn: Any) -> str:
    return "(" + ", ".join(f"{n}:{t}" + (f"={d}" if d is not None else "")
                           for n, t, d in fn.parameters) + ")"


def _show_functions(request: Request, req: KustoRequest, name: str | None = None) -> KustoTable:
    fns = _functions(request, req.principal.tenant)
    if name is not None:
        fns = [f for f in fns if f.name == name]
        if not fns:
            raise KustoRequestError(400, "General_BadRequest",
                                    "Kusto.Data.Exceptions.EntityNotFoundException",
                                    f"Request is invalid and cannot be processed: function "
                                    f"'{name}' was not found in database "
                                    f"'{req.principal.tenant}'")
    return KustoTable("Table_0", "PrimaryResult", [
        ("Name", "string"), ("Parameters", "string"), ("Body", "string"), ("Folder", "string"),
        ("DocString", "string")],
        [[f.name, _parameters(f), "{ " + f.body + " }", "", f.description] for f in fns])


def _show_function(request: Request, req: KustoRequest, name: str) -> KustoTable:
    return _show_functions(request, req, name)


def _database_schema_rows(request: Request, req: KustoRequest, db: str | None = None
                          ) -> tuple[str, dict[str, list[tuple[str, str]]]]:
    tenant = _check_database(req.principal, db)
    return tenant, _tables(request, tenant)


def _show_database_schema(request: Request, req: KustoRequest, db: str | None = None
                          ) -> KustoTable:
    tenant, tables = _database_schema_rows(request, req, db)
    rows = [[tenant, t, c, f"System.{CLR_TYPES.get(ty, 'Object')}", False, False, "", "v1.0",
             "", _doc(t, c)] for t, cols in tables.items() for c, ty in cols]
    return KustoTable("Table_0", "PrimaryResult", [
        ("DatabaseName", "string"), ("TableName", "string"), ("ColumnName", "string"),
        ("ColumnType", "string"), ("IsDefaultTable", "bool"), ("IsDefaultColumn", "bool"),
        ("PrettyName", "string"), ("Version", "string"), ("Folder", "string"),
        ("DocString", "string")], rows)


def _show_database_schema_json(request: Request, req: KustoRequest, db: str | None = None
                               ) -> KustoTable:
    tenant, tables = _database_schema_rows(request, req, db)
    functions = {
        f.name: {"Name": f.name, "InputParameters": [
            {"Name": n, "Type": f"System.{CLR_TYPES.get(t, 'Object')}", "CslType": t,
             "CslDefaultValue": d} for n, t, d in f.parameters],
            "Body": "{ " + f.body + " }", "Folder": "", "DocString": f.description,
            "FunctionKind": "Unknown", "OutputColumns": []}
        for f in _functions(request, tenant)}
    schema = {"Plugins": [], "Databases": {tenant: {
        "Name": tenant, "Tables": {t: {"Name": t, "EntityType": "Table",
                                       "OrderedColumns": _columns_json(t, cols), "Folder": "",
                                       "DocString": _doc(t)} for t, cols in tables.items()},
        "ExternalTables": {}, "MaterializedViews": {}, "Functions": functions,
        "EntityGroups": {}, "MajorVersion": 1, "MinorVersion": 0,
        "DatabaseAccessMode": "ReadOnly"}}}
    return KustoTable("Table_0", "PrimaryResult", [("DatabaseSchema", "string")],
                      [[_dumps(schema)]])


_STARTED = _now()
_COMMAND_NAMES: list[tuple[str, Callable[..., KustoTable]]] = [
    (".show version", _show_version),
    (".show databases", _show_databases),
    (".show tables", _show_tables),
    (".show table T schema as json", _show_table_schema_json),
    (".show table T cslschema", _show_table_cslschema),
    (".show database [D] schema [as json]", _show_database_schema),
    (".show databases schema [as json]", _show_database_schema),
    (".show functions", _show_functions),
    (".show function F", _show_function),
]
"""The control commands huntsman answers (documentation order)."""

_COMMANDS: list[tuple[str, Callable[..., KustoTable]]] = [
    (r"\.show\s+version", _show_version),
    (r"\.show\s+databases", _show_databases),
    (r"\.show\s+tables", _show_tables),
    (rf"\.show\s+table\s+{_NAME}\s+schema\s+as\s+json", _show_table_schema_json),
    (rf"\.show\s+table\s+{_NAME}\s+cslschema", _show_table_cslschema),
    (rf"\.show\s+database\s+{_NAME}\s+schema\s+as\s+json", _show_database_schema_json),
    (rf"\.show\s+database\s+{_NAME}\s+schema", _show_database_schema),
    (r"\.show\s+database\s+schema\s+as\s+json", _show_database_schema_json),
    (r"\.show\s+database\s+schema", _show_database_schema),
    (r"\.show\s+databases\s+schema\s+as\s+json", _show_database_schema_json),
    (r"\.show\s+databases\s+schema", _show_database_schema),
    (r"\.show\s+functions", _show_functions),
    (rf"\.show\s+function\s+{_NAME}", _show_function),
]
"""Command patterns (matched whole, case-insensitively) → the handler building the table."""
