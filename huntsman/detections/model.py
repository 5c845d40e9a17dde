"""A custom detection rule as data: its query, schedule and the alert it raises.

Rules are pydantic models, loaded from YAML (detection-as-code) or JSON (the API)::

    name: Encoded PowerShell launched by Office
    frequency: 1h                  # 24h | 12h | 3h | 1h | NRT | a custom 5m..14d (+ lookback)
    severity: High                 # Informational | Low | Medium | High
    category: Execution
    mitre_techniques: [T1059.001]
    title: "Encoded PowerShell on {{DeviceName}}"     # up to 3 {{Column}} placeholders
    query: |
      DeviceProcessEvents
      | where FileName =~ "powershell.exe" and ProcessCommandLine has "EncodedCommand"
    entities: {device: DeviceId, user: AccountSid}
    custom_details: {CommandLine: ProcessCommandLine}   # up to 20

>>> rule = Rule(name="r", query="T", frequency="3h")
>>> rule.schedule().lookback
datetime.timedelta(seconds=43200)
>>> Rule(name="r", query="T", frequency="NRT").schedule().continuous
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from huntsman.errors import KqlError

STANDARD_FREQUENCIES: dict[str, timedelta] = {
    "24h": timedelta(days=30),
    "12h": timedelta(hours=48),
    "3h": timedelta(hours=12),
    "1h": timedelta(hours=4),
}
"""Defender's fixed frequencies and the lookback each one gets."""
CONTINUOUS = ("nrt", "continuous", "0")
MIN_FREQUENCY, MAX_FREQUENCY = timedelta(minutes=5), timedelta(days=14)
MIN_LOOKBACK, MAX_LOOKBACK = timedelta(minutes=5), timedelta(days=30)
FIRST_RUN_LOOKBACK = timedelta(days=30)
"""A new rule's first run looks back this far, whatever its frequency (as Defender does)."""

SEVERITY_NAMES = ("Informational", "Low", "Medium", "High")
ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "device": ("DeviceId", "DeviceName", "RemoteDeviceName"),
    "mailbox": ("RecipientEmailAddress", "SenderFromAddress", "SenderMailFromAddress"),
    "user": ("AccountObjectId", "AccountSid", "AccountUpn", "InitiatingProcessAccountSid",
             "InitiatingProcessAccountUpn", "InitiatingProcessAccountObjectId"),
}
"""The impacted-entity columns Defender accepts, by entity kind; a rule's result needs one."""
IDENTIFIER_COLUMNS: tuple[str, ...] = tuple(c for cols in ENTITY_COLUMNS.values() for c in cols)
CORRELATION_COLUMNS: dict[str, tuple[str, ...]] = {
    **ENTITY_COLUMNS,
    "file": ("SHA256", "SHA1", "MD5", "InitiatingProcessSHA256"),
    "ip": ("RemoteIP", "LocalIP", "IPAddress", "SenderIPv4", "FileOriginIP"),
}
"""Columns whose values make alerts related (entities the incident correlation looks at)."""
AUTOMATED_ACTIONS = ("isolate_device", "collect_investigation_package", "run_antivirus_scan",
                     "initiate_investigation", "restrict_app_execution", "quarantine_file",
                     "allow_or_block_file", "mark_user_compromised", "disable_user",
                     "force_password_reset", "move_email", "delete_email")
"""Defender's automated actions of custom detections (recorded on the alert for now)."""
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_PLACEHOLDERS, MAX_CUSTOM_DETAILS = 3, 20
_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?)\s*$", re.I)


class RuleError(KqlError):
    """A rule that cannot be saved: the message says what to change, and where (``field`` of
    the rule; ``line``/``column`` in its query when the query is at fault)."""

    kind = "InvalidRule"

    def __init__(self, message: str, field: str = "", line: int = 0, column: int = 0,
                 text: str | None = None):
        self.field = field
        super().__init__(message, line, column, text)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "field": self.field}


