"""Report periods: a calendar day, ISO week (Monday to Monday) or month, in a time zone.

    >>> p = Period.containing("week", date(2026, 11, 30), ZoneInfo("Europe/Berlin"))
    >>> p.key, p.start.isoformat(), p.end.isoformat()
    ('2026-W49', '2026-11-30T00:00:00+01:00', '2026-12-07T00:00:00+01:00')

Bounds are half-open [start, end) and time-zone aware; a day that has a DST change is 23 or 25
hours long, as the department reading the report expects ("Sunday" means Sunday in Duisburg).
Python subtracts two datetimes of one zone by wall clock, so measure durations in UTC
(`p.end.astimezone(UTC) - p.start.astimezone(UTC)`); DuckDB compares the instants correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal

PeriodKind = Literal["day", "week", "month"]
PERIOD_KINDS: tuple[PeriodKind, ...] = ("day", "week", "month")


def _first_day(kind: PeriodKind, d: date) -> date:
    if kind == "day":
        return d
    if kind == "week":
        return d - timedelta(days=d.weekday())
    if kind == "month":
        return d.replace(day=1)
    raise ValueError(f"period must be one of {', '.join(PERIOD_KINDS)}, got {kind!r}")


def _next_first_day(kind: PeriodKind, first: date) -> date:
    if kind == "day":
        return first + timedelta(days=1)
    if kind == "week":
        return first + timedelta(days=7)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def _midnight(d: date, tz: tzinfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


@dataclass(frozen=True)
class Period:
    """One report period: its kind, its first day and the zone its days are counted in."""

    kind: PeriodKind
    first_day: date
    tz: tzinfo

    @classmethod
    def containing(cls, kind: PeriodKind, d: date, tz: tzinfo) -> Period:
        return cls(kind, _first_day(kind, d), tz)

    @classmethod
    def at(cls, kind: PeriodKind, moment: datetime, tz: tzinfo) -> Period:
        """The period that contains an (aware) moment."""
        return cls.containing(kind, moment.astimezone(tz).date(), tz)

    @property
    def start(self) -> datetime:
        return _midnight(self.first_day, self.tz)

    @property
    def end(self) -> datetime:
        return _midnight(_next_first_day(self.kind, self.first_day), self.tz)

    @property
    def key(self) -> str:
        """A name for the period that sorts in time order: 2026-11-30, 2026-W49, 2026-11."""
        if self.kind == "day":
            return self.first_day.isoformat()
        if self.kind == "week":
            year, week, _ = self.first_day.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.first_day.year}-{self.first_day.month:02d}"

    def previous(self) -> Period:
        return Period.containing(self.kind, self.first_day - timedelta(days=1), self.tz)

    def next(self) -> Period:
        return Period(self.kind, _next_first_day(self.kind, self.first_day), self.tz)


def completed_periods(kind: PeriodKind, now: datetime, tz: tzinfo, count: int) -> list[Period]:
    """The last `count` periods that ended at or before `now`, oldest first."""
    if count < 1:
        return []
    latest = Period.at(kind, now, tz).previous()
    out = [latest]
    while len(out) < count:
        out.append(out[-1].previous())
    return out[::-1]


__all__ = ["PERIOD_KINDS", "Period", "PeriodKind", "completed_periods"]
