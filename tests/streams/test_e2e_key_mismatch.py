"""Mis-keyed records end to end on the real broker: readings of one detector produced with null
keys and with keys other than its detector_id would spread over all partitions and split the
detector's windows (each partition emitting its own part). They land in quarantine as
`key_mismatch` (none in raw or windows, good + quarantined == consumed), and after
`cityflow dlq replay --reason key_mismatch` every minute of that detector holds all its events,
windowed in one partition."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest
from kafka import KafkaProducer

from contracts.lake import Lake
from contracts.registry import CONTRACTS
from jobs.runner import WorkerProcess, wait_until_landed
from streams.broker import city_topics, ensure_topics
from warehouse.accounting import partition_accounts

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
FAST = {"CITYFLOW_FLUSH_SECONDS": "1", "CITYFLOW_REBALANCE_TIMEOUT_S": "3", "CITYFLOW_SESSION_TIMEOUT_S": "6"}
TOPIC = CONTRACTS["traffic"].topic
DETECTOR = "tdet-bridged"
MINUTES, PER_MINUTE = 5, 30
BASE = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


def reading(detector: str, at: datetime, count: int = 4) -> bytes:
    ts = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return orjson.dumps({"detector_id": detector, "ts": ts, "district": "Mitte", "road": "A59", "lane": 1,
                         "vehicle_count": count, "avg_speed_kmh": 50.0, "occupancy_pct": 10.0})


def mis_keyed() -> list[tuple[bytes | None, bytes]]:
    """The bridged detector's readings, half with a null key, half keyed by a gateway."""
    return [(None if i % 2 == 0 else f"gateway-{i % 7}".encode(),
             reading(DETECTOR, BASE + timedelta(minutes=m, seconds=2 * i), count=i))
            for m in range(MINUTES) for i in range(PER_MINUTE)]


def advancers(minutes: range) -> list[tuple[bytes | None, bytes]]:
    """Correctly keyed readings of 40 other detectors: they advance every partition's watermark."""
    return [(f"tdet-adv-{d:02d}".encode(), reading(f"tdet-adv-{d:02d}", BASE + timedelta(minutes=m, seconds=30)))
            for m in minutes for d in range(40)]


def send(bootstrap: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in records:
            producer.send(TOPIC, key=key, value=value)
        producer.flush(60)
    finally:
        producer.close()


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=REPO, check=False)


def rows(sql: str) -> list[tuple]:
    return duckdb.sql(sql).fetchall()


def test_mis_keyed_readings_are_quarantined_then_replayed_by_entity_into_whole_windows(fresh_broker, tmp_path):
    ensure_topics(fresh_broker, city_topics(4))
    lake = str(tmp_path / "lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYFLOW_")}
    env.update({"CITYFLOW_LAKE": lake, "CITYFLOW_KAFKA_BOOTSTRAP": fresh_broker, "PYTHONPATH": str(REPO)})
    bad = mis_keyed()
    phase1 = advancers(range(MINUTES + 2))
    later = advancers(range(MINUTES + 2, MINUTES + 5))
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "w.log", env=FAST).start()
    try:
        worker.wait_ready(90)
        send(fresh_broker, bad + phase1)
        wait_until_landed(lake, {"traffic": len(bad) + len(phase1)}, timeout=120, workers=[worker])

        raw = f"read_parquet('{lake}/raw/source=traffic/**/*.parquet', union_by_name = true)"
        windows = f"read_parquet('{lake}/windows/source=traffic/**/*.parquet', union_by_name = true)"
        quarantine = f"read_parquet('{lake}/quarantine/source=traffic/**/*.parquet', union_by_name = true)"
        # none of the mis-keyed readings is landed or windowed (before the fix: windows split
        # over the partitions, each holding a part of every minute) ...
        assert rows(f"SELECT count(*) FROM {windows} WHERE entity = '{DETECTOR}'") == [(0,)]
        assert rows(f"SELECT count(*) FROM {raw} WHERE detector_id = '{DETECTOR}'") == [(0,)]
        # ... every one is refused as key_mismatch, from all the partitions the keys spread it over
        assert rows(f"SELECT reason, field, count(*) FROM {quarantine} GROUP BY ALL") == [
            ("key_mismatch", "detector_id", len(bad))]
        assert rows(f"SELECT count(DISTINCT kafka_partition) FROM {quarantine}")[0][0] > 1
        assert rows(f"SELECT count(DISTINCT kafka_partition) FROM {raw}")[0][0] == 4  # all watermarks move
        accounts = partition_accounts(Lake(lake))
        assert accounts and all(a.balanced for a in accounts), accounts

        replay = cli(["dlq", "replay", "--reason", "key_mismatch"], env)
        assert replay.returncode == 0 and f"sent {len(bad)} of {len(bad)} records" in replay.stdout, (
            replay.stdout + replay.stderr)
        send(fresh_broker, later)
        wait_until_landed(lake, {"traffic": 2 * len(bad) + len(phase1) + len(later)}, timeout=120,
                          workers=[worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # replayed keyed by detector_id: one partition, every reading landed and windowed there
    assert rows(f"SELECT count(*), count(DISTINCT kafka_partition) FROM {raw} WHERE detector_id = '{DETECTOR}'"
                ) == [(len(bad), 1)]
    latest = rows(
        f"SELECT epoch_ms(window_start), arg_max(n_events, version), arg_max(vehicle_count, version), "
        f"count(DISTINCT kafka_partition) FROM {windows} WHERE entity = '{DETECTOR}' GROUP BY 1 ORDER BY 1")
    expected_minutes = [int((BASE + timedelta(minutes=m)).timestamp() * 1000) for m in range(MINUTES)]
    assert [r[0] for r in latest] == expected_minutes
    assert all(r[1:] == (PER_MINUTE, sum(range(PER_MINUTE)), 1) for r in latest), latest
    assert rows(f"SELECT count(DISTINCT kafka_partition) FROM {windows} WHERE entity = '{DETECTOR}'") == [(1,)]
    late = f"read_parquet('{lake}/late_events/source=traffic/**/*.parquet', union_by_name = true)"
    if Path(lake, "late_events").exists():
        assert rows(f"SELECT count(*) FROM {late} WHERE detector_id = '{DETECTOR}'") == [(0,)]
    assert all(a.balanced for a in partition_accounts(Lake(lake)))
    counts = cli(["verify", "--counts"], env)
    assert counts.returncode == 0 and "UNBALANCED" not in counts.stdout, counts.stdout + counts.stderr
