"""Who is calling, for which tenant, with which roles.

Apps get short-lived HS256 JWTs from ``POST /oauth2/token`` (client credentials); portal users
log in for a signed session cookie. Every request resolves to one :class:`Principal` scoped to
exactly one tenant: a user with several tenants picks one with ``?tid=`` (as Defender's portal
links do). Roles are ordered ``viewer < analyst < responder < admin``; each includes the ones
before it.

    @router.get("/things")
    def things(principal: Principal = Depends(require("analyst"))): ...
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import jwt
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from huntsman.errors import HuntsmanError
from huntsman.server.errors import ApiError

if TYPE_CHECKING:
    from huntsman.server.settings import ServerSettings
    from huntsman.state import State

ROLE_ORDER: tuple[str, ...] = ("viewer", "analyst", "responder", "admin")
"""The roles, least to most powerful (the same as ``huntsman.state.ROLES``)."""
SESSION_COOKIE = "huntsman_session"
ALGORITHM = "HS256"
_SESSION_AUD_SUFFIX = "/portal-session"


@dataclass(frozen=True)
class Principal:
    """The caller of one request: an app registration or a portal user, in one tenant."""

    tenant: str
    subject: str
    kind: Literal["app", "user"]
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        """Whether the caller holds ``role`` (directly or through a stronger one)."""
        return role in self.roles

    @property
    def actor(self) -> str:
        """How the audit log names the caller: ``app:<client id>`` or ``user:<name>``."""
        return f"{self.kind}:{self.subject}"


def expand_roles(roles: Iterable[str]) -> frozenset[str]:
    """Every role implied by ``roles`` (``{"analyst"}`` → viewer and analyst).

    >>> sorted(expand_roles(["responder"]))
    ['analyst', 'responder', 'viewer']
    """
    top = max((ROLE_ORDER.index(r) for r in roles if r in ROLE_ORDER), default=-1)
    return frozenset(ROLE_ORDER[: top + 1])


def _unauthorized(message: str, error: str = "invalid_token") -> ApiError:
    return ApiError(401, "Unauthorized", message,
                    headers={"WWW-Authenticate": f'Bearer error="{error}"'})


# ------------------------------------------------------------------ tokens

def issue_app_token(key: bytes, settings: ServerSettings, *, tenant: str, client_id: str,
                    roles: Sequence[str], now: float | None = None) -> tuple[str, int]:
    """A signed access token for an app; returns ``(token, expires_in seconds)``."""
    iat = int(now if now is not None else time.time())
    ttl = settings.token_ttl
    claims = {"tid": tenant, "sub": client_id, "appid": client_id, "roles": list(roles),
              "kind": "app", "iat": iat, "nbf": iat, "exp": iat + ttl,
              "aud": settings.audience, "iss": "huntsman"}
    return jwt.encode(claims, key, algorithm=ALGORITHM), ttl


def issue_session(key: bytes, settings: ServerSettings, username: str,
                  now: float | None = None) -> str:
    """The signed value of a portal session cookie for ``username``."""
    iat = int(now if now is not None else time.time())
    # jti: every session is distinct (two logins in one second must not share a value that
    # logging one of them out revokes)
    claims = {"sub": username, "kind": "user", "iat": iat, "exp": iat + settings.session_ttl,
              "aud": settings.audience + _SESSION_AUD_SUFFIX, "iss": "huntsman",
              "jti": secrets.token_urlsafe(12)}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


_VERIFIED: dict[tuple[str, bytes, str], dict[str, Any]] = {}
"""Claims of tokens already verified, until they expire (a client sends the same token with
every request; checking it once saves the signature check and claim parsing on each)."""
VERIFIED_MAX = 10_000
"""Tokens remembered at most (the memory is emptied when full)."""


def _decode(token: str, key: bytes, audience: str) -> dict[str, Any]:
    cache_key = (token, key, audience)
    claims = _VERIFIED.get(cache_key)
    if claims is not None and claims["exp"] > time.time():
        return claims
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience,
                            options={"require": ["exp", "iat", "sub", "aud"]})
    except jwt.ExpiredSignatureError:
        _VERIFIED.pop(cache_key, None)
        raise _unauthorized("the access token has expired; request a new one") from None
    except jwt.InvalidAudienceError:
        raise _unauthorized("the access token is for another audience") from None
    except jwt.PyJWTError as e:
        raise _unauthorized(f"invalid access token: {e}") from None
    if len(_VERIFIED) >= VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[cache_key] = claims
    return claims


# ------------------------------------------------------------------ dependencies

def _app_parts(request: Request) -> tuple[State, ServerSettings, bytes]:
    st = request.app.state
    return st.state, st.settings, st.signing_key


def current_principal(request: Request) -> Principal:
    """The caller: a Bearer JWT, or else the portal session cookie (tenant from ``?tid=``).

    Missing, expired or invalid credentials → 401 with ``WWW-Authenticate``; a ``tid`` the
    caller has no access to → 403; a user with several tenants and no ``tid`` → 400.
    """
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    state, settings, key = _app_parts(request)
    tid = request.query_params.get("tid")
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <access token>'",
                                "invalid_request")
        claims = _decode(token.strip(), key, settings.audience)
        tenant = claims.get("tid")
        if not isinstance(tenant, str) or not tenant:
            raise _unauthorized("the access token names no tenant (tid)")
        if tid is not None and tid != tenant:
            raise ApiError(403, "Forbidden", f"this token is for tenant '{tenant}', "
                           f"not '{tid}'")
        roles = claims.get("roles") or []
        kind: Literal["app", "user"] = "user" if claims.get("kind") == "user" else "app"
        if kind == "user":
            # a user's rights are looked up each time, so that a revoke takes effect at once
            role = state.user_role(str(claims["sub"]), tenant)
            if role is None:
                raise ApiError(403, "Forbidden", f"no access to tenant '{tenant}'")
            roles = [role]
        else:
            roles = _registered_roles(request, str(claims["sub"]), tenant)
        principal = Principal(tenant, str(claims["sub"]), kind, expand_roles(roles))
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise _unauthorized("authentication required: send 'Authorization: Bearer <token>' "
                                "(POST /oauth2/token) or log in (POST /api/v1/auth/login)",
                                "invalid_request")
        claims = _decode(cookie, key, settings.audience + _SESSION_AUD_SUFFIX)
        if cookie in revoked_sessions(request):
            raise _unauthorized("this session was logged out; log in again")
        username = str(claims["sub"])
        tenants = state.user_tenants(username)
        if tid is None:
            if not tenants:
                raise ApiError(403, "Forbidden", f"user '{username}' has no tenant")
            if len(tenants) > 1:
                raise ApiError(400, "TenantRequired",
                               f"user '{username}' has several tenants "
                               f"({', '.join(sorted(tenants))}): pass ?tid=<tenant>")
            tid = next(iter(tenants))
        if tid not in tenants:
            raise ApiError(403, "Forbidden", f"no access to tenant '{tid}'")
        principal = Principal(tid, username, "user", expand_roles([tenants[tid]]))
    request.state.principal = principal
    return principal


def revoked_sessions(request: Request) -> dict[str, float]:
    """Session cookies logged out before they expired (value -> expiry), kept by this server
    process until they expire; expired entries are dropped as new ones come."""
    st = request.app.state
    revoked: dict[str, float] | None = getattr(st, "revoked_sessions", None)
    if revoked is None:
        revoked = st.revoked_sessions = {}
    return revoked


def revoke_session(request: Request, cookie: str) -> None:
    """Log a session cookie out: it is refused from now until it expires."""
    _, settings, key = _app_parts(request)
    try:
        claims = jwt.decode(cookie, key, algorithms=[ALGORITHM],
                            audience=settings.audience + _SESSION_AUD_SUFFIX)
    except jwt.PyJWTError:
        return  # not a valid session: nothing to revoke
    revoked = revoked_sessions(request)
    now = time.time()
    for value, exp in list(revoked.items()):
        if exp <= now:
            del revoked[value]
    revoked[cookie] = float(claims["exp"])


def _app_principal(request: Request) -> Principal | None:
    """The caller when it is an app's bearer token (no state lookup needed), else None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    _, settings, key = _app_parts(request)
    claims = _decode(token.strip(), key, settings.audience)
    if claims.get("kind") == "user":
        return None
    return current_principal(request)


