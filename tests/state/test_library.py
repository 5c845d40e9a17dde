"""Saved queries and functions: visibility, folders, unique names, optimistic concurrency."""

from __future__ import annotations

import pytest

from huntsman.kql.stored import StoredFunction
from huntsman.state import ConflictError, NotFoundError, State, StateError


@pytest.fixture
def lib(state: State) -> State:
    state.create_tenant("contoso")
    return state


def test_personal_and_shared_visibility(lib: State) -> None:
    mine = lib.create_query("contoso", "alice", name="Logons", query="DeviceLogonEvents",
                            folder="triage")
    shared = lib.create_query("contoso", "alice", name="Procs", query="DeviceProcessEvents",
                              shared=True, description="all processes")
    bobs = lib.create_query("contoso", "bob", name="Logons", query="DeviceLogonEvents | take 1",
                            folder="triage")
    assert not mine.shared and shared.shared
    assert (mine.owner, mine.created_by, mine.updated_by, mine.version) == \
        ("alice", "alice", "alice", 1)
    assert {q.id for q in lib.list_queries("contoso", "alice")} == {mine.id, shared.id}
    assert {q.id for q in lib.list_queries("contoso", "bob")} == {bobs.id, shared.id}
    assert lib.get_query("contoso", "bob", shared.id) == shared
    with pytest.raises(NotFoundError, match="no saved query"):
        lib.get_query("contoso", "bob", mine.id)
    with pytest.raises(NotFoundError):
        lib.update_query("contoso", "bob", mine.id, version=1, name="stolen")
    with pytest.raises(NotFoundError):
        lib.delete_query("contoso", "bob", mine.id)
    # anyone in the tenant may change a shared query; it records who
    changed = lib.update_query("contoso", "bob", shared.id, version=1, query="DeviceEvents")
    assert (changed.version, changed.updated_by, changed.created_by, changed.owner) == \
        (2, "bob", "alice", "alice")
    assert changed.updated_at >= changed.created_at == shared.created_at


def test_names_unique_per_scope_and_folder(lib: State) -> None:
    lib.create_query("contoso", "alice", name="Q", query="print 1", folder="a/b")
    with pytest.raises(ConflictError, match="personal saved query named 'Q'"):
        lib.create_query("contoso", "alice", name="Q", query="print 2", folder="/a/b/")
    lib.create_query("contoso", "alice", name="Q", query="print 2", folder="a")
    lib.create_query("contoso", "alice", name="Q", query="print 2", folder="a/b", shared=True)
    with pytest.raises(ConflictError, match="shared saved query"):
        lib.create_query("contoso", "bob", name="Q", query="print 3", folder="a/b", shared=True)
    lib.create_query("contoso", "bob", name="Q", query="print 3", folder="a/b")
    folders = sorted((q.folder, q.shared) for q in lib.list_queries("contoso", "alice"))
    assert folders == [("a", False), ("a/b", False), ("a/b", True)]


def test_update_conflicts_on_stale_version(lib: State) -> None:
    q = lib.create_query("contoso", "alice", name="Q", query="print 1")
    v2 = lib.update_query("contoso", "alice", q.id, version=1, query="print 2")
    assert v2.version == 2 and v2.query == "print 2"
    with pytest.raises(ConflictError, match="you edited version 1, it is now 2"):
        lib.update_query("contoso", "alice", q.id, version=1, query="print 3")
    assert lib.get_query("contoso", "alice", q.id).query == "print 2"
    v3 = lib.update_query("contoso", "alice", q.id, version=2, name="R", folder="x",
                          description="d", shared=True)
    assert (v3.name, v3.folder, v3.description, v3.shared, v3.version) == \
        ("R", "x", "d", True, 3)
    with pytest.raises(StateError, match="cannot change owner"):
        lib.update_query("contoso", "alice", q.id, version=3, owner="bob")
    other = lib.create_query("contoso", "alice", name="S", query="print 1", folder="x",
                             shared=True)
    with pytest.raises(ConflictError, match="already exists"):
        lib.update_query("contoso", "alice", other.id, version=1, name="R")
    lib.delete_query("contoso", "alice", q.id)
    with pytest.raises(NotFoundError):
        lib.get_query("contoso", "alice", q.id)


