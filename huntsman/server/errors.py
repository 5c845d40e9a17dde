"""Every failure becomes JSON: ``{"error": {"code", "message", "line", "column"}}``.

KQL errors keep their position; limits add ``limit`` (and ``Retry-After`` for quotas); state
errors map to 404/409; anything unexpected is a 500 with a generic message (the traceback goes
to the server log, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from huntsman.errors import HuntsmanError, KqlError, QueryLimitError
from huntsman.hunting.service import QuotaExceededError

log = logging.getLogger("huntsman.server")


class ApiError(Exception):
    """An HTTP error with a machine-readable code, raised by routes and auth."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_body(code: str, message: str, line: int = 0, column: int = 0,
               **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "line": line, "column": column,
                      **extra}}


def _state_status(e: Exception) -> tuple[int, str] | None:
    """404/409/401/400 for the state layer's errors (matched by name: state is optional)."""
    for cls in type(e).__mro__:
        if cls.__module__.startswith("huntsman.state"):
            return {"NotFoundError": (404, "NotFound"), "ConflictError": (409, "Conflict"),
                    "AuthError": (401, "Unauthorized")}.get(cls.__name__, (400, "BadRequest"))
    return None


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(error_body(e.code, e.message, **e.extra), status_code=e.status,
                            headers=e.headers)

    @app.exception_handler(QuotaExceededError)
    async def quota(request: Request, e: QuotaExceededError) -> JSONResponse:
        return JSONResponse({"error": e.to_dict()}, status_code=429,
                            headers={"Retry-After": str(max(1, int(e.retry_after + 0.999)))})

    @app.exception_handler(QueryLimitError)
    async def limit(request: Request, e: QueryLimitError) -> JSONResponse:
        return JSONResponse({"error": e.to_dict()}, status_code=400)

    @app.exception_handler(KqlError)
    async def kql(request: Request, e: KqlError) -> JSONResponse:
        return JSONResponse({"error": e.to_dict()}, status_code=400)

    @app.exception_handler(HuntsmanError)
    async def huntsman_error(request: Request, e: HuntsmanError) -> JSONResponse:
        status, code = _state_status(e) or (400, type(e).__name__)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(code, str(e)), status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized",
                403: "Forbidden"}.get(e.status_code, "HttpError")
        return JSONResponse(error_body(code, str(e.detail)), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body("InvalidRequest", "; ".join(problems) or "invalid request",
                                       details=jsonable(e.errors())), status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("InternalError", "internal server error; the server "
                                       "log has the details"), status_code=500)


def jsonable(errors: Any) -> Any:
    """Validation details without the raw input objects (which may not be JSON)."""
    out = []
    for err in errors:
        out.append({k: (v if isinstance(v, (str, int, float, list, tuple)) else str(v))
                    for k, v in err.items() if k in ("loc", "msg", "type")})
    return out
