"""Per-request work the server saves: audit events written in batches, tokens verified once."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from huntsman.hunting.service import Recorder
from huntsman.server.auth import _decode, issue_app_token
from huntsman.server.errors import ApiError
from huntsman.server.settings import ServerSettings
from huntsman.state import State


def test_audit_events_are_written_together_in_order(tmp_path: Path) -> None:
    state = State(data_dir=tmp_path)
    state.create_tenant("t")
    rec = Recorder(state, usage_interval=3600, audit_interval=3600)
    before = datetime.now(UTC)
    for i in range(4):
        rec.audit("t", "app:x", "query.run", target="api", detail={"i": i}, query_hash="h")
    rec.audit("gone", "app:x", "query.run", detail={"i": 99})  # an unknown tenant
    rec.audit("t", "app:x", "query.run", detail={"i": 4})
    queued = datetime.now(UTC)
    time.sleep(0.2)
    assert state.audit_log("t", action="query.run") == []  # held for the batch
    rec.flush()
    events = state.audit_log("t", action="query.run")
    assert [e.detail["i"] for e in events if e.detail] == [4, 3, 2, 1, 0]  # the bad one alone lost
    assert all(before <= e.at.replace(tzinfo=e.at.tzinfo or UTC) <= queued for e in events)
    rec.close()
    state.close()


def test_state_audit_many_is_all_or_nothing(tmp_path: Path) -> None:
    from huntsman.state import AuditEvent, StateError
    state = State(data_dir=tmp_path)
    state.create_tenant("t")
    now = datetime.now(UTC)
    good = AuditEvent(0, "t", now, "user:a", "x.done", "", {"n": 1}, None)
    with pytest.raises(StateError, match="not JSON"):
        state.audit_many([good, AuditEvent(0, "t", now, "user:a", "x.done", "", {"s": {1}},
                                           None)])
    assert state.audit_log("t") == []
    state.audit_many([good, good])
    assert len(state.audit_log("t")) == 2
    state.close()


def test_a_verified_token_is_remembered_only_until_it_expires() -> None:
    settings = ServerSettings(token_ttl=3600)
    key = b"k" * 32
    token, _ = issue_app_token(key, settings, tenant="t", client_id="c", roles=["viewer"],
                               now=time.time() - 3599)  # expires within a second
    claims = _decode(token, key, settings.audience)
    assert _decode(token, key, settings.audience) is claims  # the second time from memory
    with pytest.raises(ApiError) as wrong_key:
        _decode(token, b"x" * 32, settings.audience)
    assert wrong_key.value.status == 401
    with pytest.raises(ApiError) as other_audience:
        _decode(token, key, "someone-else")
    assert "audience" in other_audience.value.message
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.05)
    with pytest.raises(ApiError) as expired:
        _decode(token, key, settings.audience)
    assert expired.value.status == 401 and "expired" in expired.value.message
