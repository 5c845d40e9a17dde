"""Continuous (NRT) rules: evaluated on every committed batch of their table, only that batch.

:class:`ContinuousEvaluator` listens to the commits of each tenant's store that has continuous
rules (``Database.add_commit_listener``). When a batch commits, its rows of a table are put in a
scratch in-memory store, every continuous rule on that table runs over them there, and the rows
are removed; matches become alerts (with the same dedup and grouping as scheduled runs) before
the ingest call returns, so an ingested event is a queryable alert at once.

Rule health is written when a rule raised alerts or failed, and otherwise at most every
``health_interval`` seconds per rule (a write per batch per rule would cost more than the rule).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from huntsman.backends.base import INGESTION_TIME
from huntsman.detections.model import Rule
from huntsman.detections.service import DetectionService, RunResult
from huntsman.detections.validate import check_nrt
from huntsman.errors import HuntsmanError
from huntsman.state.detections import RuleRecord
from huntsman.store.database import Database, QueryResult, QueryStats

if TYPE_CHECKING:
    from huntsman.compiler.compiler import CompiledQuery

log = logging.getLogger("huntsman.detections")
_FAR_FUTURE = datetime(9999, 1, 1)
RECOMPILE_AFTER = timedelta(seconds=60)
"""A compiled rule is reused this long (``ago()`` in a rule moves with the clock)."""


@dataclass
class _Continuous:
    record: RuleRecord
    rule: Rule
    table: str
    compiled: CompiledQuery | None = None
    compiled_at: datetime | None = None
    health_at: float = 0.0


class ContinuousEvaluator:
    """Runs the continuous rules of ``service``'s tenants on each committed batch."""

    def __init__(self, service: DetectionService, health_interval: float = 60.0):
        self.service = service
        self.health_interval = health_interval
        self._rules: dict[str, list[_Continuous]] = {}
        self._scratch = Database(threads=1)
        self._lock = threading.Lock()
        self._attached: dict[str, Database] = {}
        self.evaluated_batches = 0
        service.on_rules_changed.append(self.refresh)

    def start(self) -> ContinuousEvaluator:
        """Attach to every tenant that has continuous rules."""
        tenants = {r.tenant for r in self.service.rules() if r.frequency == "NRT"}
        for tenant in sorted(tenants):
            self.refresh(tenant)
        return self

    def close(self) -> None:
        for db in self._attached.values():
            db.remove_commit_listener(self._on_commit)
        self._attached.clear()
        self._scratch.close()

    def refresh(self, tenant: str) -> None:
        """Re-read ``tenant``'s continuous rules (after a rule changed)."""
        found = []
        for record in self.service.rules(tenant):
            if record.frequency != "NRT" or not record.enabled:
                continue
            try:
                rule = self.service.rule_of(record)
                found.append(_Continuous(record, rule, check_nrt(rule.query)))
            except HuntsmanError:
                log.exception("continuous rule %s of tenant %s is invalid; skipped",
                              record.name, tenant)
        with self._lock:
            self._rules[tenant] = found
        if found and tenant not in self._attached:
            db = self.service.database(tenant)
            db.add_commit_listener(self._on_commit)
            self._attached[tenant] = db

    def _on_commit(self, db: Database, tables: dict[str, pa.Table]) -> None:
        self.evaluate(db.name, tables)

    def evaluate(self, tenant: str, tables: dict[str, pa.Table],
                 now: datetime | None = None) -> list[RunResult]:
        """Run the tenant's continuous rules over these rows (one batch); returns each run
        that matched or failed."""
        now = now or datetime.now(UTC)
        matched: list[tuple[_Continuous, list[dict[str, Any]], float, str | None]] = []
        with self._lock:
            rules = self._rules.get(tenant, [])
            for table, data in tables.items():
                mine = [r for r in rules if r.table == table]
                if not mine or data.num_rows == 0:
                    continue
                self._scratch.backend.append(table, data)
                try:
                    for r in mine:
                        t0 = time.perf_counter()
                        try:
                            rows = self._run(r, now)
                            matched.append((r, rows, time.perf_counter() - t0, None))
                        except Exception as e:  # recorded as the rule's failure
                            matched.append((r, [], time.perf_counter() - t0, str(e)))
                finally:
                    self._scratch.backend.delete_older_than(table, INGESTION_TIME,
                                                            _FAR_FUTURE)
            self.evaluated_batches += 1
        results = []
        for r, rows, took, error in matched:
            if error is None and not rows and time.monotonic() - r.health_at \
                    < self.health_interval:
                continue
            r.health_at = time.monotonic()
            if error is not None:
                result = RunResult(r.record.id, r.record.name, now, (None, None),
                                   duration=took, error=error)
                self.service.record_result(tenant, r.record, result, None)
            else:
                result = self.service.evaluate_rows(tenant, r.record, r.rule, rows, now, took)
            results.append(result)
        return results

    def _run(self, r: _Continuous, now: datetime) -> list[dict[str, Any]]:
        if r.compiled is None or r.compiled_at is None or now - r.compiled_at > RECOMPILE_AFTER \
                or now < r.compiled_at:
            r.compiled = self._scratch.compile(r.rule.query, now)
            r.compiled_at = now
        table = self._scratch.backend.run(r.compiled)
        if table.num_rows == 0:
            return []
        return QueryResult(table, r.compiled, QueryStats()).to_dicts()
