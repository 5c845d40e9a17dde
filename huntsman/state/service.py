"""The application-state service: tenants and their limits, users, app registrations, audit,
CPU usage and the server's signing key. Saved queries and functions are in ``library.py``.

>>> state = State("sqlite://")                 # in memory; State(data_dir="data") for the file
>>> _ = state.create_tenant("contoso")
>>> state.tenant_limits("contoso").max_rows_api
100000
>>> _ = state.create_user("alice", "correct horse battery staple")
>>> state.grant("alice", "contoso", "analyst")
>>> state.user_tenants("alice")
{'contoso': 'analyst'}
>>> state.verify_user("alice", "wrong") is None
True
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from huntsman.state.base import (
    check_aware,
    check_role,
    check_tenant_name,
    check_text,
    check_username,
)
from huntsman.state.errors import NotFoundError, StateError
from huntsman.state.info import ROLES, AppInfo, AuditEvent, Limits, TenantInfo, UserInfo
from huntsman.state.library import Library
from huntsman.state.models import (
    AppRegistration,
    AuditRecord,
    Membership,
    Setting,
    Tenant,
    UsageRecord,
    User,
    utcnow,
)

_SIGNING_KEY = "jwt_signing_key"
USAGE_KEPT_SECONDS = 86_400
"""Usage records are kept at least a day (longer if a tenant's CPU window is longer)."""
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that a wrong name costs as long as a
    wrong password and login timing does not reveal which user names exist. (Made on first
    use: hashing costs a good fraction of a second.)"""
    return _hasher.hash("huntsman: no such user")


def _secret_hash(secret: str) -> str:
    # App secrets are 32 random bytes (256 bits): no guessing attack needs a slow hash, so a
    # SHA-256 suffices and keeps token requests cheap; passwords (chosen by people) get argon2.
    return hashlib.sha256(secret.encode()).hexdigest()


def _limits(t: Tenant) -> Limits:
    return Limits(**{name: getattr(t, name) for name in Limits.names()})


def _tenant_info(t: Tenant) -> TenantInfo:
    return TenantInfo(name=t.name, created_at=t.created_at, limits=_limits(t))


def _user_info(u: User) -> UserInfo:
    return UserInfo(username=u.username, display_name=u.display_name, created_at=u.created_at,
                    disabled=u.disabled)


def _app_info(a: AppRegistration, tenant: str) -> AppInfo:
    return AppInfo(client_id=a.client_id, tenant=tenant, name=a.name, roles=tuple(a.roles),
                   created_at=a.created_at, created_by=a.created_by)


def _check_limit(name: str, value: Any) -> int | None:
    if name not in Limits.names():
        raise StateError(f"unknown limit {name!r}: use one of {', '.join(Limits.names())}")
    if value is None:
        if name != "lookback_days":
            raise StateError(f"limit {name} cannot be unlimited (only lookback_days can)")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StateError(f"limit {name} must be a whole number of at least 1, not {value!r}")
    return value


class State(Library):
    """Application state in SQLite (default ``<data_dir>/state.sqlite``) or any SQLAlchemy URL,
    e.g. ``postgresql+psycopg://user@host/db``. Creating it migrates the database to head."""

    # -- tenants ---------------------------------------------------------------------------

    def create_tenant(self, name: str) -> TenantInfo:
        check_tenant_name(name)
        with self._session(conflict=f"tenant {name!r} already exists") as s:
            tenant = Tenant(name=name, created_at=utcnow(), **Limits().to_dict())
            s.add(tenant)
            s.flush()
            return _tenant_info(tenant)

    def get_tenant(self, name: str) -> TenantInfo:
        with self._session() as s:
            return _tenant_info(self._tenant(s, name))

    def list_tenants(self) -> list[TenantInfo]:
        with self._session() as s:
            return [_tenant_info(t) for t in s.scalars(select(Tenant).order_by(Tenant.name))]

    def delete_tenant(self, name: str) -> None:
        """Delete the tenant and everything of it in the state (memberships, apps, saved
        queries and functions, audit, usage); users themselves remain."""
        with self._session() as s:
            tenant = self._tenant(s, name)
            s.execute(delete(Tenant).where(Tenant.id == tenant.id))

    def tenant_limits(self, name: str) -> Limits:
        with self._session() as s:
            return _limits(self._tenant(s, name))

    def set_tenant_limits(self, name: str, **changes: int | None) -> Limits:
        """Change some limits (``lookback_days=None`` is unlimited); returns all of them.

        >>> s = State("sqlite://"); _ = s.create_tenant("t")
        >>> s.set_tenant_limits("t", lookback_days=None, max_rows_api=500).max_rows_api
        500
        """
        checked = {key: _check_limit(key, value) for key, value in changes.items()}
        with self._session() as s:
            tenant = self._tenant(s, name)
            for key, value in checked.items():
                setattr(tenant, key, value)
            s.flush()
            return _limits(tenant)

    # -- users -----------------------------------------------------------------------------

    def create_user(self, username: str, password: str,
                    display_name: str | None = None) -> UserInfo:
        check_username(username)
        self._check_password(password)
        shown = check_text("display name", display_name or username, max_len=256)
        with self._session(conflict=f"user {username!r} already exists") as s:
            user = User(username=username, display_name=shown,
                        password_hash=_hasher.hash(password), created_at=utcnow())
            s.add(user)
            s.flush()
            return _user_info(user)

    @staticmethod
    def _check_password(password: str) -> None:
        if not isinstance(password, str) or len(password) < 8:
            raise StateError("password too short: use at least 8 characters")
        if len(password) > 1024:
            raise StateError("password too long: use at most 1024 characters")

    def get_user(self, username: str) -> UserInfo:
        with self._session() as s:
            return _user_info(self._user(s, username))

    def list_users(self) -> list[UserInfo]:
        with self._session() as s:
            return [_user_info(u) for u in s.scalars(select(User).order_by(User.username))]

    def delete_user(self, username: str) -> None:
        with self._session() as s:
            user = self._user(s, username)
            s.execute(delete(User).where(User.id == user.id))

    def set_user_disabled(self, username: str, disabled: bool = True) -> UserInfo:
        with self._session() as s:
            user = self._user(s, username)
            user.disabled = disabled
            return _user_info(user)

    @staticmethod
    def _user(s: Any, username: str) -> User:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFoundError(f"unknown user {username!r}")
        return user  # type: ignore[no-any-return]

    def verify_user(self, username: str, password: str) -> UserInfo | None:
        """The user when the password is right and the user is enabled, else None."""
        with self._session() as s:
            user = s.scalar(select(User).where(User.username == username))
        # Hash outside the session: argon2 takes a good fraction of a second, during which a
        # pooled connection should not be held.
        stored = user.password_hash if user is not None else _dummy_hash()
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _hasher.check_needs_rehash(stored):   # the hashing parameters were raised since
            with self._session() as s:
                s.execute(update(User).where(User.id == user.id, User.password_hash == stored)
                          .values(password_hash=_hasher.hash(password)))
        return _user_info(user)

    def set_password(self, username: str, password: str) -> None:
        self._check_password(password)
        with self._session() as s:
            self._user(s, username).password_hash = _hasher.hash(password)

    def grant(self, username: str, tenant: str, role: str) -> None:
        """Give the user ``role`` in ``tenant`` (replacing any role they had there)."""
        check_role(role)
        with self._session() as s:
            user = self._user(s, username)
            t = self._tenant(s, tenant)
            member = s.get(Membership, (user.id, t.id))
            if member is None:
                s.add(Membership(user_id=user.id, tenant_id=t.id, role=role))
            else:
                member.role = role

    def revoke(self, username: str, tenant: str) -> None:
        with self._session() as s:
            user = self._user(s, username)
            t = self._tenant(s, tenant)
            member = s.get(Membership, (user.id, t.id))
            if member is None:
                raise NotFoundError(f"user {username!r} has no role in tenant {tenant!r}")
            s.delete(member)

    def user_role(self, username: str, tenant: str) -> str | None:
        with self._session() as s:
            return s.scalar(select(Membership.role)
                            .join(User, User.id == Membership.user_id)
                            .join(Tenant, Tenant.id == Membership.tenant_id)
                            .where(User.username == username, Tenant.name == tenant))

    def user_tenants(self, username: str) -> dict[str, str]:
        """``{tenant: role}`` for every tenant the user may use."""
        with self._session() as s:
            rows = s.execute(select(Tenant.name, Membership.role)
                             .join(Membership, Membership.tenant_id == Tenant.id)
                             .join(User, User.id == Membership.user_id)
                             .where(User.username == username).order_by(Tenant.name))
            return {name: role for name, role in rows}

    # -- app registrations -----------------------------------------------------------------

    def create_app(self, tenant: str, name: str, roles: Sequence[str],
                   created_by: str = "") -> tuple[AppInfo, str]:
        """Register an app; returns it and its secret, which is shown this once only."""
        name = check_text("app name", name, max_len=128)
        if isinstance(roles, str):
            roles = [roles]
        if not roles:
            raise StateError("an app needs at least one role")
        clean = tuple(sorted({check_role(r) for r in roles}, key=ROLES.index))
        secret = secrets.token_urlsafe(32)
        with self._session(conflict=f"an app named {name!r} already exists in tenant "
                                    f"{tenant!r}") as s:
            t = self._tenant(s, tenant)
            app = AppRegistration(client_id=str(uuid.uuid4()), tenant_id=t.id, name=name,
                                  secret_hash=_secret_hash(secret), roles=list(clean),
                                  created_at=utcnow(), created_by=created_by)
            s.add(app)
            s.flush()
            return _app_info(app, t.name), secret

    def verify_app(self, client_id: str, secret: str) -> AppInfo | None:
        """The app when ``secret`` is its secret, else None."""
        if not isinstance(client_id, str) or not isinstance(secret, str):
            return None
        with self._session() as s:
            row = s.execute(select(AppRegistration, Tenant.name)
                            .join(Tenant, Tenant.id == AppRegistration.tenant_id)
                            .where(AppRegistration.client_id == client_id)).first()
            if row is None:
                hmac.compare_digest(_secret_hash(secret), _secret_hash(""))  # same work
                return None
            app, tenant = row
            if not hmac.compare_digest(app.secret_hash, _secret_hash(secret)):
                return None
            return _app_info(app, tenant)

    def get_app(self, client_id: str) -> AppInfo:
        with self._session() as s:
            row = s.execute(select(AppRegistration, Tenant.name)
                            .join(Tenant, Tenant.id == AppRegistration.tenant_id)
                            .where(AppRegistration.client_id == client_id)).first()
            if row is None:
                raise NotFoundError(f"unknown app {client_id!r}")
            return _app_info(row[0], row[1])

    def list_apps(self, tenant: str) -> list[AppInfo]:
        with self._session() as s:
            t = self._tenant(s, tenant)
            apps = s.scalars(select(AppRegistration).where(AppRegistration.tenant_id == t.id)
                             .order_by(AppRegistration.name))
            return [_app_info(a, t.name) for a in apps]

    def delete_app(self, client_id: str, tenant: str | None = None) -> None:
        """Delete an app (only within ``tenant`` when given, so one tenant's admin cannot
        delete another's)."""
        with self._session() as s:
            query = select(AppRegistration).where(AppRegistration.client_id == client_id)
            if tenant is not None:
                query = query.where(AppRegistration.tenant_id == self._tenant(s, tenant).id)
            app = s.scalar(query)
            if app is None:
                raise NotFoundError(f"unknown app {client_id!r}")
            s.delete(app)

    # -- audit -----------------------------------------------------------------------------

    def audit(self, tenant: str, actor: str, action: str, *, target: str = "",
              detail: dict[str, Any] | None = None, query_hash: str | None = None) -> None:
        """Record that ``actor`` did ``action`` (e.g. ``query.run``, ``app.create``)."""
        self.audit_many([AuditEvent(0, tenant, utcnow(), actor, action, target, detail,
                                    query_hash)])

    def audit_many(self, events: Sequence[AuditEvent]) -> None:
        """Record several audit events in one transaction (all or none; ``id`` is ignored):
        the hunting service's background writer batches them so."""
        for e in events:
            check_aware("audit time", e.at)
            if e.detail is not None:
                try:
                    json.dumps(e.detail)
                except (TypeError, ValueError) as err:
                    raise StateError(f"audit detail is not JSON: {err}") from err
        with self._session() as s:
            tenant_ids: dict[str, int] = {}
            for e in events:
                if e.tenant not in tenant_ids:
                    tenant_ids[e.tenant] = self._tenant(s, e.tenant).id
                s.add(AuditRecord(tenant_id=tenant_ids[e.tenant], at=e.at, actor=e.actor[:128],
                                  action=e.action[:64], target=e.target[:512], detail=e.detail,
                                  query_hash=e.query_hash))

    def audit_log(self, tenant: str, *, since: datetime | None = None, limit: int = 100,
                  action: str | None = None) -> list[AuditEvent]:
        """The tenant's audit events, newest first."""
        with self._session() as s:
            t = self._tenant(s, tenant)
            query = select(AuditRecord).where(AuditRecord.tenant_id == t.id)
            if since is not None:
                query = query.where(AuditRecord.at >= check_aware("since", since))
            if action is not None:
                query = query.where(AuditRecord.action == action)
            query = query.order_by(AuditRecord.at.desc(), AuditRecord.id.desc()).limit(limit)
            return [AuditEvent(id=r.id, tenant=t.name, at=r.at, actor=r.actor, action=r.action,
                               target=r.target, detail=r.detail, query_hash=r.query_hash)
                    for r in s.scalars(query)]

    # -- CPU usage (the rolling quota) -----------------------------------------------------

    def record_usage(self, tenant: str, principal: str, cpu_seconds: float,
                     at: datetime | None = None) -> None:
        at = utcnow() if at is None else check_aware("at", at)
        with self._session() as s:
            t = self._tenant(s, tenant)
            s.add(UsageRecord(tenant_id=t.id, principal=principal[:128],
                              at=at, cpu_seconds=float(cpu_seconds)))
            # Only the quota window is ever read: forget what is well past it (one indexed
            # delete, usually of nothing), so usage does not grow with every query forever.
            keep = timedelta(seconds=max(t.cpu_window_seconds * 2, USAGE_KEPT_SECONDS))
            s.execute(delete(UsageRecord).where(UsageRecord.tenant_id == t.id,
                                                UsageRecord.at < at - keep))

    def cpu_used(self, tenant: str, since: datetime) -> float:
        """CPU seconds the tenant's queries used from ``since`` on."""
        check_aware("since", since)
        with self._session() as s:
            t = self._tenant(s, tenant)
            total = s.scalar(select(func.coalesce(func.sum(UsageRecord.cpu_seconds), 0.0))
                             .where(UsageRecord.tenant_id == t.id, UsageRecord.at >= since))
            return float(total or 0.0)

    def prune_usage(self, before: datetime) -> int:
        """Forget usage older than ``before`` (every tenant); returns how many records."""
        check_aware("before", before)
        with self._session() as s:
            result = s.execute(delete(UsageRecord).where(UsageRecord.at < before))
            return int(getattr(result, "rowcount", 0) or 0)

    # -- server secret ---------------------------------------------------------------------

    def signing_key(self) -> bytes:
        """The server's JWT signing key: 32 random bytes made on first use and kept, so that
        tokens stay valid across restarts and across server processes sharing this state."""
        with self._session() as s:
            row = s.get(Setting, _SIGNING_KEY)
            if row is not None:
                return bytes.fromhex(row.value)
        try:
            with self._session() as s:
                s.add(Setting(key=_SIGNING_KEY, value=secrets.token_bytes(32).hex()))
        except IntegrityError:
            pass  # another process made it first: use theirs
        with self._session() as s:
            row = s.get(Setting, _SIGNING_KEY)
            if row is None:  # pragma: no cover - just inserted
                raise StateError("signing key missing")
            return bytes.fromhex(row.value)
