"""The detection tables on SQLite and PostgreSQL (the state tests' servers and fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from huntsman.incidents.odata import parse_filter
from huntsman.state import State
from huntsman.state.db import alembic_config, current_revision, head_revision
from huntsman.state.detections import ALERT_FIELDS, DetectionStore, NewAlert
from huntsman.state.errors import ConflictError, NotFoundError
from tests.state.conftest import backend, new_database_url, postgres, state_url  # noqa: F401

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_rules_alerts_incidents(state_url: str) -> None:  # noqa: F811
    with State(state_url) as st:
        st.create_tenant("a")
        st.create_tenant("b")
        ds = DetectionStore(st)
        rule = ds.create_rule("a", "alice", name="R", definition={"query": "T"}, frequency="1h",
                              next_run_at=T0)
        with pytest.raises(ConflictError, match="already exists"):
            ds.create_rule("a", "alice", name="R", definition={}, frequency="1h")
        with pytest.raises(ConflictError, match="version 1, not 7"):
            ds.update_rule("a", "bob", rule.id, version=7, enabled=False)
        assert ds.update_rule("a", "bob", "R", version=1, enabled=False).version == 2
        with pytest.raises(NotFoundError):
            ds.get_rule("b", rule.id)            # another tenant's rule is invisible
        assert ds.claim_keys("a", rule.id, ["k1", "k2"], at=T0) == {"k1", "k2"}
        assert ds.claim_keys("a", rule.id, ["k2", "k3"], at=T0) == {"k3"}
        alerts = ds.create_alerts("a", [
            NewAlert(title=f"t{i}", severity=sev, rule_id=rule.id, rule_name="R",
                     entities=[{"kind": "device", "value": "DEV1", "column": "DeviceId"}],
                     evidence=[{"ReportId": i}], last_event_time=T0 + timedelta(hours=i))
            for i, sev in enumerate(("low", "High"))], at=T0)
        assert [a.severity for a in alerts] == ["Low", "High"]
        assert ds.correlated_incident("a", [("device", "dev1")], T0) is None  # none open yet
        inc = ds.create_incident("a", name="I", severity="Low", alert_ids=[alerts[0].id])
        assert ds.correlated_incident("a", [("device", "dev1")], T0 - timedelta(hours=1)) \
            == inc.id
        assert ds.correlated_incident("b", [("device", "dev1")], T0) is None
        inc = ds.add_alerts_to_incident("a", inc.id, [alerts[1].id])
        assert inc.severity == "High" and inc.last_activity == T0 + timedelta(hours=1)
        where = parse_filter(f"severity eq 'High' and lastEventTime ge "
                             f"{(T0 + timedelta(minutes=30)).isoformat()}", ALERT_FIELDS)
        page = ds.list_alerts("a", where=where)
        assert [a.title for a in page.items] == ["t1"] and page.total == 1
        assert ds.list_alerts("b").total == 0
        ds.update_alert("a", alerts[0].id, "bob", status="Resolved", comment="fp")
        assert ds.get_alert("a", alerts[0].id).resolved_at is not None
        ds.delete_rule("a", rule.id)
        assert ds.get_alert("a", alerts[0].id).rule_name == "R"   # alerts outlive the rule
        assert ds.claim_keys("a", rule.id, ["k1"]) == {"k1"}


def test_migration_down_and_up(state_url: str) -> None:  # noqa: F811
    from alembic import command
    with State(state_url) as st:
        assert current_revision(st.engine) == head_revision()
        command.downgrade(alembic_config(st.engine), "0001")
        assert current_revision(st.engine) == "0001"
        command.upgrade(alembic_config(st.engine), "head")
        st.create_tenant("a")
        DetectionStore(st).create_rule("a", "x", name="R", definition={}, frequency="1h")
