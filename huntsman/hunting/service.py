"""The hunting service: one tenant-scoped query with the tenant's limits, usage and hints.

``HuntingService(store, state).run(caller, kql, surface="api")`` applies, in order:

1. the request rate of the calling app (``requests_per_minute`` / ``requests_per_hour``),
2. the tenant's CPU quota over its rolling window (both → :class:`QuotaExceededError`,
   which the server answers with HTTP 429 and ``Retry-After``),
3. the lookback window (``window=`` on the query: only rows of the last ``lookback_days``
   from the query's ``now``, narrowed further by a ``timespan``),
4. the tenant's stored functions (``functions=``), the row cap of the surface (30,000 in the
   portal, 100,000 in the API → ``truncated``) and the timeout,

then records the CPU time used and audits the run (who, tenant, query hash, outcome) — both
written in batches by a background thread (:class:`Recorder`), so that the answer does not wait
for them and a query costs one state write only every so often, not one each.

A tenant's limits, functions and CPU usage are cached for ``cache_seconds`` (2 s): changes made
through the service (``invalidate``) are seen at once, others (``huntsman admin``) within that.

Concurrency: DuckDB runs queries of one database on separate connections (cursors of one
instance) concurrently, and the backend keeps a pool of them per database, so requests simply
run on the server's thread pool; at most ``max_concurrent`` engine queries run at once (all
tenants together) and the rest wait their turn.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from huntsman.errors import KqlError, QueryLimitError
from huntsman.hunting.hints import Hint, UsageLevel, optimization_hints, usage_level
from huntsman.kql.stored import StoredFunction
from huntsman.state.info import AuditEvent

if TYPE_CHECKING:
    from huntsman.state import State
    from huntsman.state.info import Limits
    from huntsman.store import Store
    from huntsman.store.database import Database, QueryResult, QueryStats

log = logging.getLogger("huntsman.hunting")

Surface = Literal["portal", "api"]


class Caller(Protocol):
    """Who runs a query (the server's ``Principal`` is one)."""

    @property
    def tenant(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def kind(self) -> str: ...


class QuotaExceededError(QueryLimitError):
    """A request refused because a rate or CPU quota is spent; retry after ``retry_after`` s."""

    kind = "QuotaExceededError"

    def __init__(self, message: str, limit: str, retry_after: float):
        self.retry_after = retry_after
        super().__init__(message, limit)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after": int(self.retry_after + 0.999)}


@dataclass
class HuntingOutcome:
    """A finished query: its result, resource usage and hints."""

    result: QueryResult
    stats: QueryStats
    truncated: bool
    max_rows: int
    hints: list[Hint]
    usage_level: UsageLevel
    cpu_used: float
    """CPU-seconds the tenant has used in the current window, this query included."""
    limits: Limits
    now: datetime
    window: tuple[datetime | None, datetime | None]
    messages: list[str] = field(default_factory=list)


def query_hash(kql: str) -> str:
    """The audit log's fingerprint of a query text (SHA-256, hex).

    >>> query_hash("print 1")[:12]
    '0fe75885d4d2'
    """
    return hashlib.sha256(kql.encode("utf-8")).hexdigest()


class _RateLimiter:
    """Sliding-window request counters per (tenant, caller), in memory: one deque of the last
    minute's requests and one of the last hour's, so that each check is O(1) amortized."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], tuple[deque[float], deque[float]]] = {}
        self._lock = threading.Lock()

    def hit(self, key: tuple[str, str], per_minute: int, per_hour: int,
            now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        with self._lock:
            minute, hour = self._hits.setdefault(key, (deque(), deque()))
            while minute and minute[0] <= t - 60:
                minute.popleft()
            while hour and hour[0] <= t - 3600:
                hour.popleft()
            if len(minute) >= per_minute:
                raise QuotaExceededError(
                    f"request rate limit reached: {per_minute} queries per minute for "
                    f"{key[1]} in tenant '{key[0]}' (requests_per_minute)",
                    "requests_per_minute", minute[-per_minute] + 60 - t if per_minute else 60)
            if len(hour) >= per_hour:
                raise QuotaExceededError(
                    f"request rate limit reached: {per_hour} queries per hour for "
                    f"{key[1]} in tenant '{key[0]}' (requests_per_hour)",
                    "requests_per_hour", hour[-per_hour] + 3600 - t if per_hour else 3600)
            minute.append(t)
            hour.append(t)


class Recorder:
    """Writes audit events and CPU usage to the state on a background thread, so that a query's
    answer does not wait for them, and in batches, so that they cost little CPU: audit events
    (stamped when they happen, kept in order) are written together in one transaction at most
    every ``audit_interval`` seconds; CPU usage is summed per (tenant, principal) and written at
    most every ``usage_interval`` seconds (one record stamped with the latest query's time). Recording only appends to a deque: the writer wakes
    on its own clock, not once per query. ``flush()`` waits until everything recorded so far
    is written; the server flushes on shutdown."""

    def __init__(self, state: State, usage_interval: float = 1.0, *,
                 audit_interval: float = 0.25):
        self.state = state
        self.usage_interval = usage_interval
        self.audit_interval = audit_interval
        self._pending: deque[tuple[str, Any] | None] = deque()
        self._wake = threading.Event()
        self._usage: dict[tuple[str, str], tuple[float, datetime]] = {}
        self._usage_since: float | None = None
        self._audits: list[AuditEvent] = []
        self._audits_since: float | None = None
        self._thread = threading.Thread(target=self._work, name="huntsman-recorder",
                                        daemon=True)
        self._thread.start()

    def audit(self, tenant: str, actor: str, action: str, *, target: str = "",
              detail: dict[str, Any] | None = None, query_hash: str | None = None) -> None:
        self._pending.append(("audit", AuditEvent(0, tenant, datetime.now(UTC), actor, action,
                                                  target, detail, query_hash)))

    def record_usage(self, tenant: str, principal: str, cpu_seconds: float,
                     at: datetime) -> None:
        self._pending.append(("usage", (tenant, principal, cpu_seconds, at)))

    def _work(self) -> None:
        tick = min(self.usage_interval, self.audit_interval) / 2
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            while self._pending:
                item = self._pending.popleft()
                if item is None:
                    self._write(force=True)
                    return
                kind, payload = item
                try:
                    if kind == "audit":
                        self._audits.append(payload)
                        if self._audits_since is None:
                            self._audits_since = time.monotonic()
                    elif kind == "usage":
                        tenant, principal, cpu, at = payload
                        total, _ = self._usage.get((tenant, principal), (0.0, at))
                        self._usage[(tenant, principal)] = (total + cpu, at)
                        if self._usage_since is None:
                            self._usage_since = time.monotonic()
                    elif kind == "flush":
                        try:
                            self._write(force=True)
                        finally:
                            payload.set()
                except Exception:  # never lose the thread; the log says what failed
                    log.exception("could not write %s to the state", kind)
            try:
                self._write(force=False)
            except Exception:
                log.exception("could not write to the state")

    def _write(self, force: bool) -> None:
        self._write_audits(force)
        self._write_usage(force)

    def _write_audits(self, force: bool) -> None:
        if not self._audits or self._audits_since is None:
            return
        if not force and time.monotonic() - self._audits_since < self.audit_interval:
            return
        pending, self._audits, self._audits_since = self._audits, [], None
        try:
            self.state.audit_many(pending)
        except Exception:  # one bad event (a tenant deleted meanwhile...) must not lose the rest
            for event in pending:
                try:
                    self.state.audit_many([event])
                except Exception:
                    log.exception("could not write the audit event %s of %s in tenant %s",
                                  event.action, event.actor, event.tenant)

    def _write_usage(self, force: bool) -> None:
        if not self._usage or self._usage_since is None:
            return
        if not force and time.monotonic() - self._usage_since < self.usage_interval:
            return
        pending, self._usage, self._usage_since = self._usage, {}, None
        for (tenant, principal), (cpu, at) in pending.items():
            try:
                self.state.record_usage(tenant, principal, cpu, at=at)
            except Exception:
                log.exception("could not record CPU usage of %s in tenant %s", principal,
                              tenant)

    def flush(self) -> None:
        """Write everything recorded so far (usage too) and wait until it is written."""
        done = threading.Event()
        self._pending.append(("flush", done))
        self._wake.set()
        while not done.wait(1.0):
            if not self._thread.is_alive():
                return

    def close(self) -> None:
        if self._thread.is_alive():
            self._pending.append(None)
            self._wake.set()
            self._thread.join(30)


def _parameters(params: Any) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((str(p[0]), str(p[1]), None if len(p) < 3 or p[2] is None else str(p[2]))
                 for p in params)


class HuntingService:
    """Runs tenants' hunting queries against ``store`` under the limits kept in ``state``."""

    def __init__(self, store: Store, state: State, *, timeout: float | None = None,
                 max_concurrent: int = 16, hint_cache_seconds: float = 60.0,
                 cache_seconds: float = 2.0):
        self.store = store
        self.state = state
        self.timeout = timeout
        """Overrides every tenant's ``timeout_seconds`` when set."""
        self.cache_seconds = cache_seconds
        """How long a tenant's limits, functions and CPU usage are reused between queries
        (changes made through this service are seen at once; others within this time)."""
        self._rates = _RateLimiter()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._counts: dict[tuple[str, str], tuple[float, int]] = {}
        self._hint_cache_seconds = hint_cache_seconds
        self._tenants: dict[str, tuple[float, Limits, list[StoredFunction]]] = {}
        self._cpu: dict[str, tuple[float, float]] = {}
        self._cache_lock = threading.Lock()
        self.recorder = Recorder(state)

    def flush(self) -> None:
        """Wait until every queued audit event and usage record is written."""
        self.recorder.flush()

    def close(self) -> None:
        """Write what is queued and stop the background writer."""
        self.recorder.close()

    # ------------------------------------------------------------ helpers

    def database(self, tenant: str) -> Database:
        """The tenant's telemetry store (created empty on first use)."""
        return self.store.tenant(tenant)

    def functions(self, tenant: str) -> list[StoredFunction]:
        """The tenant's saved functions, ready for the compiler."""
        return [StoredFunction(f.name, f.body, _parameters(f.parameters), f.description)
                for f in self.state.list_functions(tenant)]

    def settings_of(self, tenant: str) -> tuple[Limits, list[StoredFunction]]:
        """The tenant's limits and functions, cached for ``cache_seconds``."""
        t = time.monotonic()
        hit = self._tenants.get(tenant)
        if hit is not None and t - hit[0] < self.cache_seconds:
            return hit[1], hit[2]
        limits, functions = self.state.tenant_limits(tenant), self.functions(tenant)
        self._tenants[tenant] = (t, limits, functions)
        return limits, functions

    def invalidate(self, tenant: str) -> None:
        """Forget what is cached about ``tenant`` (after changing its functions or limits)."""
        with self._cache_lock:
            self._tenants.pop(tenant, None)
            self._cpu.pop(tenant, None)

    def _cpu_used(self, tenant: str, since: datetime) -> float:
        t = time.monotonic()
        hit = self._cpu.get(tenant)
        if hit is not None and t - hit[0] < self.cache_seconds:
            return hit[1]
        used = self.state.cpu_used(tenant, since)
        self._cpu[tenant] = (t, used)
        return used

    def _add_cpu(self, tenant: str, cpu: float) -> None:
        with self._cache_lock:
            hit = self._cpu.get(tenant)
            if hit is not None:
                self._cpu[tenant] = (hit[0], hit[1] + cpu)

    def row_count(self, tenant: str, table: str) -> int:
        """Rows of ``table`` in the tenant's store (cached briefly, for hints)."""
        key = (tenant, table)
        hit = self._counts.get(key)
        if hit and time.monotonic() - hit[0] < self._hint_cache_seconds:
            return hit[1]
        db = self.database(tenant)
        n = 0
        if db.has_table(table):
            n = int(db.query(f"['{table}'] | count").rows[0][0])
        self._counts[key] = (time.monotonic(), n)
        return n

    def check_quota(self, caller: Caller, limits: Limits, now: datetime) -> float:
        """Raise :class:`QuotaExceededError` when the request rate or CPU quota is spent;
        returns the CPU-seconds used in the current window."""
        if caller.kind == "app":
            self._rates.hit((caller.tenant, f"app {caller.subject}"),
                            limits.requests_per_minute, limits.requests_per_hour)
        window = timedelta(seconds=limits.cpu_window_seconds)
        used = self._cpu_used(caller.tenant, now - window)
        if used >= limits.cpu_quota_seconds:
            used = self.state.cpu_used(caller.tenant, now - window)  # sure, not cached
        if used >= limits.cpu_quota_seconds:
            # find when enough of the window's usage will have aged out (usage only shrinks)
            lo, hi = 0.0, float(limits.cpu_window_seconds)
            for _ in range(12):
                mid = (lo + hi) / 2
                if self.state.cpu_used(caller.tenant, now - window + timedelta(seconds=mid)) \
                        < limits.cpu_quota_seconds:
                    hi = mid
                else:
                    lo = mid
            raise QuotaExceededError(
                f"CPU quota spent: tenant '{caller.tenant}' used {used:.1f} of "
                f"{limits.cpu_quota_seconds} CPU-seconds in the last "
                f"{limits.cpu_window_seconds // 60} minutes (cpu_quota_seconds); "
                f"queries resume as usage ages out", "cpu_quota_seconds", max(hi, 1.0))
        return used

    def window(self, limits: Limits, now: datetime, timespan: timedelta | None
               ) -> tuple[datetime | None, datetime | None]:
        """The rows a query may read: ``[now - lookback, ∞)``, narrowed by ``timespan``."""
        start: datetime | None = None
        if limits.lookback_days is not None:
            start = now - timedelta(days=limits.lookback_days)
        if timespan is not None:
            if timespan <= timedelta(0):
                raise KqlError("Timespan must be positive")
            ts_start = now - timespan
            start = ts_start if start is None else max(start, ts_start)
        return (start, None)

    # ------------------------------------------------------------ the query

    def run(self, principal: Caller, query: str, *, surface: Surface,
            timespan: timedelta | None = None, now: datetime | None = None,
            hints: bool | None = None) -> HuntingOutcome:
        """Run ``query`` for ``principal``'s tenant; raises KqlError subclasses,
        :class:`QueryLimitError` (timeout...) and :class:`QuotaExceededError`."""
        if not query or not query.strip():
            raise KqlError("the query is empty")
        tenant = principal.tenant
        now = now or datetime.now(UTC)
        limits, functions = self.settings_of(tenant)
        used = self.check_quota(principal, limits, now)
        window = self.window(limits, now, timespan)
        max_rows = limits.max_rows_portal if surface == "portal" else limits.max_rows_api
        timeout = self.timeout if self.timeout is not None else float(limits.timeout_seconds)
        actor = f"{principal.kind}:{principal.subject}"
        detail: dict[str, Any] = {"surface": surface}
        try:
            with self._slots:
                result = self.database(tenant).query(
                    query, now, functions=functions, window=window,
                    timeout=timeout, max_rows=max_rows)
        except KqlError as e:
            detail.update(outcome="error", error=e.kind, message=e.message[:500])
            if isinstance(e, QueryLimitError):
                detail["limit"] = e.limit
            self.recorder.audit(tenant, actor, "query.run", target=surface, detail=detail,
                                query_hash=query_hash(query))
            raise
        stats = result.stats
        cpu = stats.cpu_time
        self.recorder.record_usage(tenant, actor, cpu, at=now)
        self._add_cpu(tenant, cpu)
        truncated = result.truncated
        messages = []
        if truncated:
            messages.append(f"The result was truncated to {max_rows:,} rows, the "
                            f"{'portal' if surface == 'portal' else 'API'}'s row limit "
                            f"(max_rows_{surface}); narrow the query to see the rest")
        detail.update(outcome="ok", rows=stats.rows, truncated=truncated,
                      elapsed=round(stats.elapsed, 4), cpu=round(cpu, 4))
        self.recorder.audit(tenant, actor, "query.run", target=surface, detail=detail,
                            query_hash=query_hash(query))
        found = self.hints(tenant, query, stats.tables) if (
            hints if hints is not None else surface == "portal") else []
        return HuntingOutcome(result=result, stats=stats, truncated=truncated,
                              max_rows=max_rows, hints=found,
                              usage_level=usage_level(cpu, limits.cpu_quota_seconds,
                                                      window_cpu=used + cpu),
                              cpu_used=used + cpu, limits=limits, now=now, window=window,
                              messages=messages)

    def hints(self, tenant: str, query: str, tables: list[str] | None = None) -> list[Hint]:
        """Optimization hints for ``query`` (sizes of the tables it reads taken into account).

        Hints are advice: if computing them fails, the query's answer comes without them (and
        the server log says why) rather than not at all."""
        try:
            sizes: Mapping[str, int] = {t: self.row_count(tenant, t) for t in (tables or [])}
            return list(optimization_hints(query, sizes))
        except Exception:
            log.exception("optimization hints failed for a query of tenant %s", tenant)
            return []
