"""Real components for the detection tests: a DuckDB store per test and a SQLite state file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from huntsman.incidents.service import Detections
from huntsman.state import State
from huntsman.store import Store

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TENANT = "contoso"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    st = State(data_dir=tmp_path / "data")
    st.create_tenant(TENANT)
    yield st
    st.close()


@pytest.fixture
def det(store: Store, state: State) -> Iterator[Detections]:
    d = Detections(store, state)
    yield d
    d.close()


def proc(minutes_ago: float, report: int, device: str = "dev1", file: str = "evil.exe",
         **extra: Any) -> dict[str, Any]:
    """One DeviceProcessEvents row, ``minutes_ago`` before NOW."""
    return {"Timestamp": NOW - timedelta(minutes=minutes_ago), "DeviceId": device,
            "DeviceName": f"{device}.contoso.local", "FileName": file, "ReportId": report,
            "AccountSid": "S-1-5-21-1-2-3-1101", "ProcessCommandLine": file, **extra}


EVIL = {"name": "evil", "frequency": "1h", "severity": "High",
        "title": "evil.exe on {{DeviceName}}",
        "query": 'DeviceProcessEvents | where FileName == "evil.exe"'}
