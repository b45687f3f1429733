"""SIGTERM a real worker mid-batch while events are produced, three times, then let a last one
finish: each stop exits 0 in bounded time, leaves no half-written file, and never commits a Kafka
offset past what the lake landed; in the end every produced event is in the lake exactly once."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import lake as L
from contracts.registry import CONTRACTS
from contracts.settings import load_settings
from jobs.runner import WorkerProcess, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.simulator import generate
from streams.topics import consumer_lag, topic_specs
from tests.support.e2e_checks import FAST_GROUP, TrackedProducer, assert_exactly_once

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STOP_BOUND_S = 30  # generous: a graceful stop flushes one buffer and leaves the group


def _no_partial_files(lake_root: str) -> None:
    lake = L.Lake(lake_root)
    for table in L.TABLES:
        for rel in lake.list_files(table, include_superseded=True):
            lake.read_table(rel)  # every visible file is a whole Parquet file
    temp = [p for p in Path(lake_root).rglob(".*") if p.is_file() and "_staging" not in p.parts]
    assert not temp, f"temp files left in the lake: {temp[:5]}"


def _commits_never_pass_the_lake(bootstrap: str, lake_root: str) -> int:
    settings = load_settings()
    rows = consumer_lag({"bootstrap_servers": [bootstrap]}, L.Lake(lake_root), "cityflow-ingest", topic_specs(settings),
                        [c.topic for c in CONTRACTS.values()])
    checked = 0
    for r in rows:
        if r.committed is not None:
            assert r.landed is not None and r.committed <= r.landed, r
            checked += 1
    return checked


def test_sigterm_mid_batch_under_load(fresh_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYFLOW_GROUP_ID", "cityflow")
    ensure_topics(fresh_broker, city_topics(4))
    events = list(generate(seed=5, rate=800, seconds=60, speedup=120, start=datetime.now(UTC) - timedelta(hours=3)))
    producer = TrackedProducer(fresh_broker, events, seconds=180)  # outlasts three worker starts on a slow machine
    lake = str(tmp_path / "lake")
    env = {**FAST_GROUP, "CITYFLOW_FLUSH_SECONDS": "1", "CITYFLOW_FLUSH_ROWS": "4000"}
    rng = random.Random(5)
    producer.start()
    stops = []
    worker = None
    try:
        for i in range(3):
            worker = WorkerProcess(fresh_broker, lake, tmp_path / f"worker-{i}.log", env=env, name=f"worker-{i}").start()
            worker.wait_ready(timeout=60)
            time.sleep(rng.uniform(0.5, 3.0))  # mid-stream: consuming, buffering, flushing
            assert producer.is_alive(), "the producer finished before the stop: no load to stop under"
            t0 = time.monotonic()
            code = worker.stop(timeout=STOP_BOUND_S)
            stops.append(time.monotonic() - t0)
            assert code == 0, worker.log_tail()
            _no_partial_files(lake)
            assert _commits_never_pass_the_lake(fresh_broker, lake) > 0
        worker = WorkerProcess(fresh_broker, lake, tmp_path / "worker-final.log", env=env, name="worker-final").start()
        worker.wait_ready(timeout=60)
        produced = producer.produced()
        wait_until_landed(lake, producer.counts(), timeout=120, workers=[worker])
        assert worker.stop() == 0, worker.log_tail()
        checked = assert_exactly_once(lake, produced, tmp_path / "w.duckdb")
    finally:
        if worker is not None:
            worker.kill()
    print(f"3 SIGTERMs under load, stopped in {', '.join(f'{s:.1f}' for s in stops)} s; "
          f"{sum(checked.values())} events exactly once")
