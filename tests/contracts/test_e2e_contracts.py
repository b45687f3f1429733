"""The contract layer end to end on a real broker and real workers: 40+ classes of bad input
(garbage bytes, 10 MB payloads, NaN, 400 % dimming, 1970 clocks, ids full of ../ ...) mixed
into simulator traffic and v1 + v2 traffic producers.

One pipeline run (module fixture) in two phases:
  1. worker A (max event age 2 days) consumes good records, v2 records, every bad class and
     duplicates; 2. worker A stops, worker B (default age 7 days: "the fix") starts, rebuilds its
     state from the lake and catches duplicates of records landed before the restart; then
     `cityflow dlq replay --reason ts_too_old` twice: the fixed record lands once, never twice.
Every test below asserts on that run's lake, DLQ topic and command outputs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contracts.lake import Lake
from contracts.quarantine import DLQ_MAX_VALUE_BYTES
from contracts.registry import CONTRACTS, DLQ_TOPIC
from contracts.schema import Reason
from jobs.runner import WorkerProcess, wait_until_landed
from streams.broker import EmbeddedBroker, city_topics, ensure_topics
from streams.simulator import generate, produce
from tests.support.e2e_checks import source_partitions
from warehouse.accounting import partition_accounts

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
# flush every second; short group timeouts: a join on Tansu takes about half the rebalance timeout
FAST = {"CITYFLOW_FLUSH_SECONDS": "1", "CITYFLOW_REBALANCE_TIMEOUT_S": "3", "CITYFLOW_SESSION_TIMEOUT_S": "6"}
NOW = datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def traffic(key: str, **changes: Any) -> dict[str, Any]:
    rec = {"detector_id": key, "ts": iso(NOW - timedelta(minutes=55)), "district": "Mitte", "road": "A59",
           "lane": 2, "vehicle_count": 12, "avg_speed_kmh": 48.5, "occupancy_pct": 11.0}
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not DROP}


def lighting(key: str, **changes: Any) -> dict[str, Any]:
    rec = {"lamp_id": key, "ts": iso(NOW - timedelta(minutes=55)), "district": "Süd", "status": "dimmed",
           "dim_level_pct": 40.0, "power_w": 31.0, "ambient_lux": 2.0, "fault_code": None}
    rec.update(changes)
    return rec


def wifi(key: str, **changes: Any) -> dict[str, Any]:
    rec = {"ap_id": key, "ts": iso(NOW - timedelta(minutes=55)), "site_type": "zoo", "district": "Mitte",
           "connected_clients": 40, "bytes_in": 10_000, "bytes_out": 20_000, "auth_failures": 0,
           "latency_ms": 12.0, "status": "up"}
    rec.update(changes)
    return rec


def logistics(key: str, **changes: Any) -> dict[str, Any]:
    rec = {"vehicle_id": key, "ts": iso(NOW - timedelta(minutes=55)), "lat": 51.45, "lon": 6.73,
           "speed_kmh": 30.0, "status": "moving", "cargo_temp_c": None, "eta_minutes": 14.0}
    rec.update(changes)
    return rec


DROP = object()


def js(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, ensure_ascii=False).encode()  # Python's encoder: NaN, big ints allowed


@dataclass(frozen=True)
class Bad:
    """One bad-input class: what is sent where, and the reason (and field) it must get."""

    name: str
    source: str
    value: bytes
    reason: str
    field: str | None = None

    @property
    def key(self) -> bytes:
        return f"fuzz-{self.name}".encode()


def bad_inputs() -> list[Bad]:
    t = lambda **c: js(traffic("tdet-fuzz", **c))
    long_road = "x" * (64 * 1024)
    return [
        Bad("truncated_json", "traffic", t()[:40], "not_json"),
        Bad("empty_value", "traffic", b"", "empty"),
        Bad("binary_garbage", "wifi", bytes(range(256)) * 4, "not_json"),
        Bad("payload_10mb", "traffic", b'{"detector_id": "' + b"A" * (10 * 1024 * 1024) + b'"}', "too_large"),
        Bad("just_over_64kib", "traffic", t(road=long_road), "too_large"),
        Bad("json_array", "lighting", b"[1, 2, 3]", "not_object"),
        Bad("json_string", "lighting", b'"on"', "not_object"),
        Bad("json_null", "lighting", b"null", "not_object"),
        Bad("missing_key_field", "traffic", t(detector_id=DROP), "missing_field", "detector_id"),
        Bad("missing_other_field", "traffic", t(occupancy_pct=DROP), "missing_field", "occupancy_pct"),
        Bad("string_for_number", "traffic", t(vehicle_count="12"), "wrong_type", "vehicle_count"),
        Bad("bool_for_int", "traffic", t(lane=True), "wrong_type", "lane"),
        Bad("float_for_int", "traffic", t(lane=1.5), "wrong_type", "lane"),
        Bad("int_beyond_64_bits", "traffic", t(vehicle_count=2**70), "wrong_type", "vehicle_count"),
        Bad("object_for_string", "traffic", t(district={"name": "Mitte"}), "wrong_type", "district"),
        Bad("epoch_number_ts", "traffic", t(ts=int(NOW.timestamp())), "wrong_type", "ts"),
        Bad("nan_literal", "traffic", t(avg_speed_kmh=math.nan), "not_finite", "avg_speed_kmh"),
        Bad("infinity_literal", "traffic", t(occupancy_pct=math.inf), "not_finite", "occupancy_pct"),
        Bad("number_overflowing_double", "traffic", t()[:-1] + b', "road_temp_c": 1e999}', "not_finite", "road_temp_c"),
        Bad("negative_count", "wifi", js(wifi("ap-fuzz", connected_clients=-1)), "out_of_range", "connected_clients"),
        Bad("dimming_400_pct", "lighting", js(lighting("lamp-fuzz", dim_level_pct=400.0)), "out_of_range", "dim_level_pct"),
        Bad("gps_outside_city", "logistics", js(logistics("truck-fuzz", lat=0.0, lon=0.0)), "out_of_range", "lat"),
        Bad("v2_field_out_of_range", "traffic", t(road_temp_c=300.0), "out_of_range", "road_temp_c"),
        Bad("empty_string", "traffic", t(road=""), "out_of_range", "road"),
        Bad("unknown_enum", "lighting", js(lighting("lamp-fuzz", status="exploded")), "bad_enum", "status"),
        Bad("enum_wrong_case", "wifi", js(wifi("ap-fuzz", district="mitte")), "bad_enum", "district"),
        Bad("far_future_ts", "traffic", t(ts="2099-01-01T00:00:00Z"), "ts_in_future", "ts"),
        Bad("clock_at_1970", "logistics", js(logistics("truck-fuzz", ts="1970-01-01T00:00:00Z")), "ts_too_old", "ts"),
        Bad("non_utc_offset", "traffic", t(ts=(NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+02:00")),
            "bad_timestamp", "ts"),
        Bad("no_zone_local_time", "traffic", t(ts=(NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")),
            "bad_timestamp", "ts"),
        Bad("unparseable_ts", "traffic", t(ts="yesterday at noon"), "bad_timestamp", "ts"),
        Bad("impossible_date", "traffic", t(ts="2024-02-30T12:00:00Z"), "bad_timestamp", "ts"),
        Bad("path_traversal_id", "traffic", js(traffic("../../etc/passwd")), "bad_id", "detector_id"),
        Bad("sql_looking_id", "traffic", js(traffic("x'; DROP TABLE raw_traffic; --")), "bad_id", "detector_id"),
        Bad("homoglyph_id", "traffic", js(traffic("tdet-0042".replace("e", "\u0435"))), "bad_id", "detector_id"),
        Bad("zero_width_id", "traffic", js(traffic("tdet\u200b0042")), "bad_id", "detector_id"),
        Bad("emoji_id", "wifi", js(wifi("ap-\U0001f600")), "bad_id", "ap_id"),
        Bad("id_too_long", "traffic", js(traffic("t" * 65)), "bad_id", "detector_id"),
        Bad("lone_surrogate", "traffic", t(road="\\ud800").replace(b"\\\\ud800", b"\\ud800"), "not_json"),
        Bad("invalid_utf8", "traffic", t(road="R\u00e4").replace("R\u00e4".encode(), b"R\xe4"), "not_json"),
        Bad("utf8_bom", "traffic", b"\xef\xbb\xbf" + t(), "not_json"),
        Bad("deep_nesting", "traffic", b"[" * 5000 + b"]" * 5000, "not_json"),
        Bad("null_not_nullable", "traffic", t(road=None), "null_field", "road"),
        Bad("extra_unknown_field", "traffic", t(firmware="1.2.3"), "unknown_field", "firmware"),
        Bad("key_not_the_entity_id", "traffic", t(), "key_mismatch", "detector_id"),  # keyed fuzz-...
    ]


@dataclass
class FuzzRun:
    lake: str
    bootstrap: str
    env: dict[str, str]
    bad: list[Bad]
    good: dict[str, list[dict[str, Any]]]  # source -> records that must land exactly once
    v2_records: list[dict[str, Any]]
    duplicates: list[tuple[bytes, bytes]]  # (key, value) re-sent copies
    restart_duplicates: list[tuple[bytes, bytes]]
    replay_outputs: list[str]
    workers_alive_at_end: bool
    exit_codes: list[int | None]
    dlq_messages: list[Any]
    worker_metrics: str


def _send(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_request_size=16 * 1024 * 1024)
    try:
        for topic, key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(60)
    finally:
        producer.close()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], env=env, capture_output=True,
                          text=True, timeout=180, cwd=REPO, check=False)


def _read_dlq(bootstrap: str, expected: int, timeout: float = 60) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             max_partition_fetch_bytes=2 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    try:
        consumer.assign([TopicPartition(DLQ_TOPIC, p) for p in range(4)])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
        return got
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> FuzzRun:
    if os.environ.get("CITYFLOW_KAFKA_BOOTSTRAP"):
        pytest.skip("needs its own broker; CITYFLOW_KAFKA_BOOTSTRAP points at a shared one")
    tmp = tmp_path_factory.mktemp("fuzz")
    lake = str(tmp / "lake")
    with EmbeddedBroker().start(log_path=tmp / "tansu.log") as broker:
        bs = broker.bootstrap
        ensure_topics(bs, city_topics(4))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYFLOW_")}
        env.update({"CITYFLOW_LAKE": lake, "CITYFLOW_KAFKA_BOOTSTRAP": bs, "PYTHONPATH": str(REPO),
                    "CITYFLOW_WAREHOUSE_DB": str(tmp / "city.duckdb")})

        # -- phase 1: worker A, events older than 2 days are rejected --------------------------
        worker_a = WorkerProcess(bs, lake, tmp / "worker-a.log", name="worker-a",
                                 env={**FAST, "CITYFLOW_MAX_EVENT_AGE_DAYS": "2"}).start()
        worker_a.wait_ready(90)
        events = list(generate(seed=5, rate=300, seconds=10, speedup=60, start=NOW - timedelta(hours=1)))
        sent = produce(events, {"bootstrap_servers": bs})
        good: dict[str, list[dict[str, Any]]] = {s: [] for s in CONTRACTS}
        for e in events:
            good[e.source].append(e.record)
        # v2 producers (road_temp_c) next to the simulator's v1 records; unicode that is fine
        v2 = [traffic(f"tdet-v2-{i:02d}", road_temp_c=-4.0 + i, road="Königstraße 🚧", lane=1 + i % 3)
              for i in range(12)]
        good["traffic"] += v2
        bad = bad_inputs()
        # a record sent twice back to back (same fetch) and copies of landed simulator records
        twice = traffic("tdet-twice", vehicle_count=3)
        good["traffic"].append(twice)
        copies = [(e.key.encode(), orjson.dumps(e.record)) for e in events[5:400:40]]
        _send(bs, [(CONTRACTS["traffic"].topic, r["detector_id"].encode(), js(r)) for r in v2]
              + [(CONTRACTS[b.source].topic, b.key, b.value) for b in bad]
              + [(CONTRACTS["traffic"].topic, b"tdet-twice", js(twice))] * 2)
        _send(bs, [(CONTRACTS[_source_of(events, k)].topic, k, v) for k, v in copies])
        # valid but 2 days + 1 hour old: rejected now, replayed after the fix
        stale = traffic("tdet-stale", ts=iso(NOW - timedelta(days=2, hours=1)))
        _send(bs, [(CONTRACTS["traffic"].topic, b"tdet-stale", js(stale))])
        expected = dict(sent)
        for b in bad:
            expected[b.source] = expected.get(b.source, 0) + 1
        expected["traffic"] += len(v2) + 2 + 1
        for k, _ in copies:
            src = _source_of(events, k)
            expected[src] += 1
        wait_until_landed(lake, expected, timeout=120, workers=[worker_a])
        alive_a = worker_a.alive
        code_a = worker_a.stop()

        # -- phase 2: the fix (default age limit); restart; duplicates of pre-restart records ---
        worker_b = WorkerProcess(bs, lake, tmp / "worker-b.log", name="worker-b", env=FAST).start()
        worker_b.wait_ready(90)
        restart_copies = [(e.key.encode(), orjson.dumps(e.record)) for e in events[-300::37]]
        _send(bs, [(CONTRACTS[_source_of(events, k)].topic, k, v) for k, v in restart_copies])
        for k, _ in restart_copies:
            expected[_source_of(events, k)] += 1
        replay_outputs = []
        first = _cli(["dlq", "replay", "--reason", "ts_too_old"], env)
        replay_outputs.append(first.stdout + first.stderr)
        expected["traffic"] += 1  # the stale record, accepted now
        expected["logistics"] += 1  # the 1970 record, quarantined again
        wait_until_landed(lake, expected, timeout=60, workers=[worker_b])
        second = _cli(["dlq", "replay", "--reason", "ts_too_old"], env)
        replay_outputs.append(second.stdout + second.stderr)
        expected["logistics"] += 1  # only the new quarantine copy of the 1970 record
        wait_until_landed(lake, expected, timeout=60, workers=[worker_b])
        good["traffic"].append(stale)
        dlq_metrics = _scrape_until(worker_b, lambda text: _observed(text, "ts_too_old", "city.logistics.v1") >= 2)
        alive_b = worker_b.alive
        code_b = worker_b.stop()
        quarantined = sum(a.quarantined_rows for a in partition_accounts(Lake(lake)))
        dlq = _read_dlq(bs, quarantined)
        assert first.returncode == 0 and second.returncode == 0, replay_outputs
    return FuzzRun(lake, bs, env, bad, good, v2, copies, restart_copies, replay_outputs,
                   alive_a and alive_b, [code_a, code_b], dlq, dlq_metrics)


def _observed(metrics_text: str, reason: str, topic: str) -> float:
    """cityflow_dlq_observed_total for one reason and topic in a /metrics text (0 if absent)."""
    prefix = f'cityflow_dlq_observed_total{{reason="{reason}",source_topic="{topic}"}} '
    return sum(float(line[len(prefix):]) for line in metrics_text.splitlines() if line.startswith(prefix))


def _scrape_until(worker: WorkerProcess, ready: Callable[[str], bool], timeout: float = 30) -> str:
    """The worker's /metrics text once `ready(text)` (or at the deadline)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            text = ""
        if ready(text):
            break
        time.sleep(0.5)
    return text


