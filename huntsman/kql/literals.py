"""Parsing of the opaque literal bodies: ``datetime(...)``, ``timespan(...)``, ``guid(...)``.

Datetimes are naive ``datetime`` objects in UTC (microsecond precision: Kusto's 100 ns ticks are
rounded). Timespans are integers of ticks (100 ns).

>>> parse_datetime("2015-12-31 23:59:59.9")
datetime.datetime(2015, 12, 31, 23, 59, 59, 900000)
>>> parse_timespan("0.12:34:56.7") == (12 * 3600 + 34 * 60 + 56.7) * 10_000_000
True
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from huntsman.kql.tokens import TICKS_PER_UNIT

TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
EPOCH = datetime(1970, 1, 1)

_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_SLASH = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")
_TS_UNIT = re.compile(r"^(-)?(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)?$")


def parse_datetime(body: str) -> datetime | None:
    """Parse a Kusto datetime literal body; returns None for ``null``; raises ValueError."""
    s = body.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        s = s[1:-1].strip()
    if s.lower() == "null":
        return None
    for suffix in (" GMT", " UTC", " Z"):
        if s.endswith(suffix) and not s.startswith(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
                                                    "Sun")):
            s = s[: -len(suffix)].strip()
    m = _ISO.match(s)
    if m:
        y, mo, d, h, mi, sec, frac, tz = m.groups()
        micros = 0
        if frac:
            micros = round(int(frac.ljust(9, "0")[:9]) / 1000)
        try:
            dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0))
            dt += timedelta(microseconds=micros)
        except OverflowError:
            raise ValueError(f"'{body}' is out of the datetime range") from None
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            try:
                dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            except OverflowError:
                raise ValueError(f"'{body}' is out of the datetime range") from None
        return dt
    m = _SLASH.match(s)
    if m:
        mo, d, y, h, mi, sec = m.groups()
        return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0))
    try:
        parsed: datetime | None = parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is not None:
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    for fmt in ("%A, %d-%b-%y %H:%M:%S GMT", "%d-%b-%y %H:%M:%S", "%d-%b-%y %H:%M",
                "%d %b %Y %H:%M:%S", "%d %b %Y %H:%M", "%Y%m%d", "%Y%m%d %H:%M:%S",
                "%m-%d-%Y", "%m-%d-%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S"):
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            pass
    raise ValueError(f"'{body}' is not a valid datetime")


def parse_timespan(body: str) -> int | None:
    """Parse a Kusto timespan literal body into ticks; None for ``null``; raises ValueError."""
    s = body.strip()
    if s.lower() == "null":
        return None
    m = _TIMESPAN.match(s)
    if m:
        neg, days, h, mi, sec, frac = m.groups()
        ticks = (int(days or 0) * 86_400 + int(h) * 3600 + int(mi) * 60 + int(sec or 0)) \
            * TICKS_PER_SECOND
        if frac:
            ticks += int(frac.ljust(7, "0"))
        return -ticks if neg else ticks
    m = _TS_UNIT.match(s)
    if m:
        neg, num, unit = m.groups()
        if unit is None:
            ticks = round(float(num) * TICKS_PER_DAY)
        elif unit in TICKS_PER_UNIT:
            ticks = round(float(num) * TICKS_PER_UNIT[unit])
        else:
            raise ValueError(f"'{body}' is not a valid timespan")
        return -ticks if neg else ticks
    raise ValueError(f"'{body}' is not a valid timespan")


def parse_guid(body: str) -> str | None:
    s = body.strip()
    if s.lower() == "null":
        return None
    return str(uuid.UUID(s))


def format_timespan(ticks: int) -> str:
    """Kusto's display form of a timespan: ``[-][d.]hh:mm:ss[.fffffff]``."""
    neg = ticks < 0
    t = abs(ticks)
    days, rem = divmod(t, TICKS_PER_DAY)
    secs, frac = divmod(rem, TICKS_PER_SECOND)
    h, rem2 = divmod(secs, 3600)
    mi, s = divmod(rem2, 60)
    out = f"{h:02d}:{mi:02d}:{s:02d}"
    if days:
        out = f"{days}.{out}"
    if frac:
        out += f".{frac:07d}"
    return ("-" if neg else "") + out


def format_datetime_iso(dt: datetime) -> str:
    """Kusto's text form of a datetime: ``2020-01-01T00:00:00.0000000Z`` (7 fraction digits)."""
    # not strftime's %Y, which does not pad years before 1000 on every platform
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond:06d}0Z")
