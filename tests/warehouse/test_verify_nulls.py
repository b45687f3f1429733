"""`verify --windows` reports, never raises on, a difference involving null or NaN, on a
hand-made lake (real Parquet, real DuckDB): logistics windows of a reefer truck (cargo
temperatures) and a dry truck (none, so its `max_cargo_temp_c` is null by the contract)."""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS
from warehouse.verify import verify_windows

SOURCE = "logistics"
T0 = datetime(2024, 3, 2, 10, 0, tzinfo=UTC)
TS = pa.timestamp("ms", tz="UTC")
GEOMETRY = {SOURCE: WINDOW_DEFAULTS[SOURCE]}


def _fix(vehicle: str, seconds: int, speed: float, eta: float, cargo: float | None) -> dict[str, Any]:
    return {"vehicle_id": vehicle, "ts": T0 + timedelta(seconds=seconds), "lat": 51.43,
            "lon": 6.76, "speed_kmh": speed, "status": "moving", "cargo_temp_c": cargo,
            "eta_minutes": eta}


# Two final 10:00 windows (reefer, dry) and a fix at 10:20 that moves the watermark past them;
# the 10:20 window is not final, so the stream has not emitted it.
FIXES = [
    _fix("truck-reefer", 10, 40.0, 30.0, 3.0),
    _fix("truck-reefer", 70, 50.0, 29.0, 4.5),
    _fix("truck-dry", 20, 20.0, 12.0, None),
    _fix("truck-dry", 80, 30.0, 11.0, None),
]
PUSHER = _fix("truck-late", 1200, 10.0, 5.0, None)
# What the stream should land for the two final windows (the contract: no reefer data -> null).
EXPECTED = {
    "truck-reefer": {"n_events": 2, "moving_count": 2, "idle_count": 0, "loading_count": 0,
                     "unloading_count": 0, "avg_speed_kmh": 45.0, "max_cargo_temp_c": 4.5,
                     "avg_eta_minutes": 29.5},
    "truck-dry": {"n_events": 2, "moving_count": 2, "idle_count": 0, "loading_count": 0,
                  "unloading_count": 0, "avg_speed_kmh": 25.0, "max_cargo_temp_c": None,
                  "avg_eta_minutes": 11.5},
}


def _land(lake: L.Lake, table: str, data: pa.Table, first: int, last: int) -> None:
    """Write `data` where a worker would: partition 0, the 10:00 UTC hour, offsets first-last."""
    name = L.DataFileName(CONTRACTS[SOURCE].topic, 0, first, last)
    lake.write_table_atomic(L.data_file_path(table, SOURCE, "2024-03-02", 10, name), data)


def _window_table(streamed: dict[str, dict[str, Any]]) -> pa.Table:
    """The columns verify reads from landed windows: key, version and every aggregate."""
    fields = [pa.field("entity", pa.string()), pa.field("window_start", TS),
              pa.field("window_size_s", pa.int32()), pa.field("version", pa.int32())]
    fields += [pa.field(a.name, pa.int64() if a.fn in ("count", "count_eq") else pa.float64())
               for a in AGGREGATES[SOURCE]]
    rows = [{"entity": e, "window_start": T0, "window_size_s": WINDOW_DEFAULTS[SOURCE].size_s,
             "version": 0, **values} for e, values in streamed.items()]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _lake(tmp_path, **overrides: float | None) -> L.Lake:
    """A lake whose streamed `max_cargo_temp_c` per vehicle is EXPECTED unless overridden."""
    lake = L.Lake(str(tmp_path / "lake"))
    raw = [{**r, "kafka_partition": 0, "kafka_offset": i} for i, r in enumerate([*FIXES, PUSHER])]
    schema = CONTRACTS[SOURCE].raw_schema()
    _land(lake, L.RAW, pa.Table.from_pylist(raw[:4], schema=schema), 0, 3)
    _land(lake, L.RAW, pa.Table.from_pylist(raw[4:], schema=schema), 4, 4)
    streamed = {e: {**v} for e, v in EXPECTED.items()}
    for entity, value in overrides.items():
        streamed[entity.replace("_", "-")]["max_cargo_temp_c"] = value
    _land(lake, L.WINDOWS, _window_table(streamed), 0, 3)
    return lake


def test_null_on_both_sides_is_equal(tmp_path) -> None:
    result = verify_windows(_lake(tmp_path).root, GEOMETRY)
    (check,) = result.checks
    assert check.windows_checked == 2
    assert result.ok, check.mismatches


@pytest.mark.parametrize(
    ("overrides", "entity", "recomputed"),
    [
        ({"truck_dry": 7.0}, "truck-dry", None),  # value where the recompute is null
        ({"truck_reefer": None}, "truck-reefer", 4.5),  # null where the recompute has a value
        # NaN is not null: the contract says null, so a NaN the stream landed is a mismatch
        ({"truck_dry": math.nan}, "truck-dry", None),
        ({"truck_reefer": math.nan}, "truck-reefer", 4.5),
    ],
    ids=["value-vs-null", "null-vs-value", "nan-vs-null", "nan-vs-value"],
)
def test_a_difference_with_null_or_nan_is_reported_not_raised(
    tmp_path, overrides: dict[str, float | None], entity: str, recomputed: float | None
) -> None:
    result = verify_windows(_lake(tmp_path, **overrides).root, GEOMETRY)
    m = result.checks[0].mismatches
    assert not result.ok
    assert m[["entity", "problem", "column"]].values.tolist() == [
        [entity, "value_differs", "max_cargo_temp_c"]]
    # null is reported as None and NaN as NaN, so the report tells them apart
    if recomputed is None:
        assert m["recomputed"].iloc[0] is None
    else:
        assert m["recomputed"].iloc[0] == recomputed
    streamed, got = overrides[entity.replace("-", "_")], m["streamed"].iloc[0]
    if streamed is None:
        assert got is None
    elif math.isnan(streamed):
        assert isinstance(got, float) and math.isnan(got)
    else:
        assert got == streamed


def test_verify_command_exits_1_on_a_null_mismatch(tmp_path, monkeypatch, capsys) -> None:
    from jobs.commands import verify as verify_cmd

    lake = _lake(tmp_path, truck_dry=math.nan)
    monkeypatch.setenv("CITYFLOW_LAKE", lake.root)
    args = argparse.Namespace(counts=False, windows=True, since=None, until=None)
    assert verify_cmd.run(args) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "max_cargo_temp_c" in out and "truck-dry" in out
    line = next(row for row in out.splitlines() if "truck-dry" in row)
    assert line.split()[-2:] == ["NaN", "None"]  # streamed NaN, recomputed null
