"""Tenants and limits, users and roles, app registrations — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from huntsman.state import (
    ROLES,
    ConflictError,
    Limits,
    NotFoundError,
    State,
    StateError,
    implied_roles,
    role_includes,
)
from huntsman.state.models import AppRegistration, User

PASSWORD = "correct horse battery"


# -- tenants -----------------------------------------------------------------------------


def test_tenant_lifecycle(state: State) -> None:
    created = state.create_tenant("contoso")
    assert created.name == "contoso" and created.limits == Limits()
    state.create_tenant("fabrikam")
    assert [t.name for t in state.list_tenants()] == ["contoso", "fabrikam"]
    assert state.get_tenant("contoso").created_at == created.created_at
    assert created.created_at.tzinfo is not None
    state.delete_tenant("contoso")
    assert [t.name for t in state.list_tenants()] == ["fabrikam"]
    with pytest.raises(NotFoundError, match="unknown tenant 'contoso'"):
        state.get_tenant("contoso")
    with pytest.raises(NotFoundError, match="unknown tenant"):
        state.delete_tenant("contoso")


def test_duplicate_and_invalid_tenant_names(state: State) -> None:
    state.create_tenant("contoso")
    with pytest.raises(ConflictError, match="tenant 'contoso' already exists"):
        state.create_tenant("contoso")
    for bad in ("", "-x", "a b", "x" * 65, "../etc"):
        with pytest.raises(StateError, match="invalid tenant name"):
            state.create_tenant(bad)


def test_limits_defaults_are_defenders(state: State) -> None:
    state.create_tenant("t")
    limits = state.tenant_limits("t")
    assert (limits.lookback_days, limits.max_rows_portal, limits.max_rows_api,
            limits.timeout_seconds, limits.requests_per_minute, limits.requests_per_hour) == \
        (30, 30_000, 100_000, 600, 45, 1500)
    assert limits.cpu_window_seconds == 900


def test_set_limits(state: State) -> None:
    state.create_tenant("t")
    changed = state.set_tenant_limits("t", lookback_days=None, max_rows_api=500,
                                      timeout_seconds=5)
    assert changed == state.tenant_limits("t")
    assert (changed.lookback_days, changed.max_rows_api, changed.timeout_seconds) == \
        (None, 500, 5)
    assert changed.max_rows_portal == 30_000
    with pytest.raises(StateError, match="unknown limit 'max_rows'"):
        state.set_tenant_limits("t", max_rows=1)
    with pytest.raises(StateError, match="at least 1"):
        state.set_tenant_limits("t", timeout_seconds=0)
    with pytest.raises(StateError, match="cannot be unlimited"):
        state.set_tenant_limits("t", max_rows_api=None)
    with pytest.raises(StateError, match="whole number"):
        state.set_tenant_limits("t", max_rows_api="10")  # type: ignore[arg-type]
    assert state.tenant_limits("t").max_rows_api == 500   # failed changes changed nothing
    with pytest.raises(NotFoundError):
        state.set_tenant_limits("nope", max_rows_api=1)


# -- users and roles ---------------------------------------------------------------------


def test_roles_include_the_ones_before() -> None:
    assert ROLES == ("viewer", "analyst", "responder", "admin")
    assert implied_roles("admin") == frozenset(ROLES)
    assert implied_roles("viewer") == {"viewer"}
    assert implied_roles("root") == frozenset()
    assert role_includes("analyst", "viewer") and not role_includes("analyst", "responder")
    assert not role_includes(None, "viewer")


def test_user_password_is_argon2_and_verifies(state: State) -> None:
    user = state.create_user("alice", PASSWORD, display_name="Alice A.")
    assert user.display_name == "Alice A."
    assert state.verify_user("alice", PASSWORD) == user
    assert state.verify_user("alice", PASSWORD + "x") is None
    assert state.verify_user("bob", PASSWORD) is None
    with state._session() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "alice"))
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored


def test_set_password_and_disable(state: State) -> None:
    state.create_user("alice", PASSWORD)
    state.set_password("alice", "another secret")
    assert state.verify_user("alice", PASSWORD) is None
    assert state.verify_user("alice", "another secret") is not None
    state.set_user_disabled("alice")
    assert state.verify_user("alice", "another secret") is None
    state.set_user_disabled("alice", False)
    assert state.verify_user("alice", "another secret") is not None


def test_bad_users(state: State) -> None:
    state.create_user("alice", PASSWORD)
    with pytest.raises(ConflictError, match="user 'alice' already exists"):
        state.create_user("alice", PASSWORD)
    with pytest.raises(StateError, match="password too short"):
        state.create_user("bob", "short")
    with pytest.raises(StateError, match="invalid user name"):
        state.create_user("bob smith", PASSWORD)
    with pytest.raises(NotFoundError, match="unknown user 'carol'"):
        state.set_password("carol", PASSWORD)
    assert [u.username for u in state.list_users()] == ["alice"]


def test_grant_revoke_and_tenants(state: State) -> None:
    for t in ("contoso", "fabrikam"):
        state.create_tenant(t)
    state.create_user("alice", PASSWORD)
    state.grant("alice", "contoso", "viewer")
    state.grant("alice", "fabrikam", "admin")
    assert state.user_tenants("alice") == {"contoso": "viewer", "fabrikam": "admin"}
    state.grant("alice", "contoso", "responder")   # replaces
    assert state.user_role("alice", "contoso") == "responder"
    state.revoke("alice", "contoso")
    assert state.user_role("alice", "contoso") is None
    assert state.user_tenants("alice") == {"fabrikam": "admin"}
    with pytest.raises(NotFoundError, match="has no role"):
        state.revoke("alice", "contoso")
    with pytest.raises(StateError, match="unknown role 'root'"):
        state.grant("alice", "contoso", "root")
    with pytest.raises(NotFoundError, match="unknown tenant"):
        state.grant("alice", "nope", "viewer")
    with pytest.raises(NotFoundError, match="unknown user"):
        state.grant("bob", "contoso", "viewer")
    assert state.user_tenants("nobody") == {}


def test_deleting_a_tenant_or_user_removes_memberships(state: State) -> None:
    state.create_tenant("contoso")
    state.create_tenant("fabrikam")
    state.create_user("alice", PASSWORD)
    state.create_user("bob", PASSWORD)
    state.grant("alice", "contoso", "viewer")
    state.grant("alice", "fabrikam", "viewer")
    state.grant("bob", "contoso", "admin")
    state.delete_tenant("contoso")
    assert state.user_tenants("alice") == {"fabrikam": "viewer"}
    assert state.user_tenants("bob") == {}
    state.delete_user("alice")
    with pytest.raises(NotFoundError):
        state.get_user("alice")
    state.create_tenant("contoso")   # same name again: nothing of the old one comes back
    assert state.user_role("bob", "contoso") is None


# -- app registrations -------------------------------------------------------------------


def test_app_secret_verifies_and_is_stored_hashed(state: State) -> None:
    state.create_tenant("contoso")
    app, secret = state.create_app("contoso", "sync", ["viewer", "analyst"])
    assert app.tenant == "contoso" and app.roles == ("viewer", "analyst")
    assert len(secret) >= 43   # 32 random bytes
    assert state.verify_app(app.client_id, secret) == app
    assert state.verify_app(app.client_id, secret[:-1]) is None
    assert state.verify_app(app.client_id, "") is None
    assert state.verify_app("00000000-0000-0000-0000-000000000000", secret) is None
    with state._session() as s:
        stored = s.scalar(select(AppRegistration.secret_hash))
    assert stored == hashlib.sha256(secret.encode()).hexdigest() and secret not in stored
    other, other_secret = state.create_app("contoso", "other", ["admin"])
    assert other_secret != secret and other.client_id != app.client_id
    assert state.verify_app(app.client_id, other_secret) is None


def test_app_list_delete_and_errors(state: State) -> None:
    state.create_tenant("contoso")
    state.create_tenant("fabrikam")
    app, _ = state.create_app("contoso", "sync", ["analyst", "viewer", "analyst"])
    assert app.roles == ("viewer", "analyst")   # deduplicated, in role order
    state.create_app("fabrikam", "sync", ["viewer"])   # same name, other tenant: fine
    with pytest.raises(ConflictError, match="already exists in tenant 'contoso'"):
        state.create_app("contoso", "sync", ["viewer"])
    with pytest.raises(StateError, match="unknown role 'god'"):
        state.create_app("contoso", "x", ["god"])
    with pytest.raises(StateError, match="at least one role"):
        state.create_app("contoso", "x", [])
    with pytest.raises(NotFoundError, match="unknown tenant"):
        state.create_app("nope", "x", ["viewer"])
    assert [a.name for a in state.list_apps("contoso")] == ["sync"]
    # a tenant-scoped delete cannot reach another tenant's app
    with pytest.raises(NotFoundError):
        state.delete_app(app.client_id, tenant="fabrikam")
    state.delete_app(app.client_id, tenant="contoso")
    assert state.list_apps("contoso") == []
    with pytest.raises(NotFoundError, match="unknown app"):
        state.delete_app(app.client_id)


def test_deleting_the_tenant_revokes_its_apps(state: State) -> None:
    state.create_tenant("contoso")
    app, secret = state.create_app("contoso", "sync", ["viewer"])
    state.delete_tenant("contoso")
    assert state.verify_app(app.client_id, secret) is None


def test_weaker_password_hash_is_upgraded_on_login(state: State) -> None:
    from argon2 import PasswordHasher

    state.create_user("alice", PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with state._session() as s:
        s.scalars(select(User)).one().password_hash = weak
    assert state.verify_user("alice", PASSWORD) is not None
    with state._session() as s:
        upgraded = s.scalar(select(User.password_hash))
    assert upgraded is not None and upgraded != weak
    assert not PasswordHasher().check_needs_rehash(upgraded)
    assert state.verify_user("alice", PASSWORD) is not None