def parse_duration(text: str | int | float, what: str = "duration") -> timedelta:
    """``"30m"``, ``"4h"``, ``"14d"`` (or minutes as a number) as a timedelta.

    >>> parse_duration("90m"), parse_duration("2d")
    (datetime.timedelta(seconds=5400), datetime.timedelta(days=2))
    """
    if isinstance(text, bool):
        raise RuleError(f"invalid {what} {text!r}: write it like 30m, 4h or 7d", what)
    if isinstance(text, (int, float)):
        return timedelta(minutes=float(text))
    m = _DURATION.match(str(text))
    if not m:
        raise RuleError(f"invalid {what} {text!r}: write it like 30m, 4h or 7d", what)
    n, unit = int(m.group(1)), m.group(2)[0].lower()
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]


def format_duration(d: timedelta) -> str:
    """The shortest of ``Nd``, ``Nh`` or ``Nm`` for ``d``.

    >>> format_duration(timedelta(hours=48)), format_duration(timedelta(minutes=90))
    ('2d', '90m')
    """
    minutes = int(d.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


@dataclass(frozen=True)
class Schedule:
    """When a rule runs: every ``frequency`` over the last ``lookback``, or ``continuous``."""

    frequency: timedelta | None
    lookback: timedelta | None
    continuous: bool

    @property
    def label(self) -> str:
        if self.continuous or self.frequency is None:
            return "NRT"
        return format_duration(self.frequency)


class Action(BaseModel):
    """An automated action on an entity column of the alert's rows (recorded for now)."""

    model_config = ConfigDict(extra="forbid")
    type: str
    column: str = ""

    @field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        key = v.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in AUTOMATED_ACTIONS:
            raise ValueError(f"unknown automated action {v!r}: use one of "
                             f"{', '.join(AUTOMATED_ACTIONS)}")
        return key


class RuleTest(BaseModel):
    """Example events for detection-as-code tests: with ``match: true`` the rule must raise an
    alert on them, with ``match: false`` it must not."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    match: bool
    events: dict[str, list[dict[str, Any]]] = Field(
        description="table name → rows (missing columns are empty)")


class Rule(BaseModel):
    """A custom detection rule (see the module docstring for the YAML form)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=256)
    query: str = Field(min_length=1)
    frequency: str = "24h"
    lookback: str | None = None
    enabled: bool = True
    title: str = ""
    """The alert title (default: the rule name); ``{{Column}}`` takes the row's value."""
    description: str = ""
    """The alert description; ``{{Column}}`` placeholders too."""
    severity: str = "Medium"
    category: str = ""
    mitre_techniques: list[str] = Field(default_factory=list)
    recommended_actions: str = ""
    custom_details: dict[str, str] = Field(default_factory=dict)
    """Up to 20 ``key: column`` pairs shown on the alert (and used to group rows)."""
    entities: dict[str, str] = Field(default_factory=dict)
    """Impacted entities: ``device``, ``mailbox`` and/or ``user`` → a column of the result."""
    actions: list[Action] = Field(default_factory=list)
    tests: list[RuleTest] = Field(default_factory=list)

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        for s in SEVERITY_NAMES:
            if s.lower() == v.strip().lower():
                return s
        raise ValueError(f"unknown severity {v!r}: use one of {', '.join(SEVERITY_NAMES)}")

    @field_validator("mitre_techniques")
    @classmethod
    def _techniques(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.match(r"^T\d{4}(\.\d{3})?$", t.strip()):
                raise ValueError(f"invalid MITRE technique {t!r}: write it like T1059 or "
                                 f"T1059.001")
        return [t.strip() for t in v]

    @field_validator("entities")
    @classmethod
    def _entities(cls, v: dict[str, str]) -> dict[str, str]:
        for kind, column in v.items():
            if kind not in ENTITY_COLUMNS:
                raise ValueError(f"unknown impacted entity {kind!r}: use device, mailbox or "
                                 f"user")
            if column not in ENTITY_COLUMNS[kind]:
                raise ValueError(f"the {kind} entity must be one of the columns "
                                 f"{', '.join(ENTITY_COLUMNS[kind])}, not {column!r}")
        return v

    # -------------------------------------------------------------- checks without the engine

    def schedule(self) -> Schedule:
        """The rule's frequency and lookback; RuleError says what is wrong with them."""
        freq = str(self.frequency).strip().lower()
        if freq in CONTINUOUS:
            if self.lookback is not None:
                raise RuleError("a continuous (NRT) rule has no lookback: it sees each "
                                "ingested batch once; remove 'lookback'", "lookback")
            return Schedule(None, None, True)
        every = parse_duration(self.frequency, "frequency")
        if self.lookback is None and freq in STANDARD_FREQUENCIES:
            return Schedule(every, STANDARD_FREQUENCIES[freq], False)
        if not MIN_FREQUENCY <= every <= MAX_FREQUENCY:
            raise RuleError(f"frequency {self.frequency!r} is out of range: use 24h, 12h, 3h, "
                            f"1h, NRT, or a custom frequency from 5m to 14d", "frequency")
        lookback = every if self.lookback is None else parse_duration(self.lookback, "lookback")
        if not MIN_LOOKBACK <= lookback <= MAX_LOOKBACK:
            raise RuleError(f"lookback {self.lookback!r} is out of range: use 5m to 30d",
                            "lookback")
        if lookback < every:
            raise RuleError(f"lookback {format_duration(lookback)} is shorter than the "
                            f"frequency {format_duration(every)}: events between runs would "
                            f"be missed; make the lookback at least the frequency", "lookback")
        return Schedule(every, lookback, False)

    def placeholders(self) -> dict[str, list[str]]:
        """The ``{{Column}}`` names in the title and description."""
        return {"title": PLACEHOLDER.findall(self.title),
                "description": PLACEHOLDER.findall(self.description)}

    def check(self) -> Schedule:
        """Every check that needs no engine; returns the schedule."""
        schedule = self.schedule()
        for where, names in self.placeholders().items():
            if len(set(names)) > MAX_PLACEHOLDERS:
                raise RuleError(f"the alert {where} uses {len(set(names))} columns "
                                f"({', '.join(sorted(set(names)))}); at most "
                                f"{MAX_PLACEHOLDERS} are allowed", where)
        if len(self.custom_details) > MAX_CUSTOM_DETAILS:
            raise RuleError(f"{len(self.custom_details)} custom details; at most "
                            f"{MAX_CUSTOM_DETAILS} are allowed", "custom_details")
        for key in self.custom_details:
            if not key.strip():
                raise RuleError("a custom detail needs a name", "custom_details")
        return schedule

    # -------------------------------------------------------------- YAML / JSON

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=False)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=True)
        data.setdefault("frequency", self.frequency)
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def rule_from_dict(data: Any, source: str = "") -> Rule:
    """A Rule from parsed YAML/JSON; pydantic's errors become one RuleError naming the field."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise RuleError(f"{where}a rule must be a mapping of fields (name, query, ...)")
    try:
        return Rule.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = (f"unknown field; rule fields are {', '.join(Rule.model_fields)}")
            problems.append(f"{loc}: {msg}" if loc else msg)
        field = ".".join(str(p) for p in e.errors()[0].get("loc", ())) if e.errors() else ""
        raise RuleError(f"{where}" + "; ".join(problems), field) from None


def load_rule_text(text: str, source: str = "") -> Rule:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RuleError(f"{source or 'rule'}: not valid YAML: {e}") from None
    return rule_from_dict(data, source)


def load_rule_file(path: str | Path) -> Rule:
    """A rule from a ``.yaml``/``.yml``/``.json`` file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RuleError(f"cannot read rule file {p}: {e.strerror}") from None
    return load_rule_text(text, str(p))


def rule_files(folder: str | Path) -> list[Path]:
    """The rule files of a folder (``*.yaml``, ``*.yml``), sorted."""
    d = Path(folder)
    if d.is_file():
        return [d]
    if not d.is_dir():
        raise RuleError(f"no such rules folder or file: {d}")
    return sorted(p for p in d.iterdir() if p.suffix.lower() in (".yaml", ".yml"))


BUILTIN_RULES = Path(__file__).resolve().parents[2] / "content" / "rules"
"""The built-in rules shipped with huntsman (``content/rules``)."""

Kind = Literal["device", "mailbox", "user", "file", "ip"]
