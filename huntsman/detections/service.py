"""The detection service: saves validated rules, runs them, stores their alerts and health.

``DetectionService(store, state)`` is shared by the scheduler, the continuous (NRT) evaluator,
the CLI and the server. A run:

1. queries the tenant's store over the rule's lookback (``window=`` on the query: the service
   applies it, not the rule's text; a rule's first run looks back 30 days, a run made up after
   downtime looks back to the run before),
2. groups the rows into alerts (:func:`~huntsman.detections.alerts.group_rows`), drops the
   events that already raised an alert of the rule, keeps at most ``max_alerts_per_run``
   (150) and raises a "rule truncated" health alert when there were more,
3. stores the alerts (with their rows as evidence), hands them to ``on_alerts`` (incident
   correlation) and records the rule's health; after three failed runs in a row the rule is
   ``Failing`` and a health alert says why; it keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from huntsman.detections.alerts import Draft, group_rows
from huntsman.detections.model import (
    FIRST_RUN_LOOKBACK,
    MAX_LOOKBACK,
    Rule,
    RuleError,
    Schedule,
    rule_from_dict,
)
from huntsman.detections.validate import check_nrt, validate_rule
from huntsman.errors import HuntsmanError
from huntsman.kql.stored import StoredFunction
from huntsman.state.detections import AlertInfo, DetectionStore, NewAlert, RuleRecord

if TYPE_CHECKING:
    from huntsman.state import State
    from huntsman.store import Store
    from huntsman.store.database import Database

log = logging.getLogger("huntsman.detections")

AlertHook = Callable[[str, list[AlertInfo]], object]
"""Called with a tenant and the alerts a run stored (the incidents layer correlates them)."""
MAX_ROWS_PER_RUN = 100_000
"""Rows one run reads at most (Defender's API row cap); more mean a rule that needs narrowing."""


@dataclass
class RunResult:
    """What one run of a rule did (or, for a backtest, would have done)."""

    rule_id: str | None
    rule_name: str
    started: datetime
    window: tuple[datetime | None, datetime | None]
    duration: float = 0.0
    rows: int = 0
    alerts: list[AlertInfo] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    """The alerts as drafts (backtests stop here: nothing is stored)."""
    skipped_duplicates: int = 0
    truncated: bool = False
    error: str | None = None
    health_alert: AlertInfo | None = None


def _stored_functions(state: State, tenant: str) -> list[StoredFunction]:
    out = []
    for f in state.list_functions(tenant):
        params = tuple((str(p[0]), str(p[1]), None if len(p) < 3 or p[2] is None else str(p[2]))
                       for p in f.parameters)
        out.append(StoredFunction(f.name, f.body, params, f.description))
    return out


class DetectionService:
    """Rules of every tenant of ``store``, kept in ``state``."""

    def __init__(self, store: Store, state: State, *, on_alerts: AlertHook | None = None,
                 max_alerts_per_run: int = 150, failing_after: int = 3,
                 timeout: float | None = 600.0):
        self.store = store
        self.state = state
        self.db = DetectionStore(state)
        self.on_alerts: list[AlertHook] = [on_alerts] if on_alerts else []
        self.max_alerts_per_run = max_alerts_per_run
        self.failing_after = failing_after
        self.timeout = timeout
        self.on_rules_changed: list[Callable[[str], None]] = []
        """Called with a tenant after its rules change (the NRT evaluator re-reads them)."""
        self._run_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # ------------------------------------------------------------ rules

    def database(self, tenant: str) -> Database:
        return self.store.tenant(tenant)

    def functions(self, tenant: str) -> list[StoredFunction]:
        return _stored_functions(self.state, tenant)

    @staticmethod
    def rule_of(record: RuleRecord) -> Rule:
        return rule_from_dict(record.definition, f"rule {record.name!r}")

    def validate(self, tenant: str, rule: Rule) -> Schedule:
        """Check ``rule`` against the tenant's tables and functions (RuleError/KqlError)."""
        schedule, _ = validate_rule(rule, self.database(tenant), self.functions(tenant))
        return schedule

    def create_rule(self, tenant: str, actor: str, rule: Rule | Mapping[str, Any], *,
                    source: str = "", now: datetime | None = None) -> RuleRecord:
        """Validate and save a rule; a scheduled rule is due at once (its first run looks
        back 30 days)."""
        rule = rule if isinstance(rule, Rule) else rule_from_dict(dict(rule))
        schedule = self.validate(tenant, rule)
        record = self.db.create_rule(
            tenant, actor, name=rule.name, definition=rule.to_dict(), frequency=schedule.label,
            enabled=rule.enabled, source=source,
            next_run_at=None if schedule.continuous else (now or datetime.now(UTC)))
        self.state.audit(tenant, actor, "rule.create", target=record.name,
                         detail={"id": record.id, "frequency": schedule.label})
        self._changed(tenant)
        return record

    def update_rule(self, tenant: str, actor: str, rule_id: str,
                    changes: Mapping[str, Any], *, version: int | None = None,
                    now: datetime | None = None) -> RuleRecord:
        """Change fields of a rule (validated again as a whole)."""
        current = self.db.get_rule(tenant, rule_id)
        merged = {**current.definition, **changes}
        rule = rule_from_dict(merged, f"rule {current.name!r}")
        schedule = self.validate(tenant, rule)
        kw: dict[str, Any] = {"name": rule.name, "definition": rule.to_dict(),
                              "frequency": schedule.label, "enabled": rule.enabled}
        if schedule.label != current.frequency or ("enabled" in changes and rule.enabled
                                                   and not current.enabled):
            kw["next_run_at"] = None if schedule.continuous else (now or datetime.now(UTC))
        record = self.db.update_rule(tenant, actor, current.id, version=version, **kw)
        self.state.audit(tenant, actor, "rule.update", target=record.name,
                         detail={"id": record.id, "fields": sorted(changes)})
        self._changed(tenant)
        return record

    def delete_rule(self, tenant: str, actor: str, rule_id: str) -> None:
        record = self.db.get_rule(tenant, rule_id)
        self.db.delete_rule(tenant, record.id)
        self.state.audit(tenant, actor, "rule.delete", target=record.name,
                         detail={"id": record.id})
        self._changed(tenant)

    def _changed(self, tenant: str) -> None:
        for hook in self.on_rules_changed:
            try:
                hook(tenant)
            except Exception:
                log.exception("rule-change hook failed for tenant %s", tenant)

    # ------------------------------------------------------------ runs

    def lookback_window(self, record: RuleRecord, rule: Rule, now: datetime
                        ) -> tuple[datetime, datetime]:
        """The rows a scheduled run reads: its lookback; 30 days on the first run; after
        downtime, back to the previous run's lookback (so missed runs are made up once)."""
        schedule = rule.schedule()
        lookback = schedule.lookback or FIRST_RUN_LOOKBACK
        last = record.health.last_run_at
        if last is None:
            lookback = max(lookback, FIRST_RUN_LOOKBACK)
        elif schedule.frequency is not None and now - last > schedule.frequency:
            lookback = max(lookback, min(now - last + lookback, MAX_LOOKBACK))
        return now - lookback, now

    def run_rule(self, tenant: str, rule_id: str, now: datetime | None = None) -> RunResult:
        """Run a scheduled rule once, now (the scheduler calls this when it is due)."""
        now = now or datetime.now(UTC)
        with self._rule_lock(self.db.get_rule(tenant, rule_id).id):
            record = self.db.get_rule(tenant, rule_id)   # its health as of now, under the lock
            rule = self.rule_of(record)
            schedule = rule.schedule()
            window = self.lookback_window(record, rule, now)
            result = self._execute(tenant, record, rule, window, now)
            next_run = None
            if schedule.frequency is not None:
                planned = record.health.next_run_at
                next_run = (planned + schedule.frequency) if planned is not None else now
                if next_run <= now:
                    next_run = now + schedule.frequency
            self.record_result(tenant, record, result, next_run)
            return result

    def evaluate_rows(self, tenant: str, record: RuleRecord, rule: Rule,
                      rows: list[dict[str, Any]], now: datetime, duration: float = 0.0,
                      record_health: bool = True) -> RunResult:
        """Turn rows a continuous rule matched into alerts (the NRT evaluator calls this)."""
        result = RunResult(record.id, record.name, now, (None, None), rows=len(rows))
        self._alerts_from(tenant, record, rule, rows, result, now)
        result.duration = duration
        if record_health:
            self.record_result(tenant, record, result, None)
        return result

    def backtest(self, tenant: str, rule: Rule, since: timedelta,
                 now: datetime | None = None) -> RunResult:
        """The alerts ``rule`` would have raised over the last ``since``, raising nothing
        (one run over the whole period, without dedup against past alerts)."""
        now = now or datetime.now(UTC)
        if not rule.schedule().continuous:
            self.validate(tenant, rule)
        else:
            check_nrt(rule.query)
        window = (now - since, now)
        result = RunResult(None, rule.name, now, window)
        t0 = time.perf_counter()
        res = self.database(tenant).query(rule.query, now, functions=self.functions(tenant),
                                          window=window, timeout=self.timeout,
                                          max_rows=MAX_ROWS_PER_RUN)
        rows = res.to_dicts()
        result.rows = len(rows)
        result.drafts = group_rows(rule, rows)
        result.duration = time.perf_counter() - t0
        return result

    def _rule_lock(self, rule_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._run_locks.setdefault(rule_id, threading.Lock())

    def _execute(self, tenant: str, record: RuleRecord, rule: Rule,
                 window: tuple[datetime, datetime], now: datetime) -> RunResult:
        result = RunResult(record.id, record.name, now, window)
        t0 = time.perf_counter()
        try:
            res = self.database(tenant).query(
                rule.query, now, functions=self.functions(tenant), window=window,
                timeout=self.timeout, max_rows=MAX_ROWS_PER_RUN)
            rows = res.to_dicts()
            result.rows = len(rows)
            self._alerts_from(tenant, record, rule, rows, result, now)
        except HuntsmanError as e:
            result.error = str(e)
        except Exception as e:  # a failed run is recorded, never fatal to the scheduler
            log.exception("rule %s of tenant %s failed", record.name, tenant)
            result.error = f"internal error: {type(e).__name__}: {e}"
        result.duration = time.perf_counter() - t0
        return result

    def _alerts_from(self, tenant: str, record: RuleRecord, rule: Rule,
                     rows: list[dict[str, Any]], result: RunResult, now: datetime) -> None:
        drafts = group_rows(rule, rows, record.id)
        if not drafts:
            return
        seen = self.db.seen_keys(tenant, record.id, [k for d in drafts for k in d.keys])
        fresh: list[Draft] = []
        for d in drafts:
            keep = [(r, k) for r, k in zip(d.rows, d.keys, strict=True) if k not in seen]
            result.skipped_duplicates += len(d.rows) - len(keep)
            if not keep:
                continue
            if len(keep) < len(d.rows):
                d = group_rows(rule, [r for r, _ in keep], record.id)[0]
            fresh.append(d)
        result.drafts = fresh
        if len(fresh) > self.max_alerts_per_run:
            result.truncated = True
            fresh = fresh[: self.max_alerts_per_run]
        if not fresh:
            return
        self.db.claim_keys(tenant, record.id, [k for d in fresh for k in d.keys], at=now)
        result.alerts = self.db.create_alerts(tenant, [d.alert for d in fresh], at=now)
        if result.truncated:
            result.health_alert = self._health_alert(
                tenant, record, f"Custom detection rule '{record.name}' was truncated",
                f"The rule's run at {now.isoformat()} matched events for "
                f"{len(result.drafts)} alerts; only {self.max_alerts_per_run} (the cap per run) "
                f"were raised. The rest are raised by later runs; narrow the query so that "
                f"each run raises fewer alerts.", now)
        self._notify(tenant, result.alerts)

    def _health_alert(self, tenant: str, record: RuleRecord, title: str, description: str,
                      now: datetime) -> AlertInfo:
        alert = NewAlert(title=title, severity="Low", rule_id=record.id, rule_name=record.name,
                         kind="health", description=description, category="RuleHealth",
                         detection_source="CustomDetectionHealth")
        return self.db.create_alerts(tenant, [alert], at=now)[0]

    def _notify(self, tenant: str, alerts: list[AlertInfo]) -> None:
        for hook in self.on_alerts:
            try:
                hook(tenant, alerts)
            except Exception:
                log.exception("alert hook failed for tenant %s", tenant)

    def record_result(self, tenant: str, record: RuleRecord, result: RunResult,
                next_run: datetime | None) -> None:
        health = self.db.record_run(
            tenant, record.id, at=result.started, duration=result.duration,
            rows=result.rows, alerts=len(result.alerts), error=result.error,
            next_run_at=next_run, failing_after=self.failing_after)
        if result.error is not None and health.consecutive_failures == self.failing_after:
            result.health_alert = self._health_alert(
                tenant, record, f"Custom detection rule '{record.name}' is failing",
                f"The rule failed on {health.consecutive_failures} consecutive runs; it keeps "
                f"running and stays enabled. Last error: {result.error}", result.started)

    # ------------------------------------------------------------ reading

    def rules(self, tenant: str | None = None) -> list[RuleRecord]:
        return self.db.list_rules(tenant)

    def get_rule(self, tenant: str, rule_id: str) -> RuleRecord:
        return self.db.get_rule(tenant, rule_id)


def parse_rule(data: Rule | Mapping[str, Any]) -> Rule:
    """A Rule from a model or a mapping (RuleError names the bad field)."""
    if isinstance(data, Rule):
        return data
    if not isinstance(data, Mapping):
        raise RuleError("a rule must be a mapping of fields (name, query, ...)")
    return rule_from_dict(dict(data))


__all__ = ["AlertHook", "DetectionService", "RunResult", "parse_rule"]
