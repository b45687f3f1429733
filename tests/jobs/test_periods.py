"""Report periods: labels and half-open UTC bounds of days, ISO weeks and months in a time
zone's calendar, daylight-saving days included."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from jobs.periods import last_complete_period, period_of


@pytest.mark.parametrize(("kind", "day", "tz", "label", "start", "end"), [
    ("day", date(2026, 11, 30), "UTC", "2026-11-30", datetime(2026, 11, 30), datetime(2026, 12, 1)),
    ("day", date(2026, 11, 30), "Europe/Berlin", "2026-11-30", datetime(2026, 11, 29, 23), datetime(2026, 11, 30, 23)),
    # spring forward: 23 hours; fall back: 25 hours
    ("day", date(2026, 3, 29), "Europe/Berlin", "2026-03-29", datetime(2026, 3, 28, 23), datetime(2026, 3, 29, 22)),
    ("day", date(2026, 10, 25), "Europe/Berlin", "2026-10-25", datetime(2026, 10, 24, 22), datetime(2026, 10, 25, 23)),
    # ISO weeks start on Monday; 2026-12-31 (a Thursday) is in 2026-W53, 2027-01-03 too
    ("week", date(2026, 11, 30), "UTC", "2026-W49", datetime(2026, 11, 30), datetime(2026, 12, 7)),
    ("week", date(2027, 1, 3), "UTC", "2026-W53", datetime(2026, 12, 28), datetime(2027, 1, 4)),
    ("month", date(2026, 12, 15), "UTC", "2026-12", datetime(2026, 12, 1), datetime(2027, 1, 1)),
    ("month", date(2026, 2, 28), "Europe/Berlin", "2026-02", datetime(2026, 1, 31, 23), datetime(2026, 2, 28, 23)),
])
def test_period_labels_and_bounds(kind: str, day: date, tz: str, label: str, start: datetime, end: datetime) -> None:
    p = period_of(kind, day, tz)
    assert (p.label, p.start_utc, p.end_utc) == (label, start, end)


def test_local_bounds_carry_the_offset() -> None:
    p = period_of("day", date(2026, 3, 29), "Europe/Berlin")
    assert p.bounds_local() == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")


def test_the_default_period_is_the_last_one_that_ended() -> None:
    now = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # already Dec 1 in UTC and in Berlin
    assert last_complete_period("day", now, "UTC").label == "2026-11-30"
    assert last_complete_period("week", now, "UTC").label == "2026-W48"
    assert last_complete_period("month", now, "UTC").label == "2026-11"
    # 23:30 UTC on Nov 30 is already Dec 1 in Berlin
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    assert last_complete_period("day", late, "UTC").label == "2026-11-29"
    assert last_complete_period("day", late, "Europe/Berlin").label == "2026-11-30"


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="day, week, month"):
        period_of("year", date(2026, 1, 1), "UTC")
