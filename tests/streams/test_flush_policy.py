"""When a partition's buffer lands (pure policy, no Kafka): by rows, by age, and all at once
when the worker has just drained a backlog; a live stream keeps its flush interval."""

from __future__ import annotations

from dataclasses import dataclass

from streams.ingest import BacklogTracker, flush_due


@dataclass
class Buf:
    buffered_rows: int
    buffered_age: float


def test_rows_or_age_make_a_buffer_due():
    sinks = {"full": Buf(50_000, 0.1), "old": Buf(10, 6.0), "young": Buf(40_000, 1.0), "empty": Buf(0, 0.0)}
    assert sorted(flush_due(sinks, flush_rows=50_000, flush_seconds=5.0)) == ["full", "old"]


def test_a_drained_backlog_lands_every_non_empty_buffer():
    sinks = {"a": Buf(30_000, 1.0), "b": Buf(200, 0.2), "c": Buf(0, 0.0)}
    assert sorted(flush_due(sinks, 50_000, 5.0, drained=True)) == ["a", "b"]


def test_an_empty_fetch_after_a_backlog_means_drained():
    t = BacklogTracker(threshold=10_000)
    assert [t.fetched(n) for n in (50_000, 50_000, 3_000, 0)] == [False, False, False, True]
    assert t.fetched(0) is False  # already reported; nothing fetched since


def test_a_bursty_live_stream_is_not_a_backlog():
    t = BacklogTracker(threshold=10_000)
    # devices reporting together: 2,000 records, then a quiet moment, again and again
    assert not any(t.fetched(n) for n in [2_000, 0] * 20)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_tail_of_a_backlog_that_trails_the_drain_lands_too():
    clock = Clock()
    t = BacklogTracker(threshold=10_000, settle_s=2.0, clock=clock)
    assert [t.fetched(n) for n in (50_000, 0)] == [False, True]
    clock.now += 1.0  # a late partition's fetch: a small batch, then empty again
    assert [t.fetched(n) for n in (3_000, 0)] == [False, True]
    clock.now += 3.0  # after the settle time a small batch is live traffic again
    assert [t.fetched(n) for n in (3_000, 0)] == [False, False]


def test_two_empty_fetches_in_a_row_end_the_settle_time():
    clock = Clock()
    t = BacklogTracker(threshold=10_000, settle_s=2.0, clock=clock)
    assert [t.fetched(n) for n in (50_000, 0, 0)] == [False, True, False]
    clock.now += 0.5
    assert [t.fetched(n) for n in (2_000, 0)] == [False, False]  # live traffic, not a tail


def test_threshold_zero_turns_it_off():
    t = BacklogTracker(threshold=0)
    assert not any(t.fetched(n) for n in (1_000_000, 0))
