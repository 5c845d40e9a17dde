"""Pushing telemetry into a running server: ``POST /api/ingest``.

While ``huntsman serve`` holds the tenants' stores, ``huntsman ingest`` cannot open them: files
(and agents, collectors, an Event Hub consumer...) are sent here instead. The body is the file
itself, in any format ``huntsman ingest`` reads (NDJSON, gzip'd or not, a Defender streaming
export, a JSON array, CSV, Parquet); it is spooled to the data directory's file system (so that
the engine can read an NDJSON file itself) and ingested as one batch, as ``Database.ingest``
does: committed before the answer, idempotent with ``batch_id``, continuous rules run on it.

The caller needs the ``responder`` role: what is ingested becomes the tenant's evidence.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from huntsman.errors import IngestError
from huntsman.server.auth import Principal, require_async
from huntsman.server.errors import ApiError
from huntsman.store.formats import FORMATS

router = APIRouter(tags=["ingestion"])

CONTENT_TYPES = {
    "application/x-ndjson": "ndjson", "application/jsonl": "ndjson",
    "application/json-lines": "ndjson", "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet",
}
"""Content types that name a format (others, e.g. ``application/json``: detected)."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The batch's report (committed)", "content": {"application/json": {
        "example": {"batch_id": "part-0001", "source": "upload", "accepted": 2, "rejected": 1,
                    "duplicates": 0, "duplicate_batch": False,
                    "tables": {"DeviceProcessEvents": {"accepted": 2, "rejected": 1,
                                                       "duplicates": 0, "overflow": []}},
                    "rejections": [{"line": 3, "record": None, "table": "DeviceProcessEvents",
                                    "reason": "column 'ProcessId' (long): 'x' is not a whole "
                                              "number"}]}}}},
    400: {"description": "Nothing stored: unknown table or format, or (with `on_error=fail`) "
                         "a bad record, whose number is in `line`"},
    401: {"description": "Missing, invalid or expired token"},
    403: {"description": "The caller lacks the `responder` role"},
    413: {"description": "The body is larger than the server accepts"},
}


@router.post("/api/ingest", summary="Ingest a file of telemetry into the caller's tenant",
             responses=_ERRORS)
async def ingest(
    request: Request,
    table: str | None = Query(None, description="The table (not needed for a Defender "
                              "streaming export, whose records name theirs)"),
    format: str | None = Query(None, description="One of " + ", ".join(FORMATS) +
                               "; detected from the content (or Content-Type) by default"),
    on_error: Literal["skip", "fail"] = Query(
        "skip", description="skip: store the good records and list the bad ones; fail: store "
                            "nothing if a record is bad"),
    batch_id: str | None = Query(None, max_length=200, description="Re-sending a batch "
                                 "with the same id writes nothing (the report says so)"),
    principal: Principal = Depends(require_async("responder")),
) -> dict[str, Any]:
    fmt = format or CONTENT_TYPES.get(
        request.headers.get("content-type", "").split(";")[0].strip().lower())
    if fmt is not None and fmt not in FORMATS:
        raise ApiError(400, "UnknownFormat", f"unknown format {fmt!r} (expected one of "
                       f"{', '.join(FORMATS)}, or none to detect it)")
    store = request.app.state.store
    db = store.tenant(principal.tenant)
    if table is not None and not db.has_table(table):
        raise ApiError(400, "UnknownTable", f"unknown table {table!r} in tenant "
                       f"{principal.tenant!r}")
    limit = request.app.state.settings.max_ingest_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    spool = Path(store.data_dir) / ".tmp" / "uploads"
    spool.mkdir(parents=True, exist_ok=True)
    upload = spool / f"{uuid.uuid4().hex}.upload"
    try:
        size = 0
        with upload.open("wb") as f:
            async for piece in request.stream():
                size += len(piece)
                if size > limit:
                    raise _too_large(limit)
                f.write(piece)
        if size == 0:
            raise ApiError(400, "EmptyBody", "the request has no body: send the file's "
                           "content (e.g. curl --data-binary @events.ndjson)")
        try:
            report = await run_in_threadpool(db.ingest, table, upload, format=fmt,
                                             batch_id=batch_id, on_error=on_error)
        except IngestError as e:  # (its message would name the spooled file)
            where = f" (record {e.record})" if e.record else ""
            raise ApiError(400, "IngestError", f"nothing was stored: {e.message}{where}",
                           line=e.record or 0) from None
    finally:
        with contextlib.suppress(OSError):
            upload.unlink()
    request.app.state.state.audit(
        principal.tenant, principal.actor, "telemetry.ingest", target=report.batch_id,
        detail={"bytes": size, "accepted": report.accepted, "rejected": report.rejected,
                "duplicates": report.duplicates, "tables": sorted(report.tables)})
    out = report.to_dict()
    out["source"] = "upload"
    return out


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "TooLarge", f"the body is larger than this server accepts "
                    f"({limit:,} bytes; split the file, or raise --max-ingest-bytes)")
