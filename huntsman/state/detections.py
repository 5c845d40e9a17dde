"""Detection rules, their alerts and incidents in the application state.

The rules' definitions are kept as JSON (the detections layer owns their model and validation;
the state only stores and versions them), next to each rule's health. Alerts keep the rows that
raised them as evidence, so that they outlive the telemetry's retention. ``alert_keys`` remembers
every event that raised an alert (per rule), which is how a later run never raises the same
event twice; ``alert_entities`` indexes alerts by entity for correlation into incidents.

>>> from huntsman.state import State
>>> state = State("sqlite://"); _ = state.create_tenant("t")
>>> ds = DetectionStore(state)
>>> r = ds.create_rule("t", "alice", name="R", definition={"query": "T"}, frequency="1h")
>>> sorted(ds.claim_keys("t", r.id, ["a", "b"])), ds.claim_keys("t", r.id, ["b", "c"])
(['a', 'b'], {'c'})
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from huntsman.state.base import check_aware, check_text
from huntsman.state.errors import ConflictError, NotFoundError, StateError
from huntsman.state.models import Base, UTCDateTime, utcnow

if TYPE_CHECKING:
    from huntsman.state.service import State

SEVERITIES = ("Informational", "Low", "Medium", "High")
"""Alert and incident severities, least to most severe (Defender's)."""
ALERT_STATUSES = ("New", "InProgress", "Resolved")
INCIDENT_STATUSES = ("Active", "InProgress", "Resolved", "Redirected")
CLASSIFICATIONS = ("TruePositive", "InformationalExpectedActivity", "FalsePositive")
DETERMINATIONS = {
    "TruePositive": ("MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware",
                     "Phishing", "UnwantedSoftware", "Other"),
    "InformationalExpectedActivity": ("SecurityTesting", "LineOfBusinessApplication",
                                      "ConfirmedUserActivity", "Other"),
    "FalsePositive": ("Clean", "InsufficientData", "Other"),
}
"""The determinations allowed with each classification (Defender's)."""


# ------------------------------------------------------------------ models

class DetectionRuleRecord(Base):
    __tablename__ = "detection_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(256))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    frequency: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(512), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # health
    status: Mapped[str] = mapped_column(String(16), default="NotRun")
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_alerts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    runs: Mapped[int] = mapped_column(Integer, default=0)


class IncidentRecord(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_tenant_updated", "tenant_id", "updated_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="Active")
    assigned_to: Mapped[str] = mapped_column(String(256), default="")
    classification: Mapped[str] = mapped_column(String(64), default="")
    determination: Mapped[str] = mapped_column(String(64), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    comments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_activity: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_activity: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AlertRecord(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    rule_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    rule_name: Mapped[str] = mapped_column(String(256), default="")
    kind: Mapped[str] = mapped_column(String(16), default="rule")
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(512))
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="New")
    classification: Mapped[str] = mapped_column(String(64), default="")
    determination: Mapped[str] = mapped_column(String(64), default="")
    assigned_to: Mapped[str] = mapped_column(String(256), default="")
    detection_source: Mapped[str] = mapped_column(String(64), default="CustomDetection")
    mitre_techniques: Mapped[list[str]] = mapped_column(JSON, default=list)
    recommended_actions: Mapped[str] = mapped_column(Text, default="")
    custom_details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    entities: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    comments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    machine_id: Mapped[str] = mapped_column(String(128), default="")
    computer_dns_name: Mapped[str] = mapped_column(String(256), default="")
    related_user: Mapped[str] = mapped_column(String(256), default="")
    first_event_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_event_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AlertKey(Base):
    """An event (``ReportId``+``Timestamp``+``DeviceId``, or the row's entity key) that already
    raised an alert of ``rule_id``."""

    __tablename__ = "alert_keys"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertEntity(Base):
    """One entity of an alert (kind: device, user, mailbox, file, ip), for correlation."""

    __tablename__ = "alert_entities"
    __table_args__ = (Index("ix_alert_entities_lookup", "tenant_id", "kind", "value", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"),
                                          index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(256))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


# ------------------------------------------------------------------ plain values

@dataclass(frozen=True)
class RuleHealth:
    status: str
    """``NotRun``, ``Ok``, ``Failing`` (three consecutive failures) or ``Disabled``."""
    last_run_at: datetime | None
    next_run_at: datetime | None
    last_duration: float | None
    last_rows: int | None
    last_alerts: int | None
    last_error: str
    consecutive_failures: int
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "lastRunTime": self.last_run_at,
                "nextRunTime": self.next_run_at, "lastRunDuration": self.last_duration,
                "lastRunRows": self.last_rows, "lastRunAlerts": self.last_alerts,
                "lastError": self.last_error, "consecutiveFailures": self.consecutive_failures,
                "runs": self.runs}


@dataclass(frozen=True)
class RuleRecord:
    id: str
    tenant: str
    name: str
    definition: dict[str, Any]
    frequency: str
    enabled: bool
    source: str
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    health: RuleHealth


@dataclass(frozen=True)
class AlertInfo:
    id: str
    tenant: str
    rule_id: str | None
    rule_name: str
    kind: str
    incident_id: int | None
    title: str
    description: str
    severity: str
    category: str
    status: str
    classification: str
    determination: str
    assigned_to: str
    detection_source: str
    mitre_techniques: list[str]
    recommended_actions: str
    custom_details: dict[str, Any]
    entities: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    comments: list[dict[str, Any]]
    machine_id: str
    computer_dns_name: str
    related_user: str
    first_event_time: datetime | None
    last_event_time: datetime | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class IncidentInfo:
    id: int
    tenant: str
    name: str
    severity: str
    status: str
    assigned_to: str
    classification: str
    determination: str
    tags: list[str]
    comments: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    first_activity: datetime | None
    last_activity: datetime | None
    alert_ids: list[str] = field(default_factory=list)


@dataclass
class NewAlert:
    """What the detection engine hands over to be stored (one alert)."""

    title: str
    severity: str
    rule_id: str | None = None
    rule_name: str = ""
    kind: str = "rule"
    description: str = ""
    category: str = ""
    detection_source: str = "CustomDetection"
    mitre_techniques: list[str] = field(default_factory=list)
    recommended_actions: str = ""
    custom_details: dict[str, Any] = field(default_factory=dict)
    entities: list[dict[str, Any]] = field(default_factory=list)
    """``{"kind": device|user|mailbox|file|ip, "value": ..., "column": ...}``."""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    machine_id: str = ""
    computer_dns_name: str = ""
    related_user: str = ""
    incident_id: int | None = None


ALERT_FIELDS: dict[str, Any] = {
    "id": AlertRecord.id, "incidentId": AlertRecord.incident_id, "title": AlertRecord.title,
    "severity": AlertRecord.severity, "status": AlertRecord.status,
    "classification": AlertRecord.classification,
    "determination": AlertRecord.determination, "assignedTo": AlertRecord.assigned_to,
    "category": AlertRecord.category, "detectionSource": AlertRecord.detection_source,
    "detectorId": AlertRecord.rule_id, "machineId": AlertRecord.machine_id,
    "computerDnsName": AlertRecord.computer_dns_name,
    "alertCreationTime": AlertRecord.created_at, "lastUpdateTime": AlertRecord.updated_at,
    "firstEventTime": AlertRecord.first_event_time,
    "lastEventTime": AlertRecord.last_event_time, "resolvedTime": AlertRecord.resolved_at,
}
"""The alert fields ``$filter`` may name (Defender's names) and their columns."""
INCIDENT_FIELDS: dict[str, Any] = {
    "incidentId": IncidentRecord.id, "incidentName": IncidentRecord.name,
    "severity": IncidentRecord.severity, "status": IncidentRecord.status,
    "assignedTo": IncidentRecord.assigned_to, "classification": IncidentRecord.classification,
    "determination": IncidentRecord.determination, "createdTime": IncidentRecord.created_at,
    "lastUpdateTime": IncidentRecord.updated_at,
}
"""The incident fields ``$filter`` may name (Defender's names) and their columns."""


def severity_rank(severity: str) -> int:
    """The severity's place in ``SEVERITIES`` (case-insensitive; -1 when unknown).

    >>> severity_rank("High") > severity_rank("low")
    True
    """
    lowered = [s.lower() for s in SEVERITIES]
    return lowered.index(severity.lower()) if severity.lower() in lowered else -1


def canonical(value: str, allowed: Iterable[str], what: str) -> str:
    """``value`` spelled as in ``allowed`` (case-insensitively), or a StateError naming them."""
    for a in allowed:
        if a.lower() == str(value).lower():
            return a
    raise StateError(f"invalid {what} {value!r}: use one of {', '.join(allowed)}")


def _health(r: DetectionRuleRecord) -> RuleHealth:
    status = r.status if r.enabled else "Disabled"
    return RuleHealth(status, r.last_run_at, r.next_run_at, r.last_duration, r.last_rows,
                      r.last_alerts, r.last_error, r.consecutive_failures, r.runs)


def _rule(r: DetectionRuleRecord, tenant: str) -> RuleRecord:
    return RuleRecord(r.id, tenant, r.name, dict(r.definition), r.frequency, r.enabled,
                      r.source, r.version, r.created_by, r.created_at, r.updated_by,
                      r.updated_at, _health(r))


def _alert(a: AlertRecord, tenant: str) -> AlertInfo:
    return AlertInfo(a.id, tenant, a.rule_id, a.rule_name, a.kind, a.incident_id, a.title,
                     a.description, a.severity, a.category, a.status, a.classification,
                     a.determination, a.assigned_to, a.detection_source,
                     list(a.mitre_techniques or []), a.recommended_actions,
                     dict(a.custom_details or {}), list(a.entities or []),
                     list(a.evidence or []), list(a.actions or []), list(a.comments or []),
                     a.machine_id, a.computer_dns_name, a.related_user, a.first_event_time,
                     a.last_event_time, a.created_at, a.updated_at, a.resolved_at)


def _incident(i: IncidentRecord, tenant: str, alert_ids: list[str]) -> IncidentInfo:
    return IncidentInfo(i.id, tenant, i.name, i.severity, i.status, i.assigned_to,
                        i.classification, i.determination, list(i.tags or []),
                        list(i.comments or []), i.created_at, i.updated_at, i.resolved_at,
                        i.first_activity, i.last_activity, alert_ids)


def _comment(text: str, author: str, at: datetime) -> dict[str, Any]:
    text = check_text("comment", text, max_len=10_000)
    return {"comment": text, "createdBy": author, "createdTime": at.isoformat()}


def new_alert_id() -> str:
    """Alert ids look like Defender's custom-detection ones (``ed`` + digits/hex)."""
    return "hm" + uuid.uuid4().hex


@dataclass(frozen=True)
class Page:
    """One page of a listing: ``items`` plus the total that matched the filter."""

    items: list[Any]
    total: int


class DetectionStore:
    """Rules, alerts and incidents of every tenant in ``state``'s database."""

    def __init__(self, state: State):
        self.state = state

    def _session(self, conflict: str | None = None) -> Any:
        return self.state._session(conflict)

    def _tenant(self, s: Session, name: str) -> Any:
        return self.state._tenant(s, name)

    # -- rules -----------------------------------------------------------------------------

    def create_rule(self, tenant: str, actor: str, *, name: str, definition: dict[str, Any],
                    frequency: str, enabled: bool = True, source: str = "",
                    next_run_at: datetime | None = None) -> RuleRecord:
        name = check_text("rule name", name, max_len=256)
        with self._session(conflict=f"a detection rule named {name!r} already exists in "
                                    f"tenant {tenant!r}") as s:
            t = self._tenant(s, tenant)
            now = utcnow()
            r = DetectionRuleRecord(id=str(uuid.uuid4()), tenant_id=t.id, name=name,
                                    definition=definition, frequency=frequency, enabled=enabled,
                                    source=source[:512], version=1, created_by=actor,
                                    created_at=now, updated_by=actor, updated_at=now,
                                    status="NotRun", next_run_at=next_run_at, last_error="",
                                    consecutive_failures=0, runs=0)
            s.add(r)
            s.flush()
            return _rule(r, t.name)

    def _rule_row(self, s: Session, tenant: str, rule: str) -> tuple[DetectionRuleRecord, Any]:
        t = self._tenant(s, tenant)
        r = s.scalar(select(DetectionRuleRecord).where(
            DetectionRuleRecord.tenant_id == t.id,
            (DetectionRuleRecord.id == rule) | (DetectionRuleRecord.name == rule)))
        if r is None:
            raise NotFoundError(f"no detection rule {rule!r} in tenant {tenant!r}")
        return r, t

    def get_rule(self, tenant: str, rule: str) -> RuleRecord:
        """A rule by id or name."""
        with self._session() as s:
            r, t = self._rule_row(s, tenant, rule)
            return _rule(r, t.name)

    def list_rules(self, tenant: str | None = None) -> list[RuleRecord]:
        """The rules of ``tenant`` (of every tenant when None), by name."""
        from huntsman.state.models import Tenant
        with self._session() as s:
            q = select(DetectionRuleRecord, Tenant.name).join(
                Tenant, Tenant.id == DetectionRuleRecord.tenant_id)
            if tenant is not None:
                q = q.where(DetectionRuleRecord.tenant_id == self._tenant(s, tenant).id)
            q = q.order_by(Tenant.name, DetectionRuleRecord.name)
            return [_rule(r, tn) for r, tn in s.execute(q)]

    def update_rule(self, tenant: str, actor: str, rule: str, *, version: int | None,
                    **changes: Any) -> RuleRecord:
        """Change ``name``, ``definition``, ``frequency``, ``enabled``, ``source`` or
        ``next_run_at``; ``version`` (when given) must be the stored one."""
        allowed = {"name", "definition", "frequency", "enabled", "source", "next_run_at"}
        unknown = set(changes) - allowed
        if unknown:
            raise StateError(f"cannot change {', '.join(sorted(unknown))} of a rule")
        with self._session(conflict="a detection rule with that name already exists") as s:
            r, t = self._rule_row(s, tenant, rule)
            if version is not None and version != r.version:
                raise ConflictError(f"detection rule {r.name!r} was changed meanwhile (it is "
                                    f"at version {r.version}, not {version}); reload it and "
                                    f"retry")
            for key, value in changes.items():
                setattr(r, key, value)
            if "enabled" in changes and changes["enabled"]:
                r.consecutive_failures = 0
                if r.status == "Failing":
                    r.status = "NotRun" if r.last_run_at is None else "Ok"
            r.version += 1
            r.updated_by = actor
            r.updated_at = utcnow()
            s.flush()
            return _rule(r, t.name)

    def delete_rule(self, tenant: str, rule: str) -> None:
        """Delete the rule; its alerts stay (with the rule's name)."""
        with self._session() as s:
            r, t = self._rule_row(s, tenant, rule)
            s.execute(delete(AlertKey).where(AlertKey.tenant_id == t.id,
                                             AlertKey.rule_id == r.id))
            s.delete(r)

    def record_run(self, tenant: str, rule_id: str, *, at: datetime, duration: float,
                   rows: int | None, alerts: int | None, error: str | None,
                   next_run_at: datetime | None, failing_after: int = 3) -> RuleHealth:
        """Record one run's outcome; returns the new health (``Failing`` after
        ``failing_after`` consecutive failures: the rule keeps running)."""
        check_aware("at", at)
        with self._session() as s:
            r, _ = self._rule_row(s, tenant, rule_id)
            r.last_run_at = at
            r.last_duration = duration
            r.runs += 1
            r.next_run_at = next_run_at
            if error is None:
                r.last_rows, r.last_alerts, r.last_error = rows, alerts, ""
                r.consecutive_failures = 0
                r.status = "Ok"
            else:
                r.last_rows, r.last_alerts, r.last_error = None, None, error[:4000]
                r.consecutive_failures += 1
                r.status = "Failing" if r.consecutive_failures >= failing_after else "Ok"
            s.flush()
            return _health(r)

    # -- dedup -----------------------------------------------------------------------------

    def claim_keys(self, tenant: str, rule_id: str, keys: Iterable[str],
                   at: datetime | None = None) -> set[str]:
        """Remember ``keys`` for ``rule_id``; returns those not remembered before."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return set()
        at = at or utcnow()
        with self._session() as s:
            t = self._tenant(s, tenant)
            seen: set[str] = set()
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                seen.update(s.scalars(select(AlertKey.key).where(
                    AlertKey.tenant_id == t.id, AlertKey.rule_id == rule_id,
                    AlertKey.key.in_(chunk))))
            fresh = [k for k in wanted if k not in seen]
            s.add_all(AlertKey(tenant_id=t.id, rule_id=rule_id, key=k, at=at) for k in fresh)
            return set(fresh)

    def seen_keys(self, tenant: str, rule_id: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` already raised an alert of ``rule_id`` (nothing is recorded)."""
        wanted = list(dict.fromkeys(keys))
        with self._session() as s:
            t = self._tenant(s, tenant)
            seen: set[str] = set()
            for i in range(0, len(wanted), 500):
                seen.update(s.scalars(select(AlertKey.key).where(
                    AlertKey.tenant_id == t.id, AlertKey.rule_id == rule_id,
                    AlertKey.key.in_(wanted[i:i + 500]))))
            return seen

    # -- alerts ----------------------------------------------------------------------------

    def create_alerts(self, tenant: str, alerts: Sequence[NewAlert],
                      at: datetime | None = None) -> list[AlertInfo]:
        """Store alerts (and index their entities) in one transaction."""
        at = at or utcnow()
        out = []
        with self._session() as s:
            t = self._tenant(s, tenant)
            for a in alerts:
                severity = canonical(a.severity, SEVERITIES, "severity")
                rec = AlertRecord(
                    id=new_alert_id(), tenant_id=t.id, rule_id=a.rule_id,
                    rule_name=a.rule_name[:256], kind=a.kind, incident_id=a.incident_id,
                    title=a.title[:512], description=a.description, severity=severity,
                    category=a.category[:64], status="New", classification="",
                    determination="", assigned_to="", detection_source=a.detection_source,
                    mitre_techniques=list(a.mitre_techniques),
                    recommended_actions=a.recommended_actions,
                    custom_details=dict(a.custom_details), entities=list(a.entities),
                    evidence=list(a.evidence), actions=list(a.actions), comments=[],
                    machine_id=a.machine_id[:128], computer_dns_name=a.computer_dns_name[:256],
                    related_user=a.related_user[:256], first_event_time=a.first_event_time,
                    last_event_time=a.last_event_time, created_at=at, updated_at=at)
                s.add(rec)
                s.flush()
                when = a.last_event_time or at
                for e in {(str(e["kind"]), str(e["value"]).lower()[:256]) for e in a.entities
                          if e.get("value") not in (None, "")}:
                    s.add(AlertEntity(tenant_id=t.id, alert_id=rec.id, kind=e[0], value=e[1],
                                      at=when))
                out.append(_alert(rec, t.name))
        return out

    def get_alert(self, tenant: str, alert_id: str) -> AlertInfo:
        with self._session() as s:
            t = self._tenant(s, tenant)
            a = self._alert_row(s, t, alert_id)
            return _alert(a, t.name)

    def list_alerts(self, tenant: str, *, where: Any = None, top: int | None = None,
                    skip: int = 0, rule_id: str | None = None,
                    incident_id: int | None = None) -> Page:
        """Alerts newest first; ``where`` is a SQLAlchemy condition over ``ALERT_FIELDS``."""
        with self._session() as s:
            t = self._tenant(s, tenant)
            cond = AlertRecord.tenant_id == t.id
            if where is not None:
                cond = and_(cond, where)
            if rule_id is not None:
                cond = and_(cond, AlertRecord.rule_id == rule_id)
            if incident_id is not None:
                cond = and_(cond, AlertRecord.incident_id == incident_id)
            total = s.scalar(select(func.count()).select_from(AlertRecord).where(cond)) or 0
            q = select(AlertRecord).where(cond).order_by(AlertRecord.created_at.desc(),
                                                         AlertRecord.id).offset(skip)
            if top is not None:
                q = q.limit(top)
            return Page([_alert(a, t.name) for a in s.scalars(q)], int(total))

    def update_alert(self, tenant: str, alert_id: str, actor: str, *,
                     status: str | None = None, assigned_to: str | None = None,
                     classification: str | None = None, determination: str | None = None,
                     comment: str | None = None) -> AlertInfo:
        """Change an alert's status, assignment, classification/determination; add a comment."""
        with self._session() as s:
            t = self._tenant(s, tenant)
            a = self._alert_row(s, t, alert_id)
            now = utcnow()
            _apply_triage(a, status, ALERT_STATUSES, assigned_to, classification,
                          determination, now)
            if comment is not None:
                a.comments = [*(a.comments or []), _comment(comment, actor, now)]
            a.updated_at = now
            s.flush()
            return _alert(a, t.name)

    # -- incidents -------------------------------------------------------------------------

    def correlated_incident(self, tenant: str, entities: Iterable[tuple[str, str]],
                            since: datetime) -> int | None:
        """The newest open incident holding an alert with one of ``entities`` (kind, value)
        seen from ``since`` on; None when there is none."""
        pairs = {(k, str(v).lower()[:256]) for k, v in entities if v not in (None, "")}
        if not pairs:
            return None
        with self._session() as s:
            t = self._tenant(s, tenant)
            conds = [and_(AlertEntity.kind == k, AlertEntity.value == v) for k, v in pairs]
            from sqlalchemy import or_
            q = (select(AlertRecord.incident_id)
                 .join(AlertEntity, AlertEntity.alert_id == AlertRecord.id)
                 .join(IncidentRecord, IncidentRecord.id == AlertRecord.incident_id)
                 .where(AlertEntity.tenant_id == t.id, AlertEntity.at >= since,
                        IncidentRecord.status != "Resolved", or_(*conds))
                 .order_by(AlertEntity.at.desc()).limit(1))
            return s.scalar(q)

    def create_incident(self, tenant: str, *, name: str, severity: str,
                        alert_ids: Sequence[str] = (), tags: Sequence[str] = (),
                        assigned_to: str = "") -> IncidentInfo:
        with self._session() as s:
            t = self._tenant(s, tenant)
            now = utcnow()
            inc = IncidentRecord(tenant_id=t.id, name=check_text("incident name", name,
                                                                 max_len=512),
                                 severity=canonical(severity, SEVERITIES, "severity"),
                                 status="Active", assigned_to=assigned_to, classification="",
                                 determination="", tags=list(tags), comments=[],
                                 created_at=now, updated_at=now)
            s.add(inc)
            s.flush()
            self._attach(s, t.id, inc, alert_ids)
            return self._incident_info(s, inc, t.name)

    def add_alerts_to_incident(self, tenant: str, incident_id: int,
                               alert_ids: Sequence[str]) -> IncidentInfo:
        """Attach alerts; the incident's severity becomes the max of its alerts'."""
        with self._session() as s:
            t = self._tenant(s, tenant)
            inc = self._incident_row(s, t, incident_id)
            self._attach(s, t.id, inc, alert_ids)
            inc.updated_at = utcnow()
            return self._incident_info(s, inc, t.name)

    def _attach(self, s: Session, tenant_id: int, inc: IncidentRecord,
                alert_ids: Sequence[str]) -> None:
        if not alert_ids:
            return
        alerts = list(s.scalars(select(AlertRecord).where(AlertRecord.tenant_id == tenant_id,
                                                          AlertRecord.id.in_(alert_ids))))
        missing = set(alert_ids) - {a.id for a in alerts}
        if missing:
            raise NotFoundError(f"no alert {sorted(missing)[0]!r} in this tenant")
        for a in alerts:
            a.incident_id = inc.id
        s.flush()
        self._refresh(s, inc)

    @staticmethod
    def _refresh(s: Session, inc: IncidentRecord) -> None:
        rows = list(s.execute(select(AlertRecord.severity, AlertRecord.first_event_time,
                                     AlertRecord.last_event_time, AlertRecord.created_at)
                              .where(AlertRecord.incident_id == inc.id)))
        if not rows:
            return
        inc.severity = max((r[0] for r in rows), key=severity_rank)
        firsts = [r[1] or r[3] for r in rows]
        lasts = [r[2] or r[3] for r in rows]
        inc.first_activity = min(firsts)
        inc.last_activity = max(lasts)

    def _alert_row(self, s: Session, t: Any, alert_id: str) -> AlertRecord:
        a = s.scalar(select(AlertRecord).where(AlertRecord.tenant_id == t.id,
                                               AlertRecord.id == alert_id))
        if a is None:
            raise NotFoundError(f"no alert {alert_id!r} in tenant {t.name!r}")
        return a

    def _incident_row(self, s: Session, t: Any, incident_id: int) -> IncidentRecord:
        inc = s.scalar(select(IncidentRecord).where(IncidentRecord.tenant_id == t.id,
                                                    IncidentRecord.id == incident_id))
        if inc is None:
            raise NotFoundError(f"no incident {incident_id!r} in tenant {t.name!r}")
        return inc

    def _incident_info(self, s: Session, inc: IncidentRecord, tenant: str) -> IncidentInfo:
        ids = list(s.scalars(select(AlertRecord.id).where(AlertRecord.incident_id == inc.id)
                             .order_by(AlertRecord.created_at, AlertRecord.id)))
        return _incident(inc, tenant, ids)

    def get_incident(self, tenant: str, incident_id: int) -> IncidentInfo:
        with self._session() as s:
            t = self._tenant(s, tenant)
            return self._incident_info(s, self._incident_row(s, t, incident_id), t.name)

    def list_incidents(self, tenant: str, *, where: Any = None, top: int | None = None,
                       skip: int = 0) -> Page:
        with self._session() as s:
            t = self._tenant(s, tenant)
            cond = IncidentRecord.tenant_id == t.id
            if where is not None:
                cond = and_(cond, where)
            total = s.scalar(select(func.count()).select_from(IncidentRecord).where(cond)) or 0
            q = select(IncidentRecord).where(cond).order_by(IncidentRecord.updated_at.desc(),
                                                            IncidentRecord.id.desc())
            q = q.offset(skip)
            if top is not None:
                q = q.limit(top)
            return Page([self._incident_info(s, i, t.name) for i in s.scalars(q)], int(total))

    def update_incident(self, tenant: str, incident_id: int, actor: str, *,
                        status: str | None = None, assigned_to: str | None = None,
                        classification: str | None = None, determination: str | None = None,
                        tags: Sequence[str] | None = None, comment: str | None = None
                        ) -> IncidentInfo:
        with self._session() as s:
            t = self._tenant(s, tenant)
            inc = self._incident_row(s, t, incident_id)
            now = utcnow()
            _apply_triage(inc, status, INCIDENT_STATUSES, assigned_to, classification,
                          determination, now)
            if tags is not None:
                clean = [check_text("tag", tag, max_len=128) for tag in tags]
                inc.tags = list(dict.fromkeys(clean))
            if comment is not None:
                inc.comments = [*(inc.comments or []), _comment(comment, actor, now)]
            inc.updated_at = now
            s.flush()
            return self._incident_info(s, inc, t.name)

    def prune_keys(self, before: datetime) -> int:
        """Forget dedup keys older than ``before`` (events that old are past every lookback)."""
        check_aware("before", before)
        with self._session() as s:
            res = s.execute(delete(AlertKey).where(AlertKey.at < before))
            return int(getattr(res, "rowcount", 0) or 0)


def _apply_triage(row: Any, status: str | None, statuses: tuple[str, ...],
                  assigned_to: str | None, classification: str | None,
                  determination: str | None, now: datetime) -> None:
    if status is not None:
        row.status = canonical(status, statuses, "status")
        row.resolved_at = now if row.status == "Resolved" else None
    if assigned_to is not None:
        row.assigned_to = check_text("assignedTo", assigned_to, max_len=256, empty=True)
    if classification is not None:
        row.classification = ("" if classification == "" else
                              canonical(classification, CLASSIFICATIONS, "classification"))
        if row.determination and row.classification and row.determination not in \
                DETERMINATIONS[row.classification] and determination is None:
            row.determination = ""
    if determination is not None:
        if determination == "":
            row.determination = ""
        else:
            if not row.classification:
                raise StateError("set a classification before a determination")
            row.determination = canonical(determination, DETERMINATIONS[row.classification],
                                          f"determination for {row.classification}")


__all__ = ["ALERT_FIELDS", "ALERT_STATUSES", "CLASSIFICATIONS", "DETERMINATIONS",
           "INCIDENT_FIELDS", "INCIDENT_STATUSES", "SEVERITIES", "AlertInfo", "DetectionStore",
           "IncidentInfo", "NewAlert", "Page", "RuleHealth", "RuleRecord", "canonical",
           "severity_rank"]
