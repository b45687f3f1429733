""""No vehicles, no speed" through the stream (no broker): empty intervals, whatever their
producer's contract version sends for speed, never make a window's mean speed 0 km/h (nor pull
it down); a night of empty intervals gives null speed aggregates; the landed raw rows, the
landed windows and the DuckDB recompute (`verify`) agree; the simulator sends null speeds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pytest

from contracts import lake as L
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS
from streams.batch import RecordBatch, process_records
from streams.simulator import CityClock, TrafficDetector, encode, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine
from warehouse.verify import verify_windows

TRAFFIC = CONTRACTS["traffic"]
NOW = datetime(2024, 3, 2, 4, 0, tzinfo=UTC)
NIGHT = datetime(2024, 3, 2, 1, 0, tzinfo=UTC)
SPEED_AGGREGATES = ("avg_speed_kmh", "max_speed_kmh", "p95_speed_kmh")


def _reading(detector: str, ts: datetime, count: int, speed: float | None, **extra: Any) -> bytes:
    return orjson.dumps({"detector_id": detector, "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "district": "Mitte", "road": "Koloniestraße", "lane": 1,
                         "vehicle_count": count, "avg_speed_kmh": speed,
                         "occupancy_pct": 0.0 if count == 0 else 4.0, **extra})


def _batch(values: list[bytes], first: int = 0) -> RecordBatch:
    keys = [orjson.loads(v)["detector_id"].encode() for v in values]
    return RecordBatch(TRAFFIC.topic, 0, list(range(first, first + len(values))), keys, values)


def _night(minutes: int) -> list[bytes]:
    """Three detectors, one reading every 20 s: 'v1' (0.0 for an empty interval), 'v2' (a stale
    speed, as some firmware sends), 'v3' (null); a vehicle on 'v1' only at minute 10."""
    values = []
    for step in range(minutes * 3):
        ts = NIGHT + timedelta(seconds=20 * step)
        car = step == 30  # minute 10: one car at 48 km/h on the v1 detector
        values.append(_reading("tdet-v1", ts, 1 if car else 0, 48.0 if car else 0.0))
        values.append(_reading("tdet-v2", ts, 0, 31.0, road_temp_c=1.5))
        values.append(_reading("tdet-v3", ts, 0, None, road_temp_c=1.5, travel_time_s=None))
    return values


def test_empty_intervals_land_without_speed_and_never_make_a_zero_mean() -> None:
    processed = process_records(TRAFFIC, _batch(_night(30)), now=NOW)
    assert processed.rejects == []
    speeds = processed.raw.column("avg_speed_kmh").to_pylist()
    assert speeds.count(48.0) == 1 and sum(s is not None for s in speeds) == 1  # every other null

    engine = WindowEngine(WINDOW_DEFAULTS["traffic"], "traffic")
    windows = engine.process(processed.events).windows.to_pylist()
    assert len(windows) > 3 * 25
    for w in windows:
        has_vehicles = w["vehicle_count"] > 0
        for name in SPEED_AGGREGATES:
            # a night of empty intervals: null speed, never 0 km/h
            assert (w[name] is not None) == has_vehicles, (w["entity"], w["window_start"], name, w[name])
        if has_vehicles:  # the window of the one car: its speed, not diluted by empty intervals
            assert (w["entity"], w["avg_speed_kmh"], w["max_speed_kmh"]) == ("tdet-v1", 48.0, 48.0)
    assert sum(w["vehicle_count"] for w in windows) == 1


def test_a_window_mixing_empty_and_busy_intervals_means_over_the_busy_ones() -> None:
    t = NIGHT
    values = [_reading("tdet-1", t + timedelta(seconds=5), 2, 50.0),
              _reading("tdet-1", t + timedelta(seconds=25), 0, 0.0),  # a v1 empty interval
              _reading("tdet-1", t + timedelta(seconds=45), 1, 40.0),
              _reading("tdet-1", t + timedelta(minutes=5), 1, 30.0)]  # moves the watermark on
    processed = process_records(TRAFFIC, _batch(values), now=NOW)
    [w] = [w for w in WindowEngine(WINDOW_DEFAULTS["traffic"], "traffic").process(processed.events).windows.to_pylist()
           if w["window_start"] == int(t.timestamp() * 1000)]  # the engine speaks epoch ms
    assert (w["n_events"], w["vehicle_count"]) == (3, 3)
    assert w["avg_speed_kmh"] == pytest.approx(45.0)  # not (50 + 0 + 40) / 3 = 30
    assert w["max_speed_kmh"] == 50.0 and w["p95_speed_kmh"] == pytest.approx(49.5)


def test_raw_lake_windows_and_the_duckdb_recompute_agree(tmp_path) -> None:
    """Landed through the real sink: the raw rows hold null speeds, and `verify` (a DuckDB
    recompute from those raw rows, independent of the stream's code) finds no mismatch."""
    import duckdb

    lake = L.Lake(str(tmp_path / "lake"))
    engine = WindowEngine(WINDOW_DEFAULTS["traffic"], "traffic")
    sink = PartitionSink(lake, TRAFFIC, 0, engine)
    values = _night(40)
    for lo in range(0, len(values), 70):
        sink.add(process_records(TRAFFIC, _batch(values[lo:lo + 70], lo), now=NOW))
        sink.flush()
    raw = duckdb.sql(f"SELECT vehicle_count, avg_speed_kmh FROM read_parquet('{lake.root}/raw/source=traffic/**/*.parquet')").fetchall()
    assert len(raw) == len(values)
    assert all((speed is None) == (count == 0) for count, speed in raw)
    result = verify_windows(lake.root, {"traffic": WINDOW_DEFAULTS["traffic"]})
    [check] = result.checks
    assert check.windows_checked > 3 * 35
    assert result.ok, check.mismatches
    speeds = duckdb.sql(f"SELECT avg_speed_kmh FROM read_parquet('{lake.root}/windows/source=traffic/**/*.parquet') "
                        "WHERE vehicle_count = 0").fetchall()
    assert speeds and all(s is None for (s,) in speeds)


def test_the_simulator_sends_null_speed_for_empty_intervals_deterministically() -> None:
    def night_readings(seed: int) -> list[dict[str, Any]]:
        rng, clock = random.Random(seed), CityClock(seed)
        detectors = [TrafficDetector(rng, i) for i in range(6)]
        start = int(datetime(2026, 3, 3, 1, 0, tzinfo=UTC).timestamp() * 1000)  # 02:00 Berlin
        return [d.read(rng, clock, start + m * 60_000, "") for m in range(60) for d in detectors]

    rows = night_readings(3)
    empty = [r for r in rows if r["vehicle_count"] == 0]
    busy = [r for r in rows if r["vehicle_count"] > 0]
    assert empty and busy
    assert all(r["avg_speed_kmh"] is None and r["occupancy_pct"] == 0.0 for r in empty)
    assert all(r["avg_speed_kmh"] > 0 for r in busy)
    assert night_readings(3) == rows


def test_simulated_records_decode_and_empty_ones_land_null() -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    events = list(generate(5, rate=200, seconds=10, speedup=60, start=start, sources=["traffic"]))
    values = [encode(e)[1] for e in events]
    processed = process_records(TRAFFIC, RecordBatch(TRAFFIC.topic, 0, list(range(len(values))),
                                                     [encode(e)[0] for e in events], values))
    assert processed.rejects == []
    sent = [e.record["avg_speed_kmh"] for e in events]
    assert processed.raw.column("avg_speed_kmh").to_pylist() == sent
    assert pa.types.is_float64(processed.raw.schema.field("avg_speed_kmh").type)
