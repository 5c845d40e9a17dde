"""Audit log, CPU usage for the rolling quota, and the server signing key."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from huntsman.state import NotFoundError, State, StateError


@pytest.fixture
def st(state: State) -> State:
    state.create_tenant("contoso")
    return state


def test_audit_log_newest_first_with_filters(st: State) -> None:
    before = datetime.now(UTC)
    for i in range(5):
        st.audit("contoso", f"user{i}", "query.run" if i % 2 == 0 else "query.create",
                 target=f"t{i}", detail={"i": i, "tags": ["x"]}, query_hash=f"{i:064x}")
    events = st.audit_log("contoso")
    assert [e.actor for e in events] == ["user4", "user3", "user2", "user1", "user0"]
    assert events[0].detail == {"i": 4, "tags": ["x"]}
    assert events[0].query_hash == f"{4:064x}" and events[0].target == "t4"
    assert events[0].tenant == "contoso"
    assert all(e.at >= before - timedelta(seconds=1) and e.at.tzinfo for e in events)
    assert [e.actor for e in st.audit_log("contoso", limit=2)] == ["user4", "user3"]
    assert [e.actor for e in st.audit_log("contoso", action="query.create")] == \
        ["user3", "user1"]
    assert st.audit_log("contoso", since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_audit_errors(st: State) -> None:
    with pytest.raises(StateError, match="not JSON"):
        st.audit("contoso", "alice", "x", detail={"when": object()})
    with pytest.raises(NotFoundError, match="unknown tenant"):
        st.audit("nope", "alice", "x")


def test_cpu_used_in_a_window(st: State) -> None:
    now = datetime.now(UTC)
    st.record_usage("contoso", "app1", 10.0, at=now - timedelta(minutes=20))
    st.record_usage("contoso", "app1", 1.5, at=now - timedelta(minutes=10))
    st.record_usage("contoso", "alice", 0.25, at=now - timedelta(minutes=1))
    assert st.cpu_used("contoso", now - timedelta(minutes=15)) == pytest.approx(1.75)
    assert st.cpu_used("contoso", now - timedelta(hours=1)) == pytest.approx(11.75)
    assert st.cpu_used("contoso", now) == 0.0
    assert st.prune_usage(now - timedelta(minutes=15)) == 1
    assert st.cpu_used("contoso", now - timedelta(hours=1)) == pytest.approx(1.75)


def test_old_usage_is_forgotten_when_new_usage_arrives(st: State) -> None:
    now = datetime.now(UTC)
    st.record_usage("contoso", "app1", 5.0, at=now - timedelta(days=3))
    st.record_usage("contoso", "app1", 1.0, at=now - timedelta(days=2, hours=1))
    assert st.cpu_used("contoso", now - timedelta(days=7)) == pytest.approx(6.0)
    st.record_usage("contoso", "app1", 0.5, at=now - timedelta(hours=20))
    assert st.cpu_used("contoso", now - timedelta(days=7)) == pytest.approx(0.5)
    # a tenant with a longer quota window keeps its usage longer
    st.set_tenant_limits("contoso", cpu_window_seconds=3 * 86_400)
    st.record_usage("contoso", "app1", 2.0, at=now - timedelta(days=5))
    st.record_usage("contoso", "app1", 0.25, at=now)
    assert st.cpu_used("contoso", now - timedelta(days=7)) == pytest.approx(2.75)


def test_naive_datetimes_are_refused(st: State) -> None:
    with pytest.raises(StateError, match="timezone-aware"):
        st.record_usage("contoso", "x", 1.0, at=datetime(2026, 1, 1))
    with pytest.raises(StateError, match="since must be a timezone-aware"):
        st.cpu_used("contoso", datetime(2026, 1, 1))
    with pytest.raises(StateError, match="timezone-aware"):
        st.audit_log("contoso", since=datetime(2026, 1, 1))


def test_signing_key_is_made_once_and_shared(state_url: str) -> None:
    with State(state_url) as first:
        key = first.signing_key()
        assert len(key) == 32 and first.signing_key() == key
    with State(state_url) as second:
        assert second.signing_key() == key
    code = "import sys; from huntsman.state import State; print(State(sys.argv[1]).signing_key().hex())"
    out = subprocess.run([sys.executable, "-c", code, state_url], capture_output=True,
                         text=True, timeout=120, check=True).stdout.strip()
    assert out == key.hex()
