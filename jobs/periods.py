"""Report periods: a day, an ISO week (Monday to Monday) or a calendar month of a time zone's
calendar, as a half-open UTC interval [start, end) that the figures filter on.

    >>> p = period_of("day", date(2026, 3, 29), ZoneInfo("Europe/Berlin"))
    >>> p.label, p.start_utc, p.end_utc       # the spring-forward day has 23 hours
    ('2026-03-29', datetime(2026, 3, 28, 23, 0), datetime(2026, 3, 29, 22, 0))

Pure: no I/O, no clock (the default period takes `now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

PERIOD_KINDS = ("day", "week", "month")


@dataclass(frozen=True)
class Period:
    kind: str  # day, week or month
    first_day: date  # the first local calendar day of the period
    tz: str  # IANA zone whose calendar cuts the period

    @property
    def next_first_day(self) -> date:
        d = self.first_day
        if self.kind == "day":
            return d + timedelta(days=1)
        if self.kind == "week":
            return d + timedelta(days=7)
        return date(d.year + (d.month == 12), d.month % 12 + 1, 1)

    @property
    def label(self) -> str:
        """The directory name: 2026-11-30, 2026-W48 (ISO week) or 2026-11."""
        if self.kind == "day":
            return self.first_day.isoformat()
        if self.kind == "week":
            year, week, _ = self.first_day.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.first_day.year}-{self.first_day.month:02d}"

    def _utc(self, day: date) -> datetime:
        local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(self.tz))
        return local.astimezone(UTC).replace(tzinfo=None)

    @property
    def start_utc(self) -> datetime:
        """Local midnight of the first day, as a naive UTC datetime (what the figures bind)."""
        return self._utc(self.first_day)

    @property
    def end_utc(self) -> datetime:
        """Local midnight after the last day, naive UTC (exclusive)."""
        return self._utc(self.next_first_day)

    def previous(self) -> Period:
        """The period of the same kind just before this one."""
        return period_of(self.kind, self.first_day - timedelta(days=1), self.tz)

    def bounds_local(self) -> tuple[str, str]:
        """Start and end as ISO text with the zone's offset, for people and the manifest."""
        zone = ZoneInfo(self.tz)
        return tuple(  # type: ignore[return-value]
            t.replace(tzinfo=UTC).astimezone(zone).isoformat() for t in (self.start_utc, self.end_utc))


def period_of(kind: str, day: date, tz: str) -> Period:
    """The period of `kind` that contains the local calendar day `day`."""
    if kind == "day":
        first = day
    elif kind == "week":
        first = day - timedelta(days=day.weekday())
    elif kind == "month":
        first = day.replace(day=1)
    else:
        raise ValueError(f"period must be one of {', '.join(PERIOD_KINDS)}, got {kind!r}")
    return Period(kind, first, tz)


def last_complete_period(kind: str, now: datetime, tz: str) -> Period:
    """The newest period of `kind` that has ended by `now` (aware): yesterday, last week, last
    month in the zone's calendar."""
    today = now.astimezone(ZoneInfo(tz)).date()
    current = period_of(kind, today, tz)
    return period_of(kind, current.first_day - timedelta(days=1), tz)


def completed_periods(kind: str, now: datetime, tz: str, count: int) -> list[Period]:
    """The last `count` periods of `kind` that ended by `now` (aware), oldest first: what the
    scheduler looks at for missed exports."""
    if count < 1:
        return []
    out = [last_complete_period(kind, now, tz)]
    while len(out) < count:
        out.append(out[-1].previous())
    return out[::-1]


__all__ = ["PERIOD_KINDS", "Period", "completed_periods", "last_complete_period", "period_of"]
