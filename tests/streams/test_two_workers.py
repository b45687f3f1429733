"""Two real workers in one consumer group on the embedded broker: they split the partitions,
one is killed mid-run and started again, and the lake still holds every produced event exactly
once. The slow variant freezes a worker (SIGSTOP) until the group gives its partitions away,
then wakes it up holding a buffer: its flush must be fenced, never land a second copy.

Rebalance timings on Tansu (docs/architecture.md, broker quirk 2) are printed with -s."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from contracts import lake as L
from contracts.registry import CONTRACTS
from jobs.runner import WorkerProcess, wait_for, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.simulator import generate
from tests.support.e2e_checks import (
    FAST_GROUP,
    TrackedProducer,
    assert_exactly_once,
    assert_windows_match_recompute,
)
from warehouse.accounting import landed_by_source

pytestmark = pytest.mark.e2e

ALL = {f"{c.topic}:{p}" for c in CONTRACTS.values() for p in range(4)}
ENV = {**FAST_GROUP, "CITYFLOW_FLUSH_SECONDS": "0.5", "CITYFLOW_FLUSH_ROWS": "2000"}


def split(a: WorkerProcess, b: WorkerProcess) -> tuple[set[str], set[str]] | None:
    """Both workers own partitions, none twice, all covered (None until that holds)."""
    pa_, pb = a.partitions(), b.partitions()
    return (pa_, pb) if pa_ and pb and not pa_ & pb and pa_ | pb == ALL else None


def start_pair(bootstrap: str, lake: str, tmp_path, tag: str = "") -> tuple[WorkerProcess, WorkerProcess]:
    return (WorkerProcess(bootstrap, lake, tmp_path / f"w1{tag}.log", env=ENV, name="w1").start(),
            WorkerProcess(bootstrap, lake, tmp_path / f"w2{tag}.log", env=ENV, name="w2").start())


def landed_total(lake: str) -> int:
    return sum(landed_by_source(L.Lake(lake)).values())


@pytest.mark.slow  # ~50 s: two workers, a kill, a takeover (make test neared its 15 min)
def test_two_workers_split_partitions_and_survive_a_kill(fresh_broker, tmp_path):
    ensure_topics(fresh_broker, city_topics(4))
    events = list(generate(seed=21, rate=500, seconds=40, speedup=120, start=datetime.now(UTC) - timedelta(hours=2)))
    producer = TrackedProducer(fresh_broker, events, seconds=25)
    lake = str(tmp_path / "lake")
    t0 = time.monotonic()
    w1, w2 = start_pair(fresh_broker, lake, tmp_path)
    workers = [w1, w2]
    try:
        first_split = wait_for(lambda: split(w1, w2), 60, "two workers splitting the partitions", workers)
        t_split = time.monotonic() - t0
        producer.start()
        wait_for(lambda: landed_total(lake) > len(events) // 5, 60, "a fifth of the events landed", workers)
        w2.kill()
        t_kill, landed_at_kill = time.monotonic(), landed_total(lake)
        wait_for(lambda: w1.partitions() == ALL, 60, "w1 taking over w2's partitions", [w1])
        takeover = time.monotonic() - t_kill
        w2 = WorkerProcess(fresh_broker, lake, tmp_path / "w2-restarted.log", env=ENV, name="w2").start()
        workers = [w1, w2]
        t_restart = time.monotonic()
        second_split = wait_for(lambda: split(w1, w2), 60, "the restarted w2 getting partitions back", workers)
        rejoin = time.monotonic() - t_restart
        produced = producer.produced()
        wait_until_landed(lake, producer.counts(), timeout=60, workers=workers)
        assert w1.stop() == 0, w1.log_tail()
        assert w2.stop() == 0, w2.log_tail()
    finally:
        for w in workers:
            w.kill()
    checked = assert_exactly_once(lake, produced, tmp_path / "w.duckdb")
    windows = assert_windows_match_recompute(lake, produced, tmp_path / "w.duckdb")
    print(f"\nsplit {len(first_split[0])}/{len(first_split[1])} after {t_split:.1f}s; w2 killed with "
          f"{landed_at_kill} landed; w1 owned all {len(ALL)} {takeover:.1f}s later; restarted w2 got "
          f"{len(second_split[1])} back after {rejoin:.1f}s; {sum(checked.values())} events exactly once, "
          f"{windows} windows equal the recompute")
    assert len(first_split[0]) == len(first_split[1]) == len(ALL) // 2  # range assignor: 2 of 4 per topic each


@pytest.mark.slow
def test_a_frozen_owner_wakes_up_fenced(fresh_broker, tmp_path):
    """SIGSTOP w2 (no heartbeats, buffer kept) until w1 owns everything and has landed past w2's
    offsets, then SIGCONT: whatever w2 tries to land of its old buffer is fenced."""
    ensure_topics(fresh_broker, city_topics(4))
    events = list(generate(seed=22, rate=600, seconds=50, speedup=120, start=datetime.now(UTC) - timedelta(hours=2)))
    producer = TrackedProducer(fresh_broker, events, seconds=35)
    lake = str(tmp_path / "lake")
    w1, w2 = start_pair(fresh_broker, lake, tmp_path)
    workers = [w1, w2]
    try:
        wait_for(lambda: split(w1, w2), 60, "two workers splitting the partitions", workers)
        producer.start()
        wait_for(lambda: landed_total(lake) > len(events) // 6, 60, "a sixth of the events landed", workers)
        w2.pause()
        t_pause = time.monotonic()
        wait_for(lambda: w1.partitions() == ALL, 60, "w1 taking over the frozen w2's partitions", [w1])
        takeover = time.monotonic() - t_pause
        mark = landed_total(lake)
        wait_for(lambda: landed_total(lake) > mark + 2000, 60, "w1 landing past w2's buffer", [w1])
        w2.resume()
        wait_for(lambda: split(w1, w2), 60, "w2 rejoining after waking up", workers)
        produced = producer.produced()
        wait_until_landed(lake, producer.counts(), timeout=60, workers=workers)
        assert w1.stop() == 0 and w2.stop() == 0
    finally:
        for w in workers:
            w.resume()
            w.kill()
    fenced = sum(p.read_text(errors="replace").count("flush fenced") for p in tmp_path.glob("w*.log"))
    checked = assert_exactly_once(lake, produced, tmp_path / "w.duckdb")
    print(f"\nfrozen w2 lost its partitions after {takeover:.1f}s; {fenced} flush(es) fenced after it woke; "
          f"{sum(checked.values())} events exactly once")
