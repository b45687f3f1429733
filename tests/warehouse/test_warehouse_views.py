"""Warehouse views over a hand-made Parquet lake: every view on an empty lake, headers, raw
rows, window de-duplication and versions, district partials combined."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS
from tests.support.warehouse_lake import (
    EXPECTED_VIEWS,
    district_table,
    land,
    raw_table,
    sql,
    traffic_row,
    utc,
    window_table,
)
from warehouse.db import build_warehouse, load_models


# -- views on an empty lake -----------------------------------------------------------------
def test_views_exist_on_empty_lake_and_return_no_rows(lake: L.Lake, db_path: Path) -> None:
    views = build_warehouse(lake.root, db_path)  # the lake directory does not even exist
    assert set(views) == EXPECTED_VIEWS
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        for view in views:
            if view == "data_freshness":  # one row per source, saying nothing has landed
                rows = con.execute("SELECT source, last_event_ts, lag_s, rows_last_hour FROM data_freshness").fetchall()
                assert rows == [(s, None, None, 0) for s in sorted(CONTRACTS)], rows
                continue
            assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,), view
    finally:
        con.close()
    assert build_warehouse(lake.root, db_path) == views  # idempotent


def _header_columns(text: str) -> list[str]:
    block, inside = [], False
    for line in text.splitlines():
        if line.startswith("-- columns:"):
            inside = True
            block.append(line[len("-- columns:") :])
        elif inside and re.match(r"^--\s{2,}", line):
            block.append(line[2:])
        elif inside:
            break
    return [c.strip() for c in " ".join(block).split(",") if c.strip()]


def test_every_view_documents_grain_keys_and_exactly_its_columns(
    lake: L.Lake, db_path: Path
) -> None:
    build_warehouse(lake.root, db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        for model in load_models():
            assert "-- grain:" in model.template and "-- keys:" in model.template, model.name
            actual = [r[0] for r in con.execute(f"DESCRIBE {model.name}").fetchall()]
            assert _header_columns(model.template) == actual, model.name
    finally:
        con.close()


def test_window_view_names_match_default_window_sizes() -> None:
    units = {"m": 60, "h": 3600}
    for model in load_models():
        m = re.fullmatch(r"(?:district_)?([a-z]+)_(\d+)([mh])(?:_history)?", model.name)
        if m:
            assert int(m[2]) * units[m[3]] == WINDOW_DEFAULTS[m[1]].size_s, model.name


# -- raw -------------------------------------------------------------------------------------
def test_raw_view_returns_exactly_the_rows_written(lake: L.Lake, db_path: Path) -> None:
    first = raw_table(
        "traffic",
        [
            traffic_row("d1", "2024-03-02T10:00:05"),
            traffic_row("d2", "2024-03-02T10:59:59", lane=2),
        ],
        first_offset=0,
    )
    second = raw_table(
        "traffic",
        [traffic_row("d1", "2024-03-02T11:00:00", vehicle_count=3)],
        partition=1,
        first_offset=7,
    )
    land(lake, L.RAW, "traffic", first, "ts")
    land(lake, L.RAW, "traffic", second, "ts", partition=1, first=7)

    got = sql(lake, db_path, "SELECT * FROM raw_traffic ORDER BY kafka_partition, kafka_offset")
    expected = pa.concat_tables([first, second]).to_pandas()
    names = list(CONTRACTS["traffic"].raw_schema().names)
    assert list(got.columns) == names + ["date", "hour"]
    pd.testing.assert_frame_equal(got[names], expected[names], check_dtype=False)
    assert got["hour"].tolist() == [10, 10, 11]
    assert {str(d)[:10] for d in got["date"]} == {"2024-03-02"}


def test_hidden_temp_files_are_never_read(lake: L.Lake, db_path: Path) -> None:
    rel = land(
        lake,
        L.RAW,
        "traffic",
        raw_table("traffic", [traffic_row("d1", "2024-03-02T10:00:05")]),
        "ts",
    )
    folder = Path(lake.path(rel)).parent
    # A complete-looking temp file (would double rows) and a half-written one (would not parse).
    pq.write_table(
        raw_table("traffic", [traffic_row("d9", "2024-03-02T10:00:06")], first_offset=1),
        folder / ".tmp-city.traffic.v1+0+1-1.parquet-1a2b3c4d",
    )
    pq.write_table(
        raw_table("traffic", [traffic_row("d9", "2024-03-02T10:00:06")], first_offset=1),
        folder / ".city.traffic.v1+0+1-1.parquet",
    )
    (folder / ".tmp-partial.parquet").write_bytes(b"PAR1 half written")
    got = sql(lake, db_path, "SELECT detector_id FROM raw_traffic")
    assert got["detector_id"].tolist() == ["d1"]


def test_extra_nullable_column_in_newer_files_unions_by_name(lake: L.Lake, db_path: Path) -> None:
    old = raw_table(
        "lighting",
        [
            {
                "lamp_id": "l1",
                "ts": utc("2024-03-02T10:00:00"),
                "district": "Mitte",
                "status": "on",
                "dim_level_pct": 100.0,
                "power_w": 40.0,
                "ambient_lux": 2.0,
            }
        ],
    )
    new = raw_table(
        "lighting",
        [
            {
                "lamp_id": "l2",
                "ts": utc("2024-03-02T11:00:00"),
                "district": "Süd",
                "status": "fault",
                "dim_level_pct": 0.0,
                "power_w": 0.0,
                "ambient_lux": 1.0,
                "fault_code": "E42",
            }
        ],
        first_offset=1,
        extra={"firmware": pa.array(["2.1.0"], pa.string())},
    )
    land(lake, L.RAW, "lighting", old, "ts")
    land(lake, L.RAW, "lighting", new, "ts", first=1)
    got = sql(
        lake, db_path, "SELECT lamp_id, fault_code, firmware FROM raw_lighting ORDER BY lamp_id"
    )
    assert got["lamp_id"].tolist() == ["l1", "l2"]
    assert got["firmware"].isna().tolist() == [True, False] and got["firmware"][1] == "2.1.0"
    assert got["fault_code"][1] == "E42"


# -- entity windows --------------------------------------------------------------------------
def test_window_key_written_twice_appears_once(lake: L.Lake, db_path: Path) -> None:
    rows = [
        {
            "entity": "d1",
            "district": "Mitte",
            "window_start": "2024-03-02T10:00:00",
            "n_events": 3,
            "vehicle_count": 30.0,
        },
        {
            "entity": "d2",
            "district": "Mitte",
            "window_start": "2024-03-02T10:00:00",
            "n_events": 1,
            "vehicle_count": 5.0,
        },
    ]
    land(lake, L.WINDOWS, "traffic", window_table("traffic", rows), "window_start", first=0, last=9)
    # A replay after a restart rewrites d1's window (same key and version) in another file.
    land(
        lake,
        L.WINDOWS,
        "traffic",
        window_table("traffic", rows[:1]),
        "window_start",
        first=0,
        last=12,
    )
    got = sql(
        lake, db_path, "SELECT entity, n_events, vehicle_count FROM traffic_1m ORDER BY entity"
    )
    assert got.to_dict("records") == [
        {"entity": "d1", "n_events": 3, "vehicle_count": 30.0},
        {"entity": "d2", "n_events": 1, "vehicle_count": 5.0},
    ]
    hist = sql(lake, db_path, "SELECT count(*) AS n FROM traffic_1m_history")
    assert hist["n"][0] == 2


def test_latest_version_wins_and_history_keeps_every_version(lake: L.Lake, db_path: Path) -> None:
    key = {"entity": "ap-zoo-1", "district": "Mitte", "window_start": "2024-03-02T10:05:00"}
    land(
        lake,
        L.WINDOWS,
        "wifi",
        window_table("wifi", [{**key, "n_events": 2, "max_clients": 40.0}]),
        "window_start",
        first=0,
        last=5,
    )
    land(
        lake,
        L.WINDOWS,
        "wifi",
        window_table("wifi", [{**key, "version": 1, "n_events": 3, "max_clients": 55.0}]),
        "window_start",
        first=6,
        last=8,
    )
    latest = sql(lake, db_path, "SELECT version, is_correction, n_events, max_clients FROM wifi_5m")
    assert latest.to_dict("records") == [
        {"version": 1, "is_correction": True, "n_events": 3, "max_clients": 55.0}
    ]
    hist = sql(lake, db_path, "SELECT version, n_events FROM wifi_5m_history ORDER BY version")
    assert hist.to_dict("records") == [{"version": 0, "n_events": 2}, {"version": 1, "n_events": 3}]


@pytest.mark.parametrize("source", sorted(CONTRACTS))
def test_latest_view_is_the_highest_version_of_history_in_one_step(source: str, lake: L.Lake, db_path: Path) -> None:
    """The latest-version views de-duplicate once (macros/window_latest.sql) and must keep
    exactly the row the two steps kept: of the highest version, the last emitted copy."""
    view = {"traffic": "traffic_1m", "lighting": "lighting_15m", "wifi": "wifi_5m",
            "logistics": "logistics_5m", "supply": "supply_15m"}[source]
    count = next(a.name for a in AGGREGATES[source] if a.fn == "count")
    at = "2024-03-02T10:00:00"
    emitted = [utc("2024-03-02T11:00:00") + timedelta(minutes=i) for i in range(4)]
    first = [  # e1: versions 0, 1 and 2; e2: version 0 only
        {"entity": "e1", "window_start": at, "version": 0, count: 1, "emitted_at": emitted[0]},
        {"entity": "e1", "window_start": at, "version": 1, count: 2, "emitted_at": emitted[1]},
        {"entity": "e1", "window_start": at, "version": 2, count: 3, "emitted_at": emitted[2]},
        {"entity": "e2", "window_start": at, "version": 0, count: 7, "emitted_at": emitted[0]},
    ]
    land(lake, L.WINDOWS, source, window_table(source, first), "window_start", first=0, last=9)
    # version 2 of e1 written again, emitted later (a replay): that copy is the one kept; and a
    # stale copy of version 1 emitted last of all must not win over version 2
    again = [{"entity": "e1", "window_start": at, "version": 2, count: 4, "emitted_at": emitted[3]},
             {"entity": "e1", "window_start": at, "version": 1, count: 5,
              "emitted_at": emitted[3] + timedelta(minutes=5)}]
    land(lake, L.WINDOWS, source, window_table(source, again), "window_start", first=10, last=12)
    latest = sql(lake, db_path, f"SELECT entity, version, {count} AS n FROM {view} ORDER BY entity")
    two_steps = sql(lake, db_path, f"""
        SELECT entity, version, {count} AS n FROM {view}_history
        QUALIFY row_number() OVER (PARTITION BY entity, window_start ORDER BY version DESC, emitted_at DESC) = 1
        ORDER BY entity""")
    assert latest.to_dict("records") == two_steps.to_dict("records") == [
        {"entity": "e1", "version": 2, "n": 4}, {"entity": "e2", "version": 0, "n": 7}]


def test_window_views_only_show_the_default_window_size(lake: L.Lake, db_path: Path) -> None:
    rows = [
        {"entity": "d1", "window_start": "2024-03-02T10:00:00", "n_events": 1},
        {
            "entity": "d1",
            "window_start": "2024-03-02T10:00:00",
            "window_size_s": 300,
            "n_events": 5,
        },
    ]
    land(lake, L.WINDOWS, "traffic", window_table("traffic", rows), "window_start")
    got = sql(lake, db_path, "SELECT window_size_s, n_events FROM traffic_1m")
    assert got.to_dict("records") == [{"window_size_s": 60, "n_events": 1}]


# -- district partials -----------------------------------------------------------------------
def test_district_partials_from_two_partitions_are_combined(lake: L.Lake, db_path: Path) -> None:
    w1, w2 = "2024-03-02T10:00:00", "2024-03-02T10:01:00"
    p0 = [  # partition 0: Mitte window 1 was corrected (version 1 replaces version 0)
        {
            "district": "Mitte",
            "window_start": w1,
            "kafka_partition": 0,
            "n_entities": 2,
            "n_events": 4,
            "vehicle_count": 40.0,
            "avg_speed_kmh_sum": 200.0,
            "avg_speed_kmh_n": 4,
            "max_speed_kmh": 70.0,
            "avg_occupancy_pct_sum": 40.0,
            "avg_occupancy_pct_n": 4,
        },
        {
            "district": "Mitte",
            "window_start": w1,
            "kafka_partition": 0,
            "version": 1,
            "n_entities": 2,
            "n_events": 5,
            "vehicle_count": 52.0,
            "avg_speed_kmh_sum": 230.0,
            "avg_speed_kmh_n": 5,
            "max_speed_kmh": 90.0,
            "avg_occupancy_pct_sum": 55.0,
            "avg_occupancy_pct_n": 5,
        },
        {
            "district": "Süd",
            "window_start": w1,
            "kafka_partition": 0,
            "n_entities": 1,
            "n_events": 2,
            "vehicle_count": 6.0,
            "avg_speed_kmh_sum": 60.0,
            "avg_speed_kmh_n": 2,
            "max_speed_kmh": 31.0,
            "avg_occupancy_pct_sum": 4.0,
            "avg_occupancy_pct_n": 2,
        },
        {
            "district": "Mitte",
            "window_start": w2,
            "kafka_partition": 0,
            "n_entities": 1,
            "n_events": 1,
            "vehicle_count": 8.0,
            "avg_speed_kmh_sum": 45.0,
            "avg_speed_kmh_n": 1,
            "max_speed_kmh": 45.0,
            "avg_occupancy_pct_sum": 9.0,
            "avg_occupancy_pct_n": 1,
        },
    ]
    p1 = [
        {
            "district": "Mitte",
            "window_start": w1,
            "kafka_partition": 1,
            "n_entities": 3,
            "n_events": 9,
            "vehicle_count": 27.0,
            "avg_speed_kmh_sum": 270.0,
            "avg_speed_kmh_n": 9,
            "max_speed_kmh": 60.0,
            "avg_occupancy_pct_sum": 18.0,
            "avg_occupancy_pct_n": 9,
        },
    ]
    land(
        lake,
        L.DISTRICT_WINDOWS,
        "traffic",
        district_table("traffic", p0[:1] + p0[2:]),
        "window_start",
        partition=0,
        first=0,
        last=10,
    )
    land(
        lake,
        L.DISTRICT_WINDOWS,
        "traffic",
        district_table("traffic", p0[1:2]),
        "window_start",
        partition=0,
        first=11,
        last=11,
    )
    land(
        lake,
        L.DISTRICT_WINDOWS,
        "traffic",
        district_table("traffic", p1),
        "window_start",
        partition=1,
        first=0,
        last=10,
    )

    # Independent pandas recomputation: latest version per partition, then merge partitions.
    df = pd.DataFrame(p0 + p1).assign(version=lambda d: d["version"].fillna(0).astype(int))
    latest = (
        df.sort_values("version").groupby(["district", "window_start", "kafka_partition"]).tail(1)
    )
    g = latest.groupby(["district", "window_start"])
    expected = (
        pd.DataFrame(
            {
                "n_partitions": g.size(),
                "n_entities": g["n_entities"].sum(),
                "n_events": g["n_events"].sum(),
                "vehicle_count": g["vehicle_count"].sum(),
                "avg_speed_kmh": g["avg_speed_kmh_sum"].sum() / g["avg_speed_kmh_n"].sum(),
                "avg_occupancy_pct": g["avg_occupancy_pct_sum"].sum()
                / g["avg_occupancy_pct_n"].sum(),
                "max_speed_kmh": g["max_speed_kmh"].max(),
                "version": g["version"].max(),
            }
        )
        .reset_index()
        .sort_values(["district", "window_start"])
        .reset_index(drop=True)
    )

    got = sql(
        lake,
        db_path,
        """
        SELECT district, strftime(window_start, '%Y-%m-%dT%H:%M:%S') AS window_start, n_partitions,
               n_entities, n_events, vehicle_count, avg_speed_kmh, avg_occupancy_pct,
               max_speed_kmh, version
        FROM district_traffic_1m ORDER BY district, window_start""",
    )
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)
    mitte = got[(got["district"] == "Mitte") & (got["window_start"] == w1)].iloc[0]
    assert mitte["vehicle_count"] == 52 + 27 and mitte["avg_speed_kmh"] == pytest.approx(500 / 14)
