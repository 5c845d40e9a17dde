"""Continuous (NRT) rules: evaluated on every committed batch of their table, only that batch.

:class:`ContinuousEvaluator` listens to the commits of each tenant's store that has continuous
rules (``Database.add_commit_listener``). When a batch commits, one scan of its Arrow rows
evaluates the first filter of every continuous rule on that table; the rules with candidate
rows run in full over those rows (copied into a scratch in-memory store, then removed).
Matches become alerts (with the same dedup and grouping as scheduled runs) before the ingest
call returns (or, in background mode, right after it), so an ingested event is a queryable
alert at once.

Rule health is written when a rule raised alerts or failed, and otherwise at most every
``health_interval`` seconds per rule (a write per batch per rule would cost more than the rule)
and for at most ``IDLE_HEALTH_WRITES_PER_BATCH`` idle rules per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

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
IDLE_HEALTH_WRITES_PER_BATCH = 10
"""Health writes of rules that neither matched nor failed, per batch (the others wait)."""
_ROW = "__nrt_row"
RECOMPILE_AFTER = timedelta(seconds=60)
"""A compiled rule whose SQL depends on the clock (``ago()``, ``now()``) is reused this long;
others are compiled once."""


@dataclass
class _Continuous:
    record: RuleRecord
    rule: Rule
    table: str
    compiled: CompiledQuery | None = None
    compiled_at: datetime | None = None
    prefilter: str | None = None
    filter_columns: frozenset[str] = frozenset()
    """The columns ``prefilter`` reads."""
    row_wise: bool = True
    """No window function: its result on some rows of a batch is its result on those rows
    within the whole batch."""
    health_at: float = 0.0


class ContinuousEvaluator:
    """Runs the continuous rules of ``service``'s tenants on each committed batch."""

    def __init__(self, service: DetectionService, health_interval: float = 60.0,
                 background: bool = False):
        self.service = service
        self.health_interval = health_interval
        self.background = background
        """Evaluate on a worker thread right after ``ingest`` returns (batches that queue up
        meanwhile are evaluated together), instead of inside the ingest call."""
        self._rules: dict[str, list[_Continuous]] = {}
        self._scratch = Database(threads=1)
        self._lock = threading.Lock()
        self._attached: dict[str, Database] = {}
        self._narrow: dict[tuple[str, tuple[str, ...]], str] = {}
        self.evaluated_batches = 0
        self._queue: list[tuple[str, dict[str, pa.Table]]] = []
        self._pending = 0
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stopping = False
        service.on_rules_changed.append(self.refresh)

    def start(self) -> ContinuousEvaluator:
        """Attach to every tenant that has continuous rules."""
        tenants = {r.tenant for r in self.service.rules() if r.frequency == "NRT"}
        for tenant in sorted(tenants):
            self.refresh(tenant)
        return self

    def close(self) -> None:
        """Stop listening (evaluating what is queued first)."""
        for db in self._attached.values():
            db.remove_commit_listener(self._on_commit)
        self._attached.clear()
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(60)
            self._worker = None
        self._scratch.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued batch is evaluated (background mode); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)

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
        if not self.background:
            self.evaluate(db.name, tables)
            return
        with self._cv:
            self._queue.append((db.name, tables))
            self._pending += 1
            if self._worker is None and not self._stopping:
                self._worker = threading.Thread(target=self._work, name="huntsman-nrt",
                                                daemon=True)
                self._worker.start()
            self._cv.notify_all()

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._queue) or self._stopping)
                if not self._queue:
                    return
                items, self._queue = self._queue, []
            merged: dict[str, dict[str, list[pa.Table]]] = {}
            for tenant, tables in items:
                for table, data in tables.items():
                    merged.setdefault(tenant, {}).setdefault(table, []).append(data)
            for tenant, parts in merged.items():
                try:
                    self.evaluate(tenant, {t: pa.concat_tables(p, promote_options="default")
                                           for t, p in parts.items()})
                except Exception:
                    log.exception("continuous rules of tenant %s failed on a batch", tenant)
            with self._cv:
                self._pending -= len(items)
                self._cv.notify_all()

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
                run, rows = self._candidates(table, data, mine, now)
                for r in mine:
                    if not any(r is c for c in run):   # its filter matched no row
                        matched.append((r, [], 0.0, None))
                if not run:
                    continue
                self._scratch.backend.append(table, rows)
                try:
                    for r in run:
                        t0 = time.perf_counter()
                        try:
                            found = self._run(r, now)
                            matched.append((r, found, time.perf_counter() - t0, None))
                        except Exception as e:  # recorded as the rule's failure
                            matched.append((r, [], time.perf_counter() - t0, str(e)))
                finally:
                    self._scratch.backend.delete_older_than(table, INGESTION_TIME,
                                                            _FAR_FUTURE)
            self.evaluated_batches += 1
        results = []
        idle_writes = 0
        for r, found, took, error in matched:
            if error is None and not found:
                # an idle rule's health: at most every health_interval, and a few per batch
                # (rules added together would otherwise all write in the same batch)
                if time.monotonic() - r.health_at < self.health_interval \
                        or idle_writes >= IDLE_HEALTH_WRITES_PER_BATCH:
                    continue
                idle_writes += 1
            r.health_at = time.monotonic()
            if error is not None:
                result = RunResult(r.record.id, r.record.name, now, (None, None),
                                   duration=took, error=error)
                self.service.record_result(tenant, r.record, result, None)
            else:
                result = self.service.evaluate_rows(tenant, r.record, r.rule, found, now, took)
            results.append(result)
        return results

    def _candidates(self, table: str, data: pa.Table, rules: list[_Continuous], now: datetime
                    ) -> tuple[list[_Continuous], pa.Table]:
        """The rules that may match the batch, and the rows they need to run on.

        Running a query costs milliseconds even on few rows, and copying a whole batch into
        the scratch store costs more, so only the columns the rules' first ``where`` filters
        read are copied (into a narrow scratch table), every rule's filter is evaluated there
        in one scan (``bool_or(predicate)`` per rule), and only the rules with a candidate
        row run in full, over the candidate rows only. (Sound because a continuous rule is
        row by row: a row its first filter drops cannot reach its result, and no row's result
        depends on another's; the check may let more rows through than the filter, never
        fewer.) Rules whose first step is not a filter always run; they, and rules using a
        window function, run over the whole batch."""
        checks: list[tuple[_Continuous, str]] = []
        always: list[_Continuous] = []
        for r in rules:
            self._compile(r, now)
            pred = r.prefilter
            if pred is None:
                always.append(r)
            else:
                checks.append((r, pred))
        if not checks:
            return always, data
        backend = self._scratch.backend
        narrow = self._narrow_table(table, checks)
        try:
            columns = [c for c, _ in backend.tables()[narrow] if c != _ROW]
            row = pa.array(np.arange(data.num_rows, dtype=np.int64))
            backend.append(narrow, data.select(columns).append_column(_ROW, row))
            sql = "SELECT " + ", ".join(f"bool_or({pred}) AS m{i}"
                                        for i, (_, pred) in enumerate(checks)) + \
                f" FROM {_quoted(narrow)}"
            flags = backend.execute(sql).to_pylist()[0]
            hits = [(r, pred) for i, (r, pred) in enumerate(checks) if flags.get(f"m{i}")]
            rows = data
            if hits and not always and all(r.row_wise for r, _ in hits):
                where = " OR ".join(f"({pred}) IS TRUE" for _, pred in hits)
                found = backend.execute(f"SELECT {_ROW} FROM {_quoted(narrow)} WHERE {where} "
                                        f"ORDER BY {_ROW}")
                rows = data.take(found.column(_ROW))
        except Exception:  # the combined check failed: run every rule on its own
            log.exception("the combined filter of continuous rules on %s failed", table)
            return always + [r for r, _ in checks], data
        finally:
            backend.delete_older_than(narrow, INGESTION_TIME, _FAR_FUTURE)
        return always + [r for r, _ in hits], rows

    def _narrow_table(self, table: str, checks: list[tuple[_Continuous, str]]) -> str:
        """The scratch table with the columns of ``table`` that these filters read (and a
        row number), created on first use."""
        read: set[str] = set()
        for r, _ in checks:
            read |= r.filter_columns
        columns = [(c, t) for c, t in self._scratch.backend.tables()[table] if c in read]
        key = (table, tuple(c for c, _ in columns))
        name = self._narrow.get(key)
        if name is None:
            name = f"__nrt_filter_{len(self._narrow)}"
            self._scratch.backend.create_table(name, [*columns, (_ROW, "long")])
            self._narrow[key] = name
        return name

    def _compile(self, r: _Continuous, now: datetime) -> None:
        if r.compiled is not None and r.compiled_at is None:
            return  # its SQL does not depend on the clock
        if r.compiled is None or r.compiled_at is None or now - r.compiled_at > RECOMPILE_AFTER \
                or now < r.compiled_at:
            r.compiled = self._scratch.compile(r.rule.query, now)
            r.compiled_at = now
            r.prefilter = _first_filter(r.compiled, r.table)
            # every part of a (possibly dotted) column reference: those naming a column of
            # the table are read (a name that is not one is ignored)
            r.filter_columns = frozenset() if r.prefilter is None else frozenset(
                part.name for c in sqlglot.parse_one(r.prefilter, dialect="duckdb")
                .find_all(exp.Column) for part in c.parts)
            r.row_wise = r.compiled.expression is None \
                or r.compiled.expression.find(exp.Window) is None
            if self._scratch.compile(r.rule.query, now + timedelta(days=1)).sql \
                    == r.compiled.sql:
                r.compiled_at = None

    def _run(self, r: _Continuous, now: datetime) -> list[dict[str, Any]]:
        self._compile(r, now)
        assert r.compiled is not None
        table = self._scratch.backend.run(r.compiled)
        if table.num_rows == 0:
            return []
        return QueryResult(table, r.compiled, QueryStats()).to_dicts()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_filter(compiled: CompiledQuery, table: str) -> str | None:
    """The SQL predicate of a compiled query's first step when that step is
    ``SELECT * FROM <table> WHERE <predicate>`` (else None)."""
    tree = compiled.expression
    if tree is None:
        return None
    with_ = tree.args.get("with_") or tree.args.get("with")
    ctes = with_.expressions if isinstance(with_, exp.With) else []
    select = ctes[0].this if ctes else None
    if not isinstance(select, exp.Select) or len(select.expressions) != 1 \
            or not isinstance(select.expressions[0], exp.Star):
        return None
    where = select.args.get("where")
    source = select.args.get("from_") or select.args.get("from")
    if where is None or source is None \
            or not isinstance(source.this, (exp.Table, exp.Identifier)) \
            or source.this.name != table:
        return None
    if any(select.args.get(k) for k in ("joins", "group", "having", "qualify", "limit",
                                        "order", "distinct")):
        return None
    return str(_lazy(where.this).sql(dialect="duckdb"))


def _lazy(pred: exp.Expr) -> exp.Expr:
    """A cheap filter that passes every row ``pred`` passes: its top-level AND/OR become CASE,
    which DuckDB evaluates lazily (inside an aggregate it evaluates both sides of AND/OR on
    every row), and regular-expression matches reached through AND/OR only become TRUE (each
    Unicode-class regex costs milliseconds to prepare per query; ``has`` puts a cheap ILIKE
    before its regex, which remains). A row that fails the result fails ``pred``; a NULL
    condition fails either way. Below NOT and other operators nothing changes."""
    while isinstance(pred, exp.Paren):
        pred = pred.this
    if isinstance(pred, exp.And):
        return exp.Case(ifs=[exp.If(this=_lazy(pred.left), true=_lazy(pred.right))],
                        default=exp.false())
    if isinstance(pred, exp.Or):
        return exp.Case(ifs=[exp.If(this=_lazy(pred.left), true=exp.true())],
                        default=_lazy(pred.right))
    if isinstance(pred, exp.RegexpLike) or (isinstance(pred, exp.Anonymous)
                                            and pred.name.upper() == "REGEXP_MATCHES"):
        return exp.true()
    return pred.copy()
