"""When a partition's buffer lands (pure policy, no Kafka): by rows, by age, and all at once
when a drained backlog leaves the worker idle; low-rate streams keep waiting for their age."""

from __future__ import annotations

from dataclasses import dataclass

from streams.ingest import flush_due


@dataclass
class Buf:
    buffered_rows: int
    buffered_age: float


def test_rows_or_age_make_a_buffer_due():
    sinks = {"full": Buf(50_000, 0.1), "old": Buf(10, 6.0), "young": Buf(40_000, 1.0), "empty": Buf(0, 0.0)}
    assert sorted(flush_due(sinks, flush_rows=50_000, flush_seconds=5.0)) == ["full", "old"]


def test_an_idle_fetch_after_a_backlog_lands_every_buffer():
    sinks = {"a": Buf(30_000, 1.0), "b": Buf(200, 0.2), "c": Buf(0, 0.0)}
    assert sorted(flush_due(sinks, 50_000, 5.0, idle_flush_rows=1000)) == ["a", "b"]


def test_an_idle_fetch_with_little_buffered_keeps_waiting():
    sinks = {"a": Buf(300, 1.0), "b": Buf(200, 5.5)}  # 500 rows in all: below the idle threshold
    assert flush_due(sinks, 50_000, 5.0, idle_flush_rows=1000) == ["b"]
    assert flush_due(sinks, 50_000, 5.0, idle_flush_rows=0) == ["b"]  # 0 = off
