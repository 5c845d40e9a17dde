"""The rule scheduler: runs every due scheduled rule, with a clock you can set.

``Scheduler(service).run_once(now)`` runs, one after the other, every enabled scheduled rule
whose next run is due at ``now`` (a new rule is due at once); each run sets the rule's next
run one frequency after the planned one, or one frequency after ``now`` when the scheduler is
late, so that after downtime the missed runs are made up by one run (whose lookback reaches
back to the previous run) rather than one per missed slot. :class:`SchedulerLoop` calls it
every ``interval`` seconds on a daemon thread (``huntsman serve`` starts one).

>>> from datetime import datetime, UTC
>>> from huntsman.store import Store; from huntsman.state import State
>>> import tempfile
>>> state = State("sqlite://"); _ = state.create_tenant("t")
>>> service = DetectionService(Store(tempfile.mkdtemp()), state)
>>> Scheduler(service).run_once(datetime(2026, 1, 1, tzinfo=UTC))
[]
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from huntsman.detections.model import MAX_LOOKBACK
from huntsman.detections.service import DetectionService, RunResult
from huntsman.store.retention import BackgroundJob

log = logging.getLogger("huntsman.detections")


class Scheduler:
    """Runs due rules of every tenant (see the module docstring)."""

    def __init__(self, service: DetectionService):
        self.service = service
        self.last: list[RunResult] = []
        self._pruned: datetime | None = None

    def due(self, now: datetime) -> list[tuple[str, str]]:
        """``(tenant, rule id)`` of every enabled scheduled rule due at ``now``, most overdue
        first."""
        due = []
        for r in self.service.rules():
            if not r.enabled or r.frequency == "NRT":
                continue
            if r.health.next_run_at is None or r.health.next_run_at <= now:
                due.append((r.health.next_run_at or now, r.tenant, r.id))
        due.sort(key=lambda d: d[0])
        return [(tenant, rid) for _, tenant, rid in due]

    def run_once(self, now: datetime | None = None) -> list[RunResult]:
        """Run every rule due at ``now``; returns what each run did."""
        now = now or datetime.now(UTC)
        results = []
        for tenant, rule_id in self.due(now):
            try:
                results.append(self.service.run_rule(tenant, rule_id, now))
            except Exception:  # a rule deleted meanwhile, a tenant gone: the others still run
                log.exception("could not run rule %s of tenant %s", rule_id, tenant)
        self.last = results
        self.prune(now)
        return results

    def prune(self, now: datetime) -> int:
        """Forget (at most hourly) the dedup keys of events first alerted on more than 30 days
        before ``now``: no lookback reaches them any more (an event is alerted on after it
        happened, and no run looks back further than 30 days)."""
        if self._pruned is not None and now - self._pruned < timedelta(hours=1):
            return 0
        self._pruned = now
        return self.service.db.prune_keys(now - MAX_LOOKBACK - timedelta(hours=1))


def scheduler_loop(scheduler: Scheduler, interval: float = 30.0) -> BackgroundJob:
    """A thread calling ``scheduler.run_once()`` every ``interval`` seconds (``start()`` /
    ``stop()``); a failed pass is logged and retried on the next one."""
    def failed(_: BaseException) -> None:
        log.exception("the rule scheduler's pass failed; it runs again in %ss", interval)
    return BackgroundJob(scheduler, interval, on_error=failed, name="huntsman-rule-scheduler")
