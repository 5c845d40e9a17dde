"""Retention: rows older than their table's retention (in days) are deleted.

:class:`RetentionJob` does one pass with ``run_once()`` (testable one loop at a time);
:class:`BackgroundJob` runs any such job every ``interval`` seconds on a daemon thread.
Deleting takes the store's write lock only; queries run on their own snapshots meanwhile.
A table's age is its ``Timestamp`` (the event time), or ``ingestion_time()`` for a table
without one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from huntsman.backends.base import INGESTION_TIME
from huntsman.store.database import Database
from huntsman.store.tenants import Store


class Job(Protocol):
    def run_once(self, now: datetime | None = None) -> object: ...


class RetentionJob:
    """Deletes expired rows of every table of every tenant of a store (or given databases)."""

    def __init__(self, source: Store | Iterable[Database] | Database):
        self.source = source
        self.last: dict[str, dict[str, int]] = {}

    def databases(self) -> list[Database]:
        if isinstance(self.source, Store):
            return self.source.open_tenants()
        if isinstance(self.source, Database):
            return [self.source]
        return list(self.source)

    def run_once(self, now: datetime | None = None) -> dict[str, dict[str, int]]:
        """One pass; returns the rows deleted per tenant and table (tables with none omitted)."""
        now = now or datetime.now(UTC)
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        out: dict[str, dict[str, int]] = {}
        for db in self.databases():
            deleted: dict[str, int] = {}
            for table, cols in sorted(db.tables().items()):
                column = "Timestamp" if ("Timestamp", "datetime") in cols else INGESTION_TIME
                cutoff = now - timedelta(days=db.retention_days(table))
                n = db.backend.delete_older_than(table, column, cutoff)
                if n:
                    deleted[table] = n
            out[db.name] = deleted
        self.last = out
        return out


class BackgroundJob:
    """Runs ``job.run_once()`` now and then every ``interval`` seconds until ``stop()``."""

    def __init__(self, job: Job, interval: float = 3600.0,
                 on_error: Callable[[BaseException], None] | None = None,
                 name: str | None = None):
        self.job = job
        self.interval = interval
        self.on_error = on_error
        self.name = name or type(self.job).__name__
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> BackgroundJob:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.job.run_once()
            except Exception as e:  # keep running: a failed pass is retried next time
                if self.on_error is not None:
                    self.on_error(e)
            self.runs += 1
            self._stop.wait(self.interval)

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
