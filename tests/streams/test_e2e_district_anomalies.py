"""The district kinds end to end on the real broker with a real worker process: a lamp fault
cluster and a congestion corroborated by crawling trucks (injected, labelled) each land once
in the lake's `anomalies` files and the view, and reach city.anomalies.v1. The city's 5 trucks
all hash to two of the four logistics partitions, so the stage must also tell empty
partitions (end offset 0) from ones that have landed nothing yet."""

from __future__ import annotations

import pandas as pd
import pyarrow.compute as pc
import pytest

from contracts.lake import Lake
from jobs.runner import WorkerProcess, wait_for_district_stage, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.detectors.district import CONGESTION_CORROBORATED, FAULT_CLUSTER
from streams.simulator import produce
from tests.streams.test_e2e_anomalies import anomalies_view, topic_alerts
from tests.support.district_city import MAX_AGE_DAYS, district_city, monday_start
from tests.support.e2e_checks import FAST_GROUP

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # ~110k events over three city days: over a minute
PARTITIONS = 4
KINDS = (FAULT_CLUSTER, CONGESTION_CORROBORATED)


def landed_rows(lake: str, kind: str) -> int:
    """Rows of `kind` in every landed anomalies file (no de-duplication, unlike the view)."""
    lk = Lake(lake)
    n = 0
    for rel in lk.list_files("anomalies"):
        t = lk.read_table(rel)
        n += pc.sum(pc.equal(t.column("kind"), kind)).as_py() or 0
    return n


def test_each_district_incident_lands_once_and_reaches_the_topic(fresh_broker, tmp_path):
    ensure_topics(fresh_broker, city_topics(PARTITIONS))
    events, labels = district_city(monday_start())
    sent = produce(events, {"bootstrap_servers": fresh_broker})
    lake = str(tmp_path / "lake")
    env = {**FAST_GROUP, "CITYFLOW_FLUSH_SECONDS": "1", "CITYFLOW_DETECTORS": "all",
           "CITYFLOW_MAX_EVENT_AGE_DAYS": str(MAX_AGE_DAYS), "CITYFLOW_DISTRICT_STAGE_INTERVAL_S": "1",
           "CITYFLOW_PARTITIONS": str(PARTITIONS)}
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "w.log", env=env).start()
    try:
        wait_until_landed(lake, sent, timeout=300, workers=[worker])
        wait_for_district_stage(lake, KINDS, PARTITIONS, timeout=120, workers=[worker])
        view = anomalies_view(lake, tmp_path / "w.duckdb")
        district = view[view["kind"].isin(KINDS)]
        on_topic = topic_alerts(fresh_broker, set(district["anomaly_id"]))
    finally:
        assert worker.stop() == 0, worker.log_tail()
    log = (tmp_path / "w.log").read_text()
    for kind in KINDS:
        (label,) = [lb for lb in labels if lb.kind == kind]
        mine = district[district["kind"] == kind]
        assert len(mine) == 1, (kind, mine[["entity", "window_start", "evidence"]], log[-3000:])
        assert landed_rows(lake, kind) == 1  # once in the files too, not only after the view's de-duplication
        row = mine.iloc[0]
        assert row["entity"] == row["district"] == label.entity
        start_ms = pd.Timestamp(row["window_start"]).value // 1_000_000
        assert label.start_ms - 15 * 60_000 <= start_ms <= label.end_ms
        sent_ids = [m["anomaly_id"] for m in on_topic if m["kind"] == kind]
        assert sent_ids == [row["anomaly_id"]], sent_ids
    assert "district stage kind=" in log
    assert not [line for line in log.splitlines() if "district stage kind=" in line and "failed (" in line]
