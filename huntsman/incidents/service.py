"""Incidents: alerts that share an entity within a window become one incident.

:class:`IncidentService` correlates each new alert: when an open incident holds an alert that
names one of the new alert's entities (device, user, mailbox, file hash, IP) seen within
``window`` (24 hours by default) of it, the alert joins that incident, else it opens a new one.
An incident's severity is the highest of its alerts'. Health alerts stay out of incidents.

:class:`Detections` wires the whole feature for a server or the CLI: the rule service with
correlation, the scheduler and its loop, and the continuous (NRT) evaluator.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from huntsman.detections.nrt import ContinuousEvaluator
from huntsman.detections.scheduler import Scheduler, scheduler_loop
from huntsman.detections.service import DetectionService
from huntsman.state.detections import AlertInfo, DetectionStore, IncidentInfo

if TYPE_CHECKING:
    from huntsman.state import State
    from huntsman.store import Store

log = logging.getLogger("huntsman.incidents")
DEFAULT_WINDOW = timedelta(hours=24)


class IncidentService:
    """Correlation and triage of incidents kept in ``state``."""

    def __init__(self, state: State, *, window: timedelta = DEFAULT_WINDOW):
        self.state = state
        self.db = DetectionStore(state)
        self.window = window

    def correlate(self, tenant: str, alerts: Sequence[AlertInfo]) -> list[IncidentInfo]:
        """Put each alert into the open incident it shares an entity with, or a new one."""
        touched: dict[int, IncidentInfo] = {}
        for alert in alerts:
            if alert.kind == "health" or alert.incident_id is not None:
                continue
            at = alert.last_event_time or alert.created_at
            entities = [(str(e["kind"]), str(e["value"])) for e in alert.entities]
            incident_id = self.db.correlated_incident(tenant, entities, at - self.window)
            if incident_id is None:
                inc = self.db.create_incident(tenant, name=alert.title,
                                              severity=alert.severity, alert_ids=[alert.id])
            else:
                inc = self.db.add_alerts_to_incident(tenant, incident_id, [alert.id])
            touched[inc.id] = inc
        return list(touched.values())

    def timeline(self, tenant: str, incident_id: int) -> list[dict[str, Any]]:
        """The incident's story, oldest first: each alert, its evidence rows, and comments."""
        inc = self.db.get_incident(tenant, incident_id)
        events: list[dict[str, Any]] = []
        for alert_id in inc.alert_ids:
            a = self.db.get_alert(tenant, alert_id)
            events.append({"time": _iso(a.first_event_time or a.created_at), "type": "alert",
                           "alertId": a.id, "title": a.title, "severity": a.severity})
            for row in a.evidence:
                events.append({"time": row.get("Timestamp") or _iso(a.created_at),
                               "type": "evidence", "alertId": a.id, "row": row})
        for c in inc.comments:
            events.append({"time": c.get("createdTime"), "type": "comment", **c})
        events.sort(key=lambda e: str(e.get("time") or ""))
        return events


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ""


class Detections:
    """Rules, scheduler, continuous evaluation and incidents, wired together.

    ``start()`` attaches the continuous rules to their tenants' stores and starts the scheduler
    loop; ``close()`` stops both."""

    def __init__(self, store: Store, state: State, *,
                 correlation_window: timedelta = DEFAULT_WINDOW, max_alerts_per_run: int = 150,
                 scheduler_interval: float = 30.0, timeout: float | None = 600.0,
                 nrt_background: bool = False):
        self.incidents = IncidentService(state, window=correlation_window)
        self.service = DetectionService(store, state, on_alerts=self.incidents.correlate,
                                        max_alerts_per_run=max_alerts_per_run,
                                        timeout=timeout)
        self.scheduler = Scheduler(self.service)
        self.continuous = ContinuousEvaluator(self.service, background=nrt_background)
        self.loop = scheduler_loop(self.scheduler, scheduler_interval)
        self._started = False

    def start(self, scheduler: bool = True) -> Detections:
        if not self._started:
            self.continuous.start()
            if scheduler:
                self.loop.start()
            self._started = True
        return self

    def close(self) -> None:
        self.loop.stop()
        self.continuous.close()
        self._started = False
