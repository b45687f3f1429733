"""Null stays null: an aggregate over a window whose input has no valid value is an Arrow null,
never NaN, in the engine's output (full and district partials) and in the landed Parquet.

NaN sorts above every number in DuckDB, so a NaN max_cargo_temp_c made the fleet report's
maximum cargo temperature show "-" although reefers reported values (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import lake as L
from contracts.registry import CONTRACTS
from contracts.tables import window_table
from contracts.windows import WindowGeometry, window_geometry
from streams.batch import RecordBatch, process_records
from streams.sink import PartitionSink
from streams.windows import WindowEngine

T0 = 1_795_000_000_000 - 1_795_000_000_000 % 300_000


def _nan_count(col: pa.ChunkedArray) -> int:
    if not pa.types.is_floating(col.type):
        return 0
    return int(pc.sum(pc.is_nan(col.fill_null(0.0))).as_py() or 0)


def _logistics_events(n: int) -> pa.Table:
    """Two vehicles over two 5-minute windows: reefer-1 reports cargo temperatures, truck-2 none."""
    ts = T0 + np.arange(n, dtype=np.int64) * (600_000 // n)
    vehicle = ["reefer-1" if i % 2 else "truck-2" for i in range(n)]
    temp = [float(i % 7) if i % 2 else None for i in range(n)]
    return pa.table({
        "ts": ts, "vehicle_id": vehicle, "lat": [51.43] * n, "lon": [6.76] * n,
        "speed_kmh": [30.0] * n, "status": ["moving"] * n,
        "cargo_temp_c": pa.array(temp, pa.float64()), "eta_minutes": [10.0] * n,
        "entity": vehicle, "district": pa.nulls(n, pa.string()), "offset": np.arange(n, dtype=np.int64),
    })


def test_max_of_an_all_null_field_is_null_not_nan() -> None:
    engine = WindowEngine(WindowGeometry(300), "logistics")
    out = engine.process(_logistics_events(40))
    out2 = engine.process(_logistics_events(2).set_column(0, "ts", pa.array([T0 + 3_000_000] * 2)))
    windows = pa.concat_tables([t for t in (out.windows, out2.windows) if t.num_rows])
    col = windows.column("max_cargo_temp_c")
    trucks = pc.equal(windows.column("entity"), "truck-2")
    assert pc.sum(trucks).as_py() >= 2
    assert _nan_count(col) == 0
    assert pc.all(pc.is_null(col.filter(trucks))).as_py()
    assert pc.all(pc.is_valid(col.filter(pc.invert(trucks)))).as_py()


def test_every_float_aggregate_and_partial_is_null_without_valid_input() -> None:
    """Traffic events whose speed and occupancy are all null (the engine is pure: the contract's
    non-null rule is the decoder's business): mean, max, p95 and the partial mean's _sum are null."""
    n = 30
    ts = T0 + np.arange(n, dtype=np.int64) * 4_000
    events = pa.table({
        "ts": ts, "detector_id": ["d1"] * n, "entity": ["d1"] * n, "district": ["Mitte"] * n,
        "offset": np.arange(n, dtype=np.int64), "road": ["A59"] * n, "lane": [1] * n,
        "vehicle_count": np.ones(n, dtype=np.int64),
        "avg_speed_kmh": pa.nulls(n, pa.float64()), "occupancy_pct": pa.nulls(n, pa.float64()),
        "travel_time_s": pa.nulls(n, pa.float64()),
    })
    engine = WindowEngine(WindowGeometry(60), "traffic")
    out = engine.process(events)
    assert out.windows.num_rows and out.district_windows.num_rows
    for name in ("avg_speed_kmh", "max_speed_kmh", "p95_speed_kmh", "avg_occupancy_pct", "avg_travel_time_s"):
        col = out.windows.column(name)
        assert col.null_count == len(col), name
    for name in ("avg_speed_kmh_sum", "max_speed_kmh", "avg_occupancy_pct_sum", "avg_travel_time_s_sum"):
        col = out.district_windows.column(name)
        assert col.null_count == len(col), name
    for table in (out.windows, out.district_windows):
        assert sum(_nan_count(table.column(c)) for c in table.column_names) == 0
    assert out.windows.column("vehicle_count").null_count == 0


def test_energy_without_power_readings_is_null() -> None:
    n = 10
    ts = T0 + np.arange(n, dtype=np.int64) * 60_000
    events = pa.table({
        "ts": ts, "lamp_id": ["l1"] * n, "entity": ["l1"] * n, "district": ["Mitte"] * n,
        "offset": np.arange(n, dtype=np.int64), "status": ["off"] * n,
        "power_w": pa.nulls(n, pa.float64()), "dim_level_pct": pa.nulls(n, pa.float64()),
        "ambient_lux": pa.nulls(n, pa.float64()),
    })
    engine = WindowEngine(WindowGeometry(300), "lighting")
    out = engine.process(events)
    assert out.windows.num_rows
    for name in ("energy_wh", "avg_power_w", "min_ambient_lux"):
        assert out.windows.column(name).null_count == out.windows.num_rows, name
    for name in ("energy_wh", "avg_power_w_sum", "min_ambient_lux"):
        assert out.district_windows.column(name).null_count == out.district_windows.num_rows, name


def test_landed_logistics_windows_keep_null(tmp_path) -> None:
    """Through decode, the sink and Parquet: a vehicle without a reefer lands null, not NaN."""
    import orjson

    contract = CONTRACTS["logistics"]
    start = datetime.now(UTC) - timedelta(hours=1)
    start -= timedelta(seconds=start.second, microseconds=start.microsecond)
    values = []
    for i in range(120):
        reefer = i % 2 == 1
        values.append(orjson.dumps({
            "vehicle_id": "reefer-1" if reefer else "truck-2",
            "ts": (start + timedelta(seconds=10 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "lat": 51.43, "lon": 6.76, "speed_kmh": 20.0, "status": "moving",
            "cargo_temp_c": 4.5 if reefer else None, "eta_minutes": 12.0,
        }))
    lake = L.Lake(str(tmp_path / "lake"))
    sink = PartitionSink(lake, contract, 0, WindowEngine(window_geometry("logistics"), "logistics", 0))
    sink.recover()
    keys = [b"reefer-1" if i % 2 else b"truck-2" for i in range(len(values))]
    sink.add(process_records(contract, RecordBatch(contract.topic, 0, list(range(len(values))), keys, values)))
    sink.flush()
    files = sorted((tmp_path / "lake" / "windows" / "source=logistics").rglob("*.parquet"))
    assert files
    landed = pa.concat_tables([pq.read_table(f) for f in files])
    declared = window_table("logistics").schema
    assert landed.schema.remove_metadata().names == declared.names
    assert [f.type for f in landed.schema] == [f.type for f in declared]
    col = landed.column("max_cargo_temp_c")
    trucks = pc.equal(landed.column("entity"), "truck-2")
    assert pc.sum(trucks).as_py() > 0
    assert _nan_count(col) == 0
    assert col.filter(trucks).null_count == pc.sum(trucks).as_py()
    assert col.filter(pc.invert(trucks)).to_pylist() == [4.5] * (landed.num_rows - pc.sum(trucks).as_py())