def _source_of(events: list[Any], key: bytes) -> str:
    for e in events:
        if e.key.encode() == key:
            return e.source
    raise KeyError(key)


def _quarantine(lake: str) -> list[dict[str, Any]]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{lake}/quarantine/**/*.parquet', hive_partitioning = true)"
                      ).to_arrow_table().to_pylist()


def test_the_suite_covers_at_least_twenty_distinct_bad_input_classes(run: FuzzRun) -> None:
    assert len({b.name for b in run.bad}) == len(run.bad) >= 40
    # together with the duplicates, every reason code is exercised
    assert {b.reason for b in run.bad} | {"duplicate"} == {r.value for r in Reason}


def test_workers_kept_running_and_stopped_cleanly(run: FuzzRun) -> None:
    assert run.workers_alive_at_end
    assert run.exit_codes == [0, 0]


def test_every_bad_record_is_quarantined_once_with_its_reason_and_original_bytes(run: FuzzRun) -> None:
    rows = _quarantine(run.lake)
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    wrong = []
    for b in run.bad:
        got = by_key.get(b.key, [])
        if b.name == "clock_at_1970":  # replayed twice after the fix, rejected each time
            assert len(got) == 3 and {r["reason"] for r in got} == {"ts_too_old"}
            got = got[:1]
        if len(got) != 1:
            wrong.append((b.name, f"{len(got)} quarantine rows"))
            continue
        r = got[0]
        if (r["reason"], r["source"]) != (b.reason, b.source) or (b.field is not None and r["field"] != b.field):
            wrong.append((b.name, r["reason"], r["field"], r["detail"][:100]))
        if (r["value"] or b"") != b.value:
            wrong.append((b.name, "value bytes differ"))
    assert wrong == []


