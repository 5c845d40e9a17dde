"""Detection-as-code tests: each YAML rule may carry example events that must (``match:
true``) or must not (``match: false``) raise an alert; :func:`run_rule_tests` runs them in a
scratch in-memory store, after validating the rule against it.

>>> from huntsman.detections.model import Rule, RuleTest
>>> rule = Rule(name="r", query='DeviceProcessEvents | where FileName == "evil.exe"',
...             tests=[RuleTest(match=True, events={"DeviceProcessEvents": [
...                 {"Timestamp": "2026-01-01T00:00:00Z", "DeviceId": "d", "ReportId": 1,
...                  "FileName": "evil.exe"}]})])
>>> [(o.passed, o.alerts) for o in run_rule_tests(rule)]
[(True, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from huntsman.backends.base import INGESTION_TIME
from huntsman.detections.alerts import group_rows
from huntsman.detections.model import Rule
from huntsman.detections.validate import validate_rule
from huntsman.store.database import Database

_FAR_FUTURE = datetime(9999, 1, 1)


@dataclass
class ExampleOutcome:
    """One example's result: ``passed`` when the rule raised alerts exactly if it should."""

    rule: str
    name: str
    expected_match: bool
    alerts: int
    rows: int
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and (self.alerts > 0) == self.expected_match


def run_rule_tests(rule: Rule, db: Database | None = None) -> list[ExampleOutcome]:
    """Run the rule's examples (an empty list when it has none). The rule is validated first;
    a rule that does not validate fails every example with the reason."""
    own = db is None
    db = db or Database()
    try:
        outcomes = []
        try:
            validate_rule(rule, db)
        except Exception as e:
            return [ExampleOutcome(rule.name, t.name or f"example {i}", t.match, 0, 0, str(e))
                    for i, t in enumerate(rule.tests, 1)]
        for i, test in enumerate(rule.tests, 1):
            name = test.name or f"example {i}"
            try:
                latest = None
                for table, rows in test.events.items():
                    db.ingest(table, rows)
                    r = db.query(f"['{table}'] | summarize max(Timestamp)") \
                        if ("Timestamp", "datetime") in db.tables().get(table, []) else None
                    t = r.rows[0][0] if r is not None and r.rows else None
                    if t is not None and (latest is None or t > latest):
                        latest = t
                # the rule's clock: just after the examples, so that ago() sees them
                now = (latest + timedelta(minutes=1)) if latest else datetime.now(UTC)
                result = db.query(rule.query, now)
                rows_ = result.to_dicts()
                outcomes.append(ExampleOutcome(rule.name, name, test.match,
                                            len(group_rows(rule, rows_)), len(rows_)))
            except Exception as e:
                outcomes.append(ExampleOutcome(rule.name, name, test.match, 0, 0, str(e)))
            finally:
                for table in test.events:
                    if db.has_table(table):
                        db.backend.delete_older_than(table, INGESTION_TIME, _FAR_FUTURE)
        return outcomes
    finally:
        if own:
            db.close()
