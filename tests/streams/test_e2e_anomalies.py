"""Alerts end to end on the real broker with real worker processes: a refrigerated truck
warming up in an otherwise normal logistics stream appears exactly once in the `anomalies`
view and on city.anomalies.v1; a worker killed with kill -9 mid-run and restarted leaves the
anomalies table identical to an uninterrupted run's."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pytest
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from contracts.lake import Lake
from contracts.registry import ANOMALY_TOPIC
from jobs.runner import WorkerProcess, wait_for, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.simulator import produce
from tests.support.e2e_checks import FAST_GROUP
from tests.support.incidents import COLD_CHAIN, REEFER, UNSTABLE, logistics_city
from warehouse.accounting import landed_by_source
from warehouse.db import build_warehouse

pytestmark = pytest.mark.e2e
PARTITIONS = 4


def city_with_incident():
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3, minutes=15)
    return logistics_city(start)


def anomalies_view(lake: str, db: Path) -> pd.DataFrame:
    build_warehouse(lake, db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        frame = con.execute("SELECT * FROM anomalies ORDER BY anomaly_id").df()
    finally:
        con.close()
    return frame


def topic_alerts(bootstrap: str, until_ids: set[str], timeout: float = 60, drain_s: float = 3) -> list[dict]:
    """Every message on the anomalies topic, read from the beginning until all of `until_ids`
    were seen and then `drain_s` more seconds (to catch duplicates) or the timeout."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest")
    try:
        tps = [KafkaTopicPartition(ANOMALY_TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[dict] = []
        deadline, drain_until = time.monotonic() + timeout, None
        while time.monotonic() < (drain_until or deadline):
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(orjson.loads(r.value) | {"_key": r.key.decode()} for r in records)
            if drain_until is None and until_ids <= {m["anomaly_id"] for m in out}:
                drain_until = time.monotonic() + drain_s
        return out
    finally:
        consumer.close()


def test_an_incident_is_alerted_once_in_the_view_and_on_the_topic(fresh_broker, tmp_path):
    ensure_topics(fresh_broker, city_topics(PARTITIONS))
    events, incident = city_with_incident()
    sent = produce(events, {"bootstrap_servers": fresh_broker})
    lake = str(tmp_path / "lake")
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "w.log", sources="logistics",
                           env={**FAST_GROUP, "CITYFLOW_FLUSH_SECONDS": "1", "CITYFLOW_DETECTORS": "all"}).start()
    try:
        wait_until_landed(lake, sent, timeout=120, workers=[worker])
        view = anomalies_view(lake, tmp_path / "w.duckdb")
        cold = view[view["kind"] == COLD_CHAIN]
        assert len(cold) == 1 and cold["entity"].iloc[0] == REEFER, view
        start_ms = pd.Timestamp(cold["window_start"].iloc[0]).value // 1_000_000
        assert incident.start_ms - 5 * 60_000 < start_ms <= incident.start_ms
        on_topic = topic_alerts(fresh_broker, set(view["anomaly_id"]))
    finally:
        assert worker.stop() == 0, worker.log_tail()
    ids = [m["anomaly_id"] for m in on_topic]
    assert sorted(ids) == sorted(view["anomaly_id"])  # every landed alert, each once (no crash here)
    (alert,) = [m for m in on_topic if m["kind"] == COLD_CHAIN]
    assert alert["_key"] == REEFER and alert["anomaly_id"] == cold["anomaly_id"].iloc[0]


def _landed(lake: str) -> int:
    return landed_by_source(Lake(lake)).get("logistics", 0)


@pytest.mark.slow
def test_kill_9_mid_run_leaves_the_anomalies_of_an_uninterrupted_run(fresh_broker, tmp_path):
    ensure_topics(fresh_broker, city_topics(PARTITIONS))
    events, _ = city_with_incident()
    sent = produce(events, {"bootstrap_servers": fresh_broker})
    # small fetches and flushes, so the worker is killed between many flushes
    env = {**FAST_GROUP, "CITYFLOW_FLUSH_SECONDS": "0.3", "CITYFLOW_FLUSH_ROWS": "150",
           "CITYFLOW_FETCH_MAX_RECORDS": "100", "CITYFLOW_DETECTORS": "all"}

    reference = str(tmp_path / "reference")
    worker = WorkerProcess(fresh_broker, reference, tmp_path / "ref.log", sources="logistics", name="ref",
                           env={**env, "CITYFLOW_GROUP_ID": "reference"}).start()
    try:
        wait_until_landed(reference, sent, timeout=180, workers=[worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()
    expected = anomalies_view(reference, tmp_path / "ref.duckdb")
    assert (expected["kind"] == COLD_CHAIN).sum() == 1

    lake = str(tmp_path / "lake")
    crash_env = {**env, "CITYFLOW_GROUP_ID": "crashing"}
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "w1.log", sources="logistics", name="w1",
                           env=crash_env).start()
    try:
        landed = wait_for(lambda: (n := _landed(lake)) >= sent["logistics"] // 3 and n, 120,
                          "a third landed", [worker], interval=0.05)
        worker.kill()
    finally:
        worker.kill()
    assert landed < sent["logistics"], "the worker finished before the kill: the test proves nothing"
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "w2.log", sources="logistics", name="w2",
                           env=crash_env).start()
    try:
        wait_until_landed(lake, sent, timeout=180, workers=[worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()
    restarted = (tmp_path / "w2.log").read_text()
    assert "replay topic=city.logistics.v1" in restarted  # it recovered the killed worker's partitions
    assert "no detector state landed" not in restarted  # ... with the detector state landed with them
    actual = anomalies_view(lake, tmp_path / "w.duckdb")
    pd.testing.assert_frame_equal(actual.drop(columns=UNSTABLE), expected.drop(columns=UNSTABLE))
    on_topic = topic_alerts(fresh_broker, set(actual["anomaly_id"]))
    assert set(actual["anomaly_id"]) <= {m["anomaly_id"] for m in on_topic}
