"""After a real worker consumed good and bad records through the embedded broker, its /metrics
counters equal what the lake and the dead-letter path hold: consumed = raw + quarantined per
source, rows landed per table, DLQ by reason, windows emitted vs landed, freshness per source."""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from kafka import KafkaProducer

from contracts import lake as L
from contracts.registry import CONTRACTS
from jobs.runner import WorkerProcess, wait_for, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.simulator import encode, generate
from tests.support.e2e_checks import FAST_GROUP

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # ~35 s: one worker, a broker of its own

BAD = [b"not json", b'{"detector_id": "tdet-0001"}', b"[]", b'{"lamp_id": 5}']


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? ([-+0-9.eE]+|NaN)$", line)
        if m and not line.startswith("#"):
            labels = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def total(metrics: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def lake_count(lake: str, table: str, source: str, where: str = "") -> int:
    files = list(L.Lake(lake).list_files(f"{table}/source={source}"))
    if not files:
        return 0
    paths = ", ".join(f"'{lake}/{f}'" for f in files)
    return duckdb.execute(f"SELECT count(*) FROM read_parquet([{paths}], union_by_name = true) {where}").fetchall()[0][0]


def test_metrics_equal_the_lake_and_the_dlq(fresh_broker, tmp_path) -> None:
    ensure_topics(fresh_broker, city_topics(4))
    events = list(generate(seed=9, rate=300, seconds=20, speedup=60, start=datetime.now(UTC) - timedelta(hours=2)))
    producer = KafkaProducer(bootstrap_servers=fresh_broker, acks="all", linger_ms=20)
    for e in events:
        key, value = encode(e)
        producer.send(CONTRACTS[e.source].topic, key=key, value=value)
    for i, bad in enumerate(BAD * 3):
        producer.send(CONTRACTS["traffic" if i % 2 else "lighting"].topic, key=b"tdet-0001", value=bad)
    producer.flush()
    producer.close()
    expected = Counter(e.source for e in events)
    expected["traffic"] += len(BAD * 3) // 2
    expected["lighting"] += len(BAD * 3) - len(BAD * 3) // 2

    lake = str(tmp_path / "lake")
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "w.log",
                           env={**FAST_GROUP, "CITYFLOW_FLUSH_SECONDS": "0.5"}).start()
    try:
        worker.wait_ready(timeout=60)
        wait_until_landed(lake, expected, timeout=90, workers=[worker])
        # the counters follow the flush that landed the last rows
        metrics = wait_for(lambda: (m := scrape(worker.web_port)) and
                           total(m, "cityflow_consumed_total") >= sum(expected.values()) and
                           total(m, "cityflow_landed_rows_total", table="quarantine") >= len(BAD * 3) and m,
                           30, "metrics to catch up", [worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()

    for source in CONTRACTS:
        raw = lake_count(lake, L.RAW, source)
        quarantined = lake_count(lake, L.QUARANTINE, source)
        assert total(metrics, "cityflow_consumed_total", source=source) == raw + quarantined == expected[source]
        assert total(metrics, "cityflow_landed_rows_total", table="raw", source=source) == raw
        assert total(metrics, "cityflow_landed_rows_total", table="quarantine", source=source) == quarantined
        windows = lake_count(lake, L.WINDOWS, source)
        assert total(metrics, "cityflow_landed_rows_total", table="windows", source=source) == windows
        assert total(metrics, "cityflow_windows_emitted_total", source=source) == windows
        newest = duckdb.execute(f"SELECT max(epoch_ms(ts)) FROM read_parquet('{lake}/raw/source={source}/**/*.parquet')"
                            ).fetchall()[0][0]
        assert total(metrics, "cityflow_last_landed_event_timestamp_seconds", source=source) == pytest.approx(
            newest / 1000, abs=0.001)
    reasons = duckdb.sql(f"SELECT source, reason, count(*) FROM read_parquet('{lake}/quarantine/**/*.parquet', "
                         "hive_partitioning = true) GROUP BY ALL").fetchall()
    assert reasons and all(total(metrics, "cityflow_dlq_total", source=s, reason=r) == n for s, r, n in reasons)
    lags = [v for (n, _), v in metrics.items() if n == "cityflow_partition_lag_records"]
    assert lags and all(v >= 0 for v in lags)
