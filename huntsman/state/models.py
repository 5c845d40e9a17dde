"""The application-state tables as SQLAlchemy 2 typed models.

Every row that belongs to a tenant carries ``tenant_id`` (a foreign key that cascades on
delete), and every service method filters on it: one tenant's rows are never reachable through
another. Timestamps are stored as naive UTC and come back timezone-aware (``UTCDateTime``), the
same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as naive UTC and returned timezone-aware."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store: pass a UTC-aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    # Named constraints, so that migrations name them the same on every database.
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Limits (see huntsman.state.info.Limits for the defaults and their origin).
    lookback_days: Mapped[int | None] = mapped_column(Integer, nullable=True, default=30)
    max_rows_portal: Mapped[int] = mapped_column(Integer, default=30_000)
    max_rows_api: Mapped[int] = mapped_column(Integer, default=100_000)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=600)
    cpu_quota_seconds: Mapped[int] = mapped_column(Integer, default=600)
    cpu_window_seconds: Mapped[int] = mapped_column(Integer, default=900)
    requests_per_minute: Mapped[int] = mapped_column(Integer, default=45)
    requests_per_hour: Mapped[int] = mapped_column(Integer, default=1500)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str] = mapped_column(String(256), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    """A user's role in one tenant."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))


class AppRegistration(Base):
    """An app (client credentials): ``secret_hash`` is the SHA-256 of a 32-byte random secret."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    client_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")


class SavedQuery(Base):
    """A saved query; ``scope`` is ``"shared"`` or ``"user:<owner>"`` so that names are unique
    per (tenant, scope, folder)."""

    __tablename__ = "saved_queries"
    __table_args__ = (UniqueConstraint("tenant_id", "scope", "folder", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           index=True)
    scope: Mapped[str] = mapped_column(String(160))
    owner: Mapped[str] = mapped_column(String(128))
    folder: Mapped[str] = mapped_column(String(256), default="")
    name: Mapped[str] = mapped_column(String(256))
    query: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class SavedFunction(Base):
    """A saved KQL function; ``parameters`` is a JSON list of ``[name, type, default|null]``."""

    __tablename__ = "saved_functions"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    parameters: Mapped[list[Any]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class AuditRecord(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512), default="")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    query_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class UsageRecord(Base):
    """Engine CPU time one query used, for the tenant's rolling CPU quota."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    principal: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cpu_seconds: Mapped[float] = mapped_column(Float)


class Setting(Base):
    """Server-wide key/value settings (the JWT signing key)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