def test_query_validation(lib: State) -> None:
    with pytest.raises(StateError, match="query name must not be empty"):
        lib.create_query("contoso", "alice", name="  ", query="print 1")
    with pytest.raises(StateError, match="query text must not be empty"):
        lib.create_query("contoso", "alice", name="Q", query="")
    with pytest.raises(NotFoundError, match="unknown tenant"):
        lib.create_query("nope", "alice", name="Q", query="print 1")
    # lengths are checked by huntsman, not left to the database (SQLite would not check them)
    with pytest.raises(StateError, match="query name is too long"):
        lib.create_query("contoso", "alice", name="x" * 257, query="print 1")
    with pytest.raises(StateError, match="folder is too long"):
        lib.create_query("contoso", "alice", name="Q", query="print 1", folder="f" * 257)
    with pytest.raises(StateError, match="invalid principal"):
        lib.create_query("contoso", "u" * 129, name="Q", query="print 1")
    with pytest.raises(StateError, match="invalid principal"):
        lib.create_function("contoso", "", name="F", body="print 1")


def test_function_crud_and_conflicts(lib: State) -> None:
    f = lib.create_function("contoso", "alice", name="RecentLogons",
                            body="DeviceLogonEvents | where Timestamp > ago(d) | take n",
                            parameters=[("d", "timespan", "1d"), ("n", "long", "10")],
                            description="logons")
    assert f.parameters == (("d", "timespan", "1d"), ("n", "long", "10"))
    assert f.version == 1 and f.created_by == "alice"
    assert lib.get_function("contoso", "RecentLogons") == f
    with pytest.raises(ConflictError, match="function named 'RecentLogons' already exists"):
        lib.create_function("contoso", "bob", name="RecentLogons", body="print 1")
    g = lib.update_function("contoso", "bob", "RecentLogons", version=1,
                            parameters=[{"name": "n", "type": "long", "default": None}])
    assert g.parameters == (("n", "long", None),) and g.version == 2 and g.updated_by == "bob"
    assert g.body == f.body
    with pytest.raises(ConflictError, match="changed by someone else"):
        lib.update_function("contoso", "alice", "RecentLogons", version=1, body="print 2")
    with pytest.raises(StateError, match="cannot change tenant"):
        lib.update_function("contoso", "alice", "RecentLogons", version=2, tenant="X")
    lib.create_function("contoso", "alice", name="Other", body="print 1")
    with pytest.raises(ConflictError, match="'Other' already exists"):
        lib.update_function("contoso", "alice", "RecentLogons", version=2, name="Other")
    renamed = lib.update_function("contoso", "alice", "RecentLogons", version=2, name="Logons")
    assert renamed.name == "Logons" and renamed.version == 3
    assert [f.name for f in lib.list_functions("contoso")] == ["Logons", "Other"]
    lib.delete_function("contoso", "alice", "Logons")
    lib.delete_function("contoso", "alice", "Other")
    assert lib.list_functions("contoso") == []
    with pytest.raises(NotFoundError, match="no function 'RecentLogons'"):
        lib.get_function("contoso", "RecentLogons")


@pytest.mark.parametrize(("name", "parameters", "message"), [
    ("1bad", [], "invalid function name"),
    ("F", [("x y", "long", None)], "invalid name"),
    ("F", [("x", "long", None), ("X", "long", None)], "appears twice"),
    ("F", [("x", "", None)], "needs a type"),
    ("F", [("x", "long", 10)], "default must be a KQL literal"),
    ("F", [("x", "long", "1"), ("y", "long", None)], "defaults come last"),
    ("F", [("x",)], "must be \\(name, type, default\\)"),
    ("F", "x:long", "must be a list"),
])
def test_function_validation(lib: State, name: str, parameters: object, message: str) -> None:
    with pytest.raises(StateError, match=message):
        lib.create_function("contoso", "alice", name=name, body="print 1",
                            parameters=parameters)  # type: ignore[arg-type]


def test_stored_functions_compile(lib: State) -> None:
    import huntsman

    lib.create_function("contoso", "alice", name="Twice", body="print y = x * 2",
                        parameters=[("x", "long", "21")])
    functions = [StoredFunction(f.name, f.body, f.parameters, f.description)
                 for f in lib.stored_functions("contoso")]
    assert functions[0].declaration() == "let Twice = (x:long=21) { print y = x * 2 };"
    db = huntsman.connect()
    result = db.query(functions[0].declaration() + "\nTwice()")
    assert result.rows == [(42,)]