def _check_role(role: str) -> None:
    if role not in ROLE_ORDER:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLE_ORDER)}")


def _refuse_without(principal: Principal, role: str) -> Principal:
    if not principal.has(role):
        raise ApiError(403, "Forbidden", f"this needs the '{role}' role; "
                       f"{principal.actor} has {_best(principal.roles)} in tenant "
                       f"'{principal.tenant}'")
    return principal


APP_CHECK_SECONDS = 2.0
"""How long an app registration found alive is trusted before it is looked up again: deleting
an app revokes its tokens within this time."""


def _registered_roles(request: Request, client_id: str, tenant: str) -> list[str]:
    """The app's current roles; 401 if it was deleted (its tokens die with it)."""
    cache: dict[str, tuple[float, Any]] = request.app.state.app_registrations
    now = time.monotonic()
    hit = cache.get(client_id)
    if hit is None or now - hit[0] >= APP_CHECK_SECONDS:
        try:
            info = request.app.state.state.get_app(client_id)
        except HuntsmanError:
            info = None
        cache[client_id] = hit = (now, info)
    info = hit[1]
    if info is None or info.tenant != tenant:
        raise _unauthorized("the app registration of this token no longer exists")
    return list(info.roles)


def require(role: str) -> Callable[[Request], Principal]:
    """A dependency giving the caller, refusing (403) callers without ``role``; a plain
    function, also callable directly: ``require("viewer")(request)``."""
    _check_role(role)

    def dependency(request: Request) -> Principal:
        return _refuse_without(current_principal(request), role)

    dependency.__name__ = f"require_{role}"
    return dependency


def require_async(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """:func:`require` as an async dependency: an app's token is checked on the event loop
    (it needs no I/O, so no thread hop); users' rights are read on the thread pool."""
    _check_role(role)

    async def dependency(request: Request) -> Principal:
        principal = _app_principal(request)
        if principal is None:
            principal = await run_in_threadpool(current_principal, request)
        return _refuse_without(principal, role)

    dependency.__name__ = f"require_{role}"
    return dependency


def _best(roles: frozenset[str]) -> str:
    held = [r for r in ROLE_ORDER if r in roles]
    return f"'{held[-1]}'" if held else "no role"
