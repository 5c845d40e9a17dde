"""The hunting service on its own: rate windows, the background recorder, the lookback window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huntsman.hunting.hints import usage_level
from huntsman.hunting.service import QuotaExceededError, Recorder, _RateLimiter
from huntsman.state import Limits, State


def test_rate_limiter_windows() -> None:
    rl = _RateLimiter()
    key = ("t", "app a")
    for i in range(3):
        rl.hit(key, 3, 10, now=100.0 + i)
    with pytest.raises(QuotaExceededError) as e:
        rl.hit(key, 3, 10, now=110.0)
    assert e.value.limit == "requests_per_minute"
    assert e.value.retry_after == pytest.approx(50.0)  # the first hit (t=100) ages out at 160
    rl.hit(key, 3, 10, now=160.5)  # one minute later there is room again
    rl.hit(("t", "app b"), 3, 10, now=110.0)  # other apps have their own counters
    for i in range(6):
        rl.hit(key, 100, 10, now=300.0 + 61 * i)
    with pytest.raises(QuotaExceededError) as e:
        rl.hit(key, 100, 10, now=700.0)
    assert e.value.limit == "requests_per_hour"


def test_usage_level() -> None:
    assert usage_level(0.0, 600, window_cpu=0.0) == "low"
    assert usage_level(6.0, 600, window_cpu=6.0) == "medium"
    assert usage_level(60.0, 600, window_cpu=60.0) == "high"
    assert usage_level(0.1, 600, window_cpu=490) == "high"
    assert usage_level(0.1, 0, window_cpu=0.1) == "high"


def test_recorder_writes_audit_in_order_and_sums_usage(tmp_path: Path) -> None:
    state = State(data_dir=tmp_path)
    state.create_tenant("t")
    rec = Recorder(state, usage_interval=3600)
    now = datetime.now(UTC)
    for i in range(5):
        rec.audit("t", "app:x", "query.run", target="api", detail={"i": i}, query_hash="h")
        rec.record_usage("t", "app:x", 0.5, at=now)
    rec.record_usage("t", "app:y", 2.0, at=now)
    rec.flush()
    events = state.audit_log("t", action="query.run")
    assert [e.detail["i"] for e in events if e.detail] == [4, 3, 2, 1, 0]
    assert state.cpu_used("t", now - timedelta(minutes=1)) == pytest.approx(4.5)
    rec.record_usage("t", "app:x", 1.0, at=now)
    rec.close()  # closing writes what is pending
    assert state.cpu_used("t", now - timedelta(minutes=1)) == pytest.approx(5.5)
    state.close()


def test_window_follows_lookback_and_timespan(tmp_path: Path) -> None:
    from huntsman.hunting.service import HuntingService
    from huntsman.store import Store
    state, store = State(data_dir=tmp_path), Store(tmp_path)
    svc = HuntingService(store, state)
    now = datetime(2024, 5, 1, tzinfo=UTC)
    assert svc.window(Limits(), now, None) == (now - timedelta(days=30), None)
    assert svc.window(Limits(lookback_days=None), now, None) == (None, None)
    assert svc.window(Limits(), now, timedelta(hours=2)) == (now - timedelta(hours=2), None)
    assert svc.window(Limits(lookback_days=1), now, timedelta(days=9)) == \
        (now - timedelta(days=1), None)
    svc.close()
    store.close()
    state.close()


def test_setup_demo_once(tmp_path: Path) -> None:
    from huntsman.server.serve import CREDENTIALS_FILE, setup_demo
    from huntsman.store import Store
    state, store = State(data_dir=tmp_path), Store(tmp_path)
    first = setup_demo(tmp_path, state, store, devices=2, days=1)
    rows = store.tenant("demo").query("DeviceInfo | count").rows[0][0]
    assert rows > 0
    assert setup_demo(tmp_path, state, store, devices=2, days=1) == first  # reused
    (tmp_path / CREDENTIALS_FILE).unlink()  # lost: new secrets, the data is not loaded again
    second = setup_demo(tmp_path, state, store, devices=2, days=1)
    assert second["client_id"] != first["client_id"]
    assert state.verify_app(first["client_id"], first["client_secret"]) is None
    assert state.verify_app(second["client_id"], second["client_secret"]) is not None
    assert state.verify_user("admin", second["password"]) is not None
    assert store.tenant("demo").query("DeviceInfo | count").rows[0][0] == rows
    store.close()
    state.close()
