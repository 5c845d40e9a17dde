"""The FastAPI application: ``create_app(ServerSettings(...))``.

It opens (or is handed) the tenants' telemetry ``Store`` and the application ``State``, builds
the :class:`~huntsman.hunting.service.HuntingService` at ``app.state.hunting``, installs the
JSON error handlers and includes every router of ``huntsman.server.routes.ROUTERS``.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from huntsman.hunting.service import HuntingService
from huntsman.server import errors
from huntsman.server.routes import ROUTERS
from huntsman.server.settings import ServerSettings

log = logging.getLogger("huntsman.server")

API_DESCRIPTION = """Threat hunting with KQL, shaped like Microsoft Defender's APIs.

Get a token with `POST /oauth2/token` (client credentials), then `POST /api/advancedqueries/run`
or `POST /api/v1/security/runHuntingQuery`. Errors are `{"error": {"code", "message", "line",
"column"}}`."""


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The server as an ASGI app (``uvicorn`` runs it; tests call it in-process)."""
    settings = settings or ServerSettings()
    owned: list[Any] = []
    store = settings.store
    if store is None:
        from huntsman.store import Store
        store = Store(settings.data_dir, memory_limit=settings.memory_limit,
                      threads=settings.threads)
        owned.append(store)
    state = settings.state
    if state is None:
        from huntsman.state import State
        state = State(settings.state_url, data_dir=settings.data_dir)
        owned.append(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from huntsman.server.routes.detectionrules import start_detections
        stop_detections = start_detections(app)  # rule scheduler and continuous rules
        yield
        stop_detections()
        app.state.hunting.close()
        for thing in owned:
            close = getattr(thing, "close", None)
            if close is not None:
                close()

    app = FastAPI(title="huntsman", version=_version(), description=API_DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.state = state
    app.state.signing_key = state.signing_key()
    app.state.app_registrations = {}  # client id → (checked at, AppInfo | None), see auth
    app.state.hunting = HuntingService(store, state, timeout=settings.query_timeout,
                                       max_concurrent=settings.max_concurrent_queries,
                                       cache_seconds=settings.cache_seconds)
    errors.install(app)
    app.add_middleware(ServerTiming)

    @app.get("/api/v1/health", tags=["meta"], summary="Liveness (no authentication)")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": app.version}

    for name in ROUTERS:
        module_name = f"huntsman.server.routes.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            log.warning("router %s is listed but missing; skipped", module_name)
            continue
        app.include_router(module.router)
    return app


class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>``: the time from the request's arrival to the start
    of its response (for a streamed result, until its first piece is ready)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - t0) * 1000
                message["headers"] = [*message.get("headers", []),
                                      (b"server-timing", f"app;dur={took:.2f}".encode())]
            await send(message)

        await self.app(scope, receive, timed_send)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("huntsman")
    except Exception:  # pragma: no cover - not installed
        return "0"
