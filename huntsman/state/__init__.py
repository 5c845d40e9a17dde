"""Application state (tenants, users, apps, saved queries, functions, audit): SQLAlchemy +
Alembic, on SQLite by default and PostgreSQL in production.

>>> from huntsman.state import State
>>> state = State("sqlite://")
>>> state.create_tenant("contoso").limits.lookback_days
30
"""

from huntsman.state.errors import AuthError, ConflictError, NotFoundError, StateError
from huntsman.state.info import (
    ROLES,
    AppInfo,
    AuditEvent,
    FunctionInfo,
    Limits,
    SavedQueryInfo,
    TenantInfo,
    UserInfo,
    implied_roles,
    role_includes,
)
from huntsman.state.service import State

__all__ = [
    "ROLES", "AppInfo", "AuditEvent", "AuthError", "ConflictError", "FunctionInfo", "Limits",
    "NotFoundError", "SavedQueryInfo", "State", "StateError", "TenantInfo", "UserInfo",
    "implied_roles", "role_includes",
]
