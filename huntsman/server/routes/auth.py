"""Tokens and sessions.

- ``POST /oauth2/token`` (also ``/{tenant}/oauth2/token`` and ``/{tenant}/oauth2/v2.0/token``,
  the paths Azure AD uses): form ``grant_type=client_credentials``, ``client_id``,
  ``client_secret`` (or HTTP Basic ``client_id:client_secret``) → ``{"token_type": "Bearer",
  "expires_in", "access_token"}``. Errors use
  OAuth2's own shape (``{"error": "invalid_client", "error_description": ...}``), which OAuth
  client libraries expect.
- ``POST /api/v1/auth/login`` (JSON or form ``username``, ``password``) sets the portal
  session cookie; ``POST /api/v1/auth/logout`` clears it; ``GET /api/v1/auth/me`` says who the
  caller is.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from huntsman.server.auth import (
    SESSION_COOKIE,
    Principal,
    current_principal,
    issue_app_token,
    issue_session,
    revoke_session,
)
from huntsman.server.errors import ApiError

router = APIRouter(tags=["auth"])


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Basic"} if status == 401 else None
    return JSONResponse({"error": error, "error_description": description},
                        status_code=status, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "")
    if "application/json" in ctype:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    if not ctype:  # a urlencoded body sent without Content-Type (msticpy does; AAD accepts it)
        from urllib.parse import parse_qsl
        return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


async def _token(request: Request, tenant: str | None) -> JSONResponse:
    form = await _form(request)
    grant = form.get("grant_type", "")
    if grant != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type",
                            f"grant_type must be 'client_credentials', not {grant!r}")
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    basic = _basic_credentials(request)
    if basic is not None:  # RFC 6749 client_secret_basic
        client_id, secret = basic
    if not client_id or not secret:
        return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
    st = request.app.state
    app_info = st.state.verify_app(client_id, secret)
    if app_info is None:
        return _oauth_error(401, "invalid_client", "unknown client_id or wrong client_secret")
    if tenant is not None and tenant not in (app_info.tenant, "common", "organizations"):
        return _oauth_error(401, "invalid_client",
                            f"client '{client_id}' is not registered in tenant '{tenant}'")
    token, ttl = issue_app_token(st.signing_key, st.settings, tenant=app_info.tenant,
                                 client_id=app_info.client_id, roles=list(app_info.roles))
    st.state.audit(app_info.tenant, f"app:{client_id}", "auth.token", target=client_id)
    return JSONResponse({"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl,
                         "access_token": token},
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post("/oauth2/token", summary="Client-credentials token (AAD-shaped)")
async def token(request: Request) -> JSONResponse:
    return await _token(request, None)


@router.post("/{tenant}/oauth2/token", summary="Client-credentials token (AAD v1 path)")
async def token_v1(tenant: str, request: Request) -> JSONResponse:
    return await _token(request, tenant)


@router.post("/{tenant}/oauth2/v2.0/token", summary="Client-credentials token (AAD v2 path)")
async def token_v2(tenant: str, request: Request) -> JSONResponse:
    return await _token(request, tenant)


LOGIN_FAILURES = 5
LOGIN_WINDOW = 900.0
"""After this many failed logins for one user name from one address within this many seconds,
further attempts are refused with 429 until the oldest failure leaves the window."""


class LoginThrottle:
    """Failed portal logins per (user name, client address), in memory: slows password
    guessing without locking the user out from everywhere else."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW):
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: tuple[str, str]) -> int:
        """Seconds until ``key`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get(key)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures or len(failures) < self.limit:
                return 0
            return max(1, int(failures[0] + self.window - now) + 1)

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            if len(self._failures) > 100_000:  # bounded memory under a flood of names
                self._failures.clear()
            self._failures.setdefault(key, deque(maxlen=self.limit)).append(time.monotonic())

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)


@router.post("/api/v1/auth/login", summary="Portal login: sets the session cookie")
async def login(request: Request) -> JSONResponse:
    form = await _form(request)
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        raise ApiError(422, "InvalidRequest", "username and password are required")
    st = request.app.state
    throttle: LoginThrottle | None = getattr(st, "login_throttle", None)
    if throttle is None:
        throttle = st.login_throttle = LoginThrottle()
    key = (username.lower(), request.client.host if request.client else "")
    wait = throttle.retry_after(key)
    if wait:
        raise ApiError(429, "TooManyRequests",
                       f"too many failed logins for {username!r}: try again in {wait} s",
                       headers={"Retry-After": str(wait)})
    # argon2 takes a good fraction of a second: off the event loop, which serves the others
    user = await run_in_threadpool(st.state.verify_user, username, password)
    if user is None:
        throttle.failed(key)
        raise ApiError(401, "Unauthorized", "unknown user or wrong password",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_request"'})
    throttle.succeeded(key)
    tenants = st.state.user_tenants(username)
    for t in tenants:
        st.state.audit(t, f"user:{username}", "auth.login", target=username)
    settings = st.settings
    response = JSONResponse({"username": username, "display_name": user.display_name,
                             "tenants": tenants, "expires_in": settings.session_ttl})
    response.set_cookie(SESSION_COOKIE, issue_session(st.signing_key, settings, username),
                        max_age=settings.session_ttl, httponly=True,
                        secure=settings.cookie_secure, samesite="strict", path="/")
    return response


@router.post("/api/v1/auth/logout", summary="Portal logout: clears the session cookie")
def logout(request: Request) -> JSONResponse:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        revoke_session(request, cookie)  # a copy of the cookie stops working too
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True,
                           secure=request.app.state.settings.cookie_secure, samesite="strict")
    return response


@router.get("/api/v1/auth/me", summary="Who the caller is, in which tenant, with which roles")
def me(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return {"tenant": principal.tenant, "subject": principal.subject, "kind": principal.kind,
            "roles": sorted(principal.roles, key=["viewer", "analyst", "responder",
                                                   "admin"].index)}
