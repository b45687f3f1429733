"""The peer cases' correctness check (bench/peer_check.py): the DuckDB recompute agrees with the
job's own per-event accumulator, and wrong windows (other aggregates, duplicates, missing or
invented windows) are rejected with a reason. Then each peer on a small run, if its library is
installed (the 'bench' extra): its windows pass the check. Nothing is timed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from bench.peer_check import check_windows, recompute_windows
from bench.peer_job import (
    GRACE_MS,
    KAFKA_DEFAULT_TOPIC_CONFIGS,
    SIZE_MS,
    TOPIC,
    WindowAccumulator,
    event_ms,
)

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def traffic_events(detectors: int = 3, minutes: int = 8) -> list[dict]:
    """Readings every 20 s: nulls (no vehicles, no speed), fields absent (travel time), ints."""
    events = []
    for d in range(detectors):
        for i in range(minutes * 3):
            count = (i * 7 + d) % 5
            rec = {"detector_id": f"tdet-{d:04d}", "ts": (T0 + timedelta(seconds=20 * i + d)).isoformat(),
                   "district": "Mitte", "road": "A59", "lane": 1, "vehicle_count": count,
                   "avg_speed_kmh": None if count == 0 else 30.0 + (i * 13 + d * 5) % 40 + 0.1 * d,
                   "occupancy_pct": round(1.5 * count, 2)}
            if i % 4 == 0:
                rec["travel_time_s"] = 40.0 + i
            events.append(rec)
    return events


def windows_by_accumulator(events: list[dict]) -> pa.Table:
    """Every window of the events, computed per event by the job's accumulator."""
    accs: dict[tuple[str, int], WindowAccumulator] = {}
    for e in events:
        t = event_ms(e)
        accs.setdefault((e["detector_id"], t - t % SIZE_MS), WindowAccumulator()).add(e)
    return pa.Table.from_pylist([{"entity": k[0], "window_start_ms": k[1], **a.result()} for k, a in sorted(accs.items())])


def write_events(events: list[dict], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "p0.ndjson").write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    return directory


@pytest.fixture
def expected(tmp_path: Path) -> pa.Table:
    return recompute_windows(write_events(traffic_events(), tmp_path / "events"))


def test_recompute_equals_the_per_event_accumulator(expected: pa.Table) -> None:
    result = check_windows(windows_by_accumulator(traffic_events()), expected)
    assert result["ok"], result["reason"]
    assert result["emitted"] == result["expected_all"] == 3 * 8
    # surely closed: end + lateness at or before the detector's last event (the last minute is not)
    assert result["expected_closed"] == 3 * 7
    assert expected.column("n_events").to_pylist() == [3] * 24
    assert None in expected.column("avg_travel_time_s").to_pylist()  # windows without the field


def _tamper(table: pa.Table, row: int, column: str, value: object) -> pa.Table:
    rows = table.to_pylist()
    rows[row][column] = value
    return pa.Table.from_pylist(rows, schema=table.schema)


@pytest.mark.parametrize("column, value, reason", [
    ("avg_speed_kmh", 1.0, "other aggregates"),
    ("p95_speed_kmh", None, "other aggregates"),
    ("n_events", 2, "other aggregates"),
    ("window_start_ms", int(T0.timestamp() * 1000) + 30_000, "not in the recompute"),
])
def test_wrong_windows_are_rejected(expected: pa.Table, column: str, value: object, reason: str) -> None:
    good = windows_by_accumulator(traffic_events())
    row = next(i for i, r in enumerate(good.to_pylist()) if r["avg_speed_kmh"] is not None)
    result = check_windows(_tamper(good, row, column, value), expected)
    assert not result["ok"] and reason in result["reason"], result


def test_float_noise_passes_but_a_real_difference_does_not(expected: pa.Table) -> None:
    good = windows_by_accumulator(traffic_events())
    v = good.column("avg_speed_kmh")[1].as_py()
    assert check_windows(_tamper(good, 1, "avg_speed_kmh", v * (1 + 1e-12)), expected)["ok"]
    assert not check_windows(_tamper(good, 1, "avg_speed_kmh", v * (1 + 1e-6)), expected)["ok"]


def test_duplicate_and_missing_windows_are_rejected(expected: pa.Table) -> None:
    good = windows_by_accumulator(traffic_events())
    doubled = check_windows(pa.concat_tables([good, good.slice(0, 1)]), expected)
    assert not doubled["ok"] and doubled["duplicates"] == 1 and "more than once" in doubled["reason"]
    missing = check_windows(good.slice(1), expected)  # the first window of detector 0 is closed
    assert not missing["ok"] and missing["missing"] == 1 and "not emitted" in missing["reason"]
    # a still-open window (the last minute of a detector) may be left out
    last_minute = int((T0 + timedelta(minutes=7)).timestamp() * 1000)
    open_left_out = good.filter(pa.compute.not_equal(good.column("window_start_ms"), last_minute))
    assert check_windows(open_left_out, expected)["ok"]
    assert last_minute + SIZE_MS + GRACE_MS > max(event_ms(e) for e in traffic_events())


# -- each peer on a small run (needs its library: pip install -e '.[bench]') -------------------
def _produce(bootstrap: str, events: list[dict]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for e in events:
        producer.send(TOPIC, key=e["detector_id"].encode(), value=json.dumps(e).encode())
    producer.flush()
    producer.close()


@pytest.mark.e2e
@pytest.mark.timeout(240)
@pytest.mark.parametrize("peer, module", [("quix", "quixstreams"), ("bytewax", "bytewax")])
def test_peer_case_windows_match_the_recompute(peer: str, module: str, fresh_broker: str, tmp_path: Path) -> None:
    pytest.importorskip(module, reason=f"{module} is in the 'bench' extra (pip install -e '.[bench]')")
    from streams.broker import ensure_topics

    ensure_topics(fresh_broker, {TOPIC: 2}, configs=KAFKA_DEFAULT_TOPIC_CONFIGS)
    events = traffic_events(detectors=6, minutes=6)
    _produce(fresh_broker, events)
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", f"bench.{peer}_case", "--bootstrap", fresh_broker,
                           "--events", str(len(events)), "--workdir", str(tmp_path / peer),
                           "--group-timeout", "2", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=200, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["events"] == len(events)
    from bench.peer_check import read_windows

    expected = recompute_windows(write_events(events, tmp_path / "events"))
    check = check_windows(read_windows(result["output"], result["key_column"]), expected)
    assert check["ok"], check["reason"]
    assert check["expected_closed"] == 6 * 5 and check["emitted"] >= 30