def test_duplicates_are_quarantined_within_a_run_and_after_a_restart(run: FuzzRun) -> None:
    rows = [r for r in _quarantine(run.lake) if r["reason"] == "duplicate"]
    got = sorted((r["key"], r["value"]) for r in rows)
    expected = sorted(run.duplicates + run.restart_duplicates + [(b"tdet-twice", js(traffic("tdet-twice", vehicle_count=3)))])
    assert got == expected
    # each names the offset of its original, which landed in raw
    raw = duckdb.sql(f"SELECT kafka_partition, kafka_offset FROM read_parquet('{run.lake}/raw/**/*.parquet', "
                     "union_by_name = true)").fetchall()
    landed = set(raw)
    for r in rows:
        original = int(r["detail"].split("offset ")[1].split(" ")[0])
        assert (r["kafka_partition"], original) in landed and original < r["kafka_offset"]


def test_every_good_record_lands_exactly_once(run: FuzzRun) -> None:
    for source, contract in CONTRACTS.items():
        raw = duckdb.sql(f"SELECT {contract.key} AS k, epoch_ms(ts) AS ts FROM read_parquet("
                         f"'{run.lake}/raw/source={source}/**/*.parquet', union_by_name = true)").fetchall()
        expected = []
        for rec in run.good[source]:
            ts = datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            expected.append((rec[contract.key], int(ts.timestamp() * 1000)))
        assert sorted(raw) == sorted(expected), source


