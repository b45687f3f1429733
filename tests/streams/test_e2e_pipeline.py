"""End to end on the real embedded broker: simulator -> worker -> Parquet; the lake holds
exactly the produced events and every final window equals an independent pandas recompute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import pytest

from contracts.aggregates import AGGREGATES
from contracts.lake import Lake
from contracts.registry import CONTRACTS
from jobs.runner import WorkerProcess, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.simulator import generate, produce
from tests.support.e2e_checks import source_partitions
from tests.support.oracle import assert_frames_close, final_windows
from warehouse.accounting import partition_accounts

pytestmark = pytest.mark.e2e


def test_pipeline_lands_exactly_what_was_produced(fresh_broker, tmp_path):
    ensure_topics(fresh_broker, city_topics(4))
    start = datetime.now(UTC) - timedelta(hours=2)
    events = list(generate(seed=11, rate=400, seconds=20, speedup=180, start=start))
    sent = produce(events, {"bootstrap_servers": fresh_broker})
    assert sum(sent.values()) == len(events) > 5000

    lake = str(tmp_path / "lake")
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "worker.log",
                           env={"CITYFLOW_FLUSH_SECONDS": "1"}).start()
    try:
        wait_until_landed(lake, sent, timeout=120, workers=[worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()

    accounts = partition_accounts(Lake(lake))
    assert len(accounts) == source_partitions() and all(a.balanced for a in accounts), accounts
    assert sum(a.consumed for a in accounts) == len(events)

    for source, contract in CONTRACTS.items():
        mine = pd.DataFrame([{**e.record, "ts": e.ts_ms} for e in events if e.source == source])
        mine = mine.reindex(columns=list(contract.field_names))  # fields added in v2+ absent: null
        raw = duckdb.sql(
            f"SELECT *, epoch_ms(ts) AS ts_ms FROM read_parquet('{lake}/raw/source={source}/**/*.parquet')"
        ).df()
        # exactly once: one row per Kafka offset, and the same multiset of records
        assert len(raw) == len(mine) == sent[source]
        assert raw[["kafka_partition", "kafka_offset"]].duplicated().sum() == 0
        cols = [f for f in contract.field_names if f != "ts"]
        landed = raw[cols + ["ts_ms"]].rename(columns={"ts_ms": "ts"}).sort_values([contract.key, "ts"])
        expect = mine[cols + ["ts"]].sort_values([contract.key, "ts"])
        pd.testing.assert_frame_equal(landed.reset_index(drop=True), expect.reset_index(drop=True),
                                      check_dtype=False)

        # every window whose end the partition's watermark has passed equals the recompute
        final = final_windows(mine, source, contract.key,
                              raw.groupby(contract.key)["kafka_partition"].first(),
                              raw.groupby("kafka_partition")["ts_ms"].max())
        streamed = duckdb.sql(
            f"SELECT * EXCLUDE (rn, window_start), epoch_ms(window_start) AS window_start FROM (SELECT *, row_number() OVER (PARTITION BY entity, window_start "
            f"ORDER BY version DESC) AS rn FROM read_parquet('{lake}/windows/source={source}/**/*.parquet')) WHERE rn = 1"
        ).df()
        streamed = streamed.set_index(["entity", "window_start"])
        assert len(final) > 20
        assert (streamed["version"] == 0).all()  # in-order stream: no corrections
        assert_frames_close(streamed, final, [a.name for a in AGGREGATES[source]])



def test_a_drained_backlog_lands_without_waiting_for_the_flush_interval(fresh_broker, tmp_path):
    """Flush interval and row limit are out of reach: only the idle flush (the fetch came back
    empty after the backlog) can land these events."""
    ensure_topics(fresh_broker, city_topics(2))
    events = list(generate(seed=5, rate=300, seconds=10, speedup=60, start=datetime.now(UTC) - timedelta(hours=1)))
    sent = produce(events, {"bootstrap_servers": fresh_broker})
    lake = str(tmp_path / "lake")
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "worker.log",
                           env={"CITYFLOW_PARTITIONS": "2", "CITYFLOW_FLUSH_SECONDS": "3600",
                                "CITYFLOW_FLUSH_ROWS": "10000000", "CITYFLOW_IDLE_FLUSH_ROWS": "1"}).start()
    try:
        wait_until_landed(lake, sent, timeout=120, workers=[worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()
    accounts = partition_accounts(Lake(lake))
    assert sum(a.consumed for a in accounts) == len(events) == sum(sent.values())
