"""The plain values the state service returns: frozen dataclasses, never live ORM rows.

Returning copies keeps callers (the hunting service, the server) free of sessions and lazy
loading, and lets a ``State`` backed by SQLite or PostgreSQL behave identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

ROLES: tuple[str, ...] = ("viewer", "analyst", "responder", "admin")
"""Roles in increasing power; each includes every role before it."""


def implied_roles(role: str) -> frozenset[str]:
    """The role itself and every role it includes.

    >>> sorted(implied_roles("responder"))
    ['analyst', 'responder', 'viewer']
    """
    return frozenset(ROLES[: ROLES.index(role) + 1]) if role in ROLES else frozenset()


def role_includes(have: str | None, want: str) -> bool:
    """Whether role ``have`` grants what ``want`` needs.

    >>> role_includes("admin", "viewer"), role_includes("viewer", "analyst")
    (True, False)
    """
    return have is not None and want in implied_roles(have)


@dataclass(frozen=True)
class Limits:
    """A tenant's query limits; the defaults are Microsoft Defender's published ones.

    ``lookback_days`` None means unlimited. The CPU quota is ``cpu_quota_seconds`` of engine CPU
    time per rolling ``cpu_window_seconds`` (Defender's portal quota window is 15 minutes; its
    API allows 10 minutes of running time per hour, so a 15-minute window gets 600 CPU-seconds:
    one full-length query, or many small ones). Request rates are per app (or user).
    """

    lookback_days: int | None = 30
    max_rows_portal: int = 30_000
    max_rows_api: int = 100_000
    timeout_seconds: int = 600
    cpu_quota_seconds: int = 600
    cpu_window_seconds: int = 900
    requests_per_minute: int = 45
    requests_per_hour: int = 1500

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The limit names, as ``set_tenant_limits`` and ``huntsman admin tenant limits`` take."""
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in self.names()}


@dataclass(frozen=True)
class TenantInfo:
    name: str
    created_at: datetime
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class UserInfo:
    username: str
    display_name: str
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True)
class AppInfo:
    """An app registration: ``roles`` are the roles its tokens carry (within its one tenant)."""

    client_id: str
    tenant: str
    name: str
    roles: tuple[str, ...]
    created_at: datetime
    created_by: str = ""


@dataclass(frozen=True)
class SavedQueryInfo:
    """A saved query: personal to ``owner`` unless ``shared`` (then the whole tenant sees it)."""

    id: str
    tenant: str
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


@dataclass(frozen=True)
class FunctionInfo:
    """A saved KQL function; ``parameters`` are ``(name, kusto type, default literal | None)``.

    The hunting service turns it into a ``huntsman.kql.stored.StoredFunction`` (the state layer
    may not import the language).
    """

    tenant: str
    name: str
    body: str
    parameters: tuple[tuple[str, str, str | None], ...]
    description: str
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class AuditEvent:
    id: int
    tenant: str
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any] | None
    query_hash: str | None
