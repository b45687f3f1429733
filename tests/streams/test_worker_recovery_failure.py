"""A worker with a partition whose recovery from the lake raises (here a torn checkpoint) does not
stay up consuming only its other partitions: it retries, then exits non-zero with one message
naming the partition and the cause."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from contracts import lake as L
from jobs.runner import WorkerProcess
from streams.broker import city_topics, ensure_topics

pytestmark = pytest.mark.e2e


def test_worker_exits_non_zero_naming_the_partition_it_cannot_recover(fresh_broker, tmp_path: Path) -> None:
    ensure_topics(fresh_broker, city_topics(4))
    lake = tmp_path / "lake"
    torn = lake / L.checkpoint_path("city.traffic.v1", 2)
    torn.parent.mkdir(parents=True)
    torn.write_text('{"topic": "city.traffic.v1", "partition": 2, "commi')
    worker = WorkerProcess(fresh_broker, str(lake), tmp_path / "w.log", sources="traffic").start()
    assert worker.proc is not None
    try:
        code = worker.proc.wait(timeout=120)  # start-up and group join take ~10 s; retries ~4 s
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running (/ready {worker.status()}):\n{worker.log_tail(60)}")
    finally:
        worker.kill()
    log = worker.log_path.read_text(errors="replace")
    assert code == 1, log[-4000:]
    assert log.count("recovery failed topic=city.traffic.v1 partition=2 attempt=") == 4, log[-4000:]
    final = [line for line in log.splitlines() if line.startswith("cityflow worker: stopped:")]
    assert len(final) == 1, log[-4000:]
    assert "topic city.traffic.v1 partition 2: CorruptLakeFile: " in final[0]
    assert "_checkpoints/city.traffic.v1+2.json is not valid JSON" in final[0]
    assert "assigned topic=city.traffic.v1 partition=0" in log  # the others recovered...
    assert "ingest stopped" in log  # ...and were released on a graceful stop