def test_good_plus_quarantined_equals_consumed_per_partition(run: FuzzRun) -> None:
    accounts = partition_accounts(Lake(run.lake))
    assert len(accounts) == source_partitions() and all(a.balanced for a in accounts), [a for a in accounts if not a.balanced]
    proc = _cli(["verify", "--counts"], run.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"counts: {source_partitions()} partitions" in proc.stdout and "UNBALANCED" not in proc.stdout


def test_the_dlq_topic_carries_every_reject_with_its_headers(run: FuzzRun) -> None:
    rows = {(r["source_topic"], r["kafka_partition"], r["kafka_offset"]): r for r in _quarantine(run.lake)}
    messages = {}
    for m in run.dlq_messages:
        h = {k: v.decode() for k, v in m.headers}
        messages[(h["source_topic"], int(h["partition"]), int(h["offset"]))] = (m, h)
    assert set(messages) == set(rows)
    for coords, r in rows.items():
        m, h = messages[coords]
        assert (h["reason"], h["field"]) == (r["reason"], r["field"])
        assert h["detail"] == r["detail"]
        original = r["value"] or b""
        assert int(h["value_bytes"]) == len(original)
        assert (m.value or b"") == original[:DLQ_MAX_VALUE_BYTES]
        assert m.key == r["key"]


def test_replay_after_the_fix_lands_the_record_once_and_never_resends_it(run: FuzzRun) -> None:
    first, second = run.replay_outputs
    assert "sent 2 of 2 records" in first, first
    assert second.count("already replayed by replay-") == 2, second
    assert "sent 1 of 1 records" in second, second  # the 1970 record's new quarantine entry
    stale = duckdb.sql(f"SELECT count(*) FROM read_parquet('{run.lake}/raw/source=traffic/**/*.parquet', "
                       "union_by_name = true) WHERE detector_id = 'tdet-stale'").fetchall()
    assert stale == [(1,)]


def test_v1_and_v2_producers_land_in_one_queryable_table(run: FuzzRun) -> None:
    from warehouse.db import build_warehouse

    db = Path(run.env["CITYFLOW_WAREHOUSE_DB"])
    build_warehouse(run.lake, db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        n_v1, n_v2, mean_temp = con.sql(
            "SELECT count(*) FILTER (road_temp_c IS NULL), count(*) FILTER (road_temp_c IS NOT NULL), "
            "avg(road_temp_c) FROM raw_traffic").fetchall()[0]
        windows = con.sql("SELECT count(*) FROM traffic_1m WHERE entity LIKE 'tdet-v2-%'").fetchall()[0][0]
    finally:
        con.close()
    assert n_v2 == len(run.v2_records)
    assert n_v1 == len(run.good["traffic"]) - len(run.v2_records)
    assert mean_temp == pytest.approx(sum(r["road_temp_c"] for r in run.v2_records) / len(run.v2_records))
    assert windows > 0


def test_cityflow_validate_passes_on_the_fuzzed_lake(run: FuzzRun, tmp_path: Path) -> None:
    proc = _cli(["validate", "--docs", str(tmp_path / "docs")], run.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: PASSED" in proc.stdout and (tmp_path / "docs" / "index.html").exists()


def test_the_dlq_monitor_agent_counts_rejects_by_reason(run: FuzzRun) -> None:
    """Worker B's dlq-monitor agent saw the two re-quarantined 1970 records of the replays."""
    # at least the two of phase 2 (also the original of phase 1 if worker A's agent had not
    # committed it before stopping: the agent's counts are at-least-once)
    assert _observed(run.worker_metrics, "ts_too_old", "city.logistics.v1") >= 2
