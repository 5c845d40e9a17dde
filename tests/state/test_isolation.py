"""One tenant's saved queries, functions, apps, audit and usage never show in another's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from huntsman.state import NotFoundError, State


@pytest.fixture
def two(state: State) -> State:
    for tenant in ("contoso", "fabrikam"):
        state.create_tenant(tenant)
    return state


def test_saved_queries_are_per_tenant(two: State) -> None:
    a_personal = two.create_query("contoso", "alice", name="Q", query="print 'a'")
    a_shared = two.create_query("contoso", "alice", name="S", query="print 'a'", shared=True)
    b_shared = two.create_query("fabrikam", "alice", name="S", query="print 'b'", shared=True)
    # the same user name in both tenants still sees only the tenant asked for
    assert {q.id for q in two.list_queries("contoso", "alice")} == {a_personal.id, a_shared.id}
    assert {q.id for q in two.list_queries("fabrikam", "alice")} == {b_shared.id}
    for query_id in (a_personal.id, a_shared.id):
        with pytest.raises(NotFoundError):
            two.get_query("fabrikam", "alice", query_id)
        with pytest.raises(NotFoundError):
            two.update_query("fabrikam", "alice", query_id, version=1, query="x")
        with pytest.raises(NotFoundError):
            two.delete_query("fabrikam", "alice", query_id)
    assert two.get_query("contoso", "alice", a_shared.id).query == "print 'a'"


def test_functions_are_per_tenant(two: State) -> None:
    two.create_function("contoso", "alice", name="F", body="print 'a'")
    two.create_function("fabrikam", "bob", name="F", body="print 'b'")   # same name: fine
    two.create_function("contoso", "alice", name="OnlyA", body="print 1")
    assert [f.body for f in two.stored_functions("fabrikam")] == ["print 'b'"]
    assert [f.name for f in two.list_functions("contoso")] == ["F", "OnlyA"]
    with pytest.raises(NotFoundError):
        two.get_function("fabrikam", "OnlyA")
    with pytest.raises(NotFoundError):
        two.update_function("fabrikam", "bob", "OnlyA", version=1, body="x")
    with pytest.raises(NotFoundError):
        two.delete_function("fabrikam", "bob", "OnlyA")
    two.update_function("fabrikam", "bob", "F", version=1, body="print 'b2'")
    assert two.get_function("contoso", "F").body == "print 'a'"
    assert two.get_function("contoso", "F").version == 1


def test_audit_and_usage_are_per_tenant(two: State) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    two.audit("contoso", "alice", "query.run", query_hash="a" * 64)
    two.audit("fabrikam", "bob", "query.run", query_hash="b" * 64)
    two.record_usage("contoso", "alice", 2.5)
    two.record_usage("fabrikam", "bob", 7.0)
    assert [e.actor for e in two.audit_log("contoso")] == ["alice"]
    assert [e.query_hash for e in two.audit_log("fabrikam")] == ["b" * 64]
    assert two.cpu_used("contoso", since) == pytest.approx(2.5)
    assert two.cpu_used("fabrikam", since) == pytest.approx(7.0)


def test_apps_are_per_tenant(two: State) -> None:
    a, _ = two.create_app("contoso", "sync", ["viewer"])
    assert two.list_apps("fabrikam") == []
    assert [x.client_id for x in two.list_apps("contoso")] == [a.client_id]


def test_deleting_one_tenant_leaves_the_other(two: State) -> None:
    two.create_query("fabrikam", "bob", name="Q", query="print 1", shared=True)
    two.create_function("fabrikam", "bob", name="F", body="print 1")
    two.audit("fabrikam", "bob", "x")
    two.create_query("contoso", "bob", name="Q", query="print 1", shared=True)
    two.delete_tenant("contoso")
    assert len(two.list_queries("fabrikam", "bob")) == 1
    assert len(two.list_functions("fabrikam")) == 1
    assert len(two.audit_log("fabrikam")) == 1
    with pytest.raises(NotFoundError):
        two.list_queries("contoso", "bob")
