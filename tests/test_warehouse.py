"""Warehouse views over a hand-made Parquet lake (no broker): dedupe, versions, district
partials, hidden temp files, schema evolution, the daily report and the CLI commands."""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS
from contracts.settings import load_settings
from contracts.windows import WINDOW_DEFAULTS
from jobs.commands import warehouse as cmd
from warehouse.db import SQL_DIR, build_warehouse, connect, load_models, query
from warehouse.report import daily_report, format_report, latest_day

TS = pa.timestamp("ms", tz="UTC")
EXPECTED_VIEWS = {
    "raw_traffic",
    "raw_lighting",
    "raw_wifi",
    "raw_logistics",
    "traffic_1m",
    "lighting_15m",
    "wifi_5m",
    "logistics_5m",
    "traffic_1m_history",
    "lighting_15m_history",
    "wifi_5m_history",
    "logistics_5m_history",
    "district_traffic_1m",
    "district_lighting_15m",
    "district_wifi_5m",
    "late_events",
    "quarantine",
    "anomalies",
}


# -- helpers: hand-made lake files ----------------------------------------------------------
def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def raw_table(
    source: str,
    rows: list[dict[str, Any]],
    partition: int = 0,
    first_offset: int = 0,
    extra: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """Raw (bronze) rows of a source: contract fields plus Kafka coordinates."""
    contract = CONTRACTS[source]
    cols: dict[str, Any] = {f.name: [r.get(f.name) for r in rows] for f in contract.fields}
    cols["kafka_partition"] = [partition] * len(rows)
    cols["kafka_offset"] = list(range(first_offset, first_offset + len(rows)))
    table = pa.Table.from_pydict(cols, schema=contract.raw_schema())
    for name, values in (extra or {}).items():
        table = table.append_column(pa.field(name, values.type, nullable=True), values)
    return table


def window_table(source: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Per-entity window rows; unspecified aggregates are 0, key columns get defaults."""
    size = WINDOW_DEFAULTS[source].size_s
    fields = [
        pa.field("source", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("district", pa.string()),
        pa.field("window_start", TS),
        pa.field("window_end", TS),
        pa.field("window_size_s", pa.int32()),
        pa.field("hop_s", pa.int32()),
        pa.field("version", pa.int32()),
        pa.field("is_correction", pa.bool_()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("emitted_at", TS),
    ]
    fields += [
        pa.field(a.name, pa.int64() if a.fn in ("count", "count_eq") else pa.float64())
        for a in AGGREGATES[source]
    ]
    full = []
    for r in rows:
        ws = utc(r["window_start"])
        s = r.get("window_size_s", size)
        base = {
            "source": source,
            "district": None,
            "window_end": ws + timedelta(seconds=s),
            "window_size_s": s,
            "hop_s": s,
            "version": 0,
            "kafka_partition": 0,
            "emitted_at": ws + timedelta(seconds=s + 90),
        }
        base.update({a.name: 0 for a in AGGREGATES[source]})
        base.update(r)
        base["window_start"] = ws
        base.setdefault("is_correction", base["version"] > 0)
        full.append(base)
    return pa.Table.from_pylist(full, schema=pa.schema(fields))


def district_table(source: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Per-partition district partials: additive columns, <mean>_sum/_n, max/min, no p95."""
    size = WINDOW_DEFAULTS[source].size_s
    fields = [
        pa.field("source", pa.string()),
        pa.field("district", pa.string()),
        pa.field("window_start", TS),
        pa.field("window_end", TS),
        pa.field("window_size_s", pa.int32()),
        pa.field("hop_s", pa.int32()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("version", pa.int32()),
        pa.field("is_correction", pa.bool_()),
        pa.field("emitted_at", TS),
        pa.field("n_entities", pa.int64()),
    ]
    for a in AGGREGATES[source]:
        if a.fn == "mean":
            fields += [pa.field(f"{a.name}_sum", pa.float64()), pa.field(f"{a.name}_n", pa.int64())]
        elif a.fn in ("count", "count_eq"):
            fields.append(pa.field(a.name, pa.int64()))
        elif a.fn != "p95":
            fields.append(pa.field(a.name, pa.float64()))
    full = []
    for r in rows:
        ws = utc(r["window_start"])
        base = {
            "source": source,
            "window_end": ws + timedelta(seconds=size),
            "window_size_s": size,
            "hop_s": size,
            "version": 0,
            "emitted_at": ws + timedelta(seconds=size + 90),
        }
        base.update({f.name: 0 for f in fields[10:]})
        base.update(r)
        base["window_start"] = ws
        base.setdefault("is_correction", base["version"] > 0)
        full.append(base)
    return pa.Table.from_pylist(full, schema=pa.schema(fields))


def land(
    lake: L.Lake,
    table_name: str,
    source: str,
    table: pa.Table,
    time_col: str,
    partition: int = 0,
    first: int = 0,
    last: int | None = None,
) -> str:
    """Write `table` where the workers would: partition dir of its (single) UTC hour."""
    hours = {
        t.replace(minute=0, second=0, microsecond=0) for t in table.column(time_col).to_pylist()
    }
    assert len(hours) == 1, "a landed file covers one partition-hour"
    hour = hours.pop()
    topic = CONTRACTS[source].topic if source in CONTRACTS else "city.dlq.v1"
    name = L.DataFileName(
        topic, partition, first, first + table.num_rows - 1 if last is None else last
    )
    rel = L.data_file_path(table_name, source, hour.strftime("%Y-%m-%d"), hour.hour, name)
    lake.write_table_atomic(rel, table)
    return rel


def traffic_row(detector: str, ts: str, **kw: Any) -> dict[str, Any]:
    row = {
        "detector_id": detector,
        "ts": utc(ts),
        "district": "Mitte",
        "road": "A59",
        "lane": 1,
        "vehicle_count": 10,
        "avg_speed_kmh": 50.0,
        "occupancy_pct": 12.5,
    }
    row.update(kw)
    return row


@pytest.fixture
def lake(tmp_path: Path) -> L.Lake:
    return L.Lake(str(tmp_path / "lake"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "wh" / "city.duckdb"


def sql(lake: L.Lake, db_path: Path, text: str) -> pd.DataFrame:
    """Build (idempotently) and query with a fresh connection."""
    build_warehouse(lake.root, db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(text).fetchdf()
    finally:
        con.close()


# -- views on an empty lake -----------------------------------------------------------------
def test_views_exist_on_empty_lake_and_return_no_rows(lake: L.Lake, db_path: Path) -> None:
    views = build_warehouse(lake.root, db_path)  # the lake directory does not even exist
    assert set(views) == EXPECTED_VIEWS
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        for view in views:
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


# -- connect / query -------------------------------------------------------------------------
def test_connect_builds_when_missing_and_picks_up_a_table_that_got_files(
    lake: L.Lake, db_path: Path
) -> None:
    settings = load_settings(lake=lake.root, warehouse_db=db_path)
    assert query("SELECT count(*) AS n FROM raw_wifi", settings)["n"][0] == 0  # builds the db
    assert db_path.exists()
    row = {
        "ap_id": "ap-1",
        "ts": utc("2024-03-02T10:00:00"),
        "site_type": "zoo",
        "district": "Mitte",
        "connected_clients": 3,
        "bytes_in": 1,
        "bytes_out": 2,
        "auth_failures": 0,
        "latency_ms": 5.0,
        "status": "up",
    }
    land(lake, L.RAW, "wifi", raw_table("wifi", [row]), "ts")
    assert query("SELECT count(*) AS n FROM raw_wifi", settings)["n"][0] == 1  # fallback replaced
    con = connect(settings)
    try:
        with pytest.raises(duckdb.Error):  # read-only by default
            con.execute("CREATE TABLE scratch (x INTEGER)")
    finally:
        con.close()


# -- daily report ----------------------------------------------------------------------------
def _report_lake(lake: L.Lake) -> None:
    day, before = "2024-03-02", "2024-03-01"
    land(
        lake,
        L.RAW,
        "traffic",
        raw_table(
            "traffic",
            [
                traffic_row(
                    "d1", f"{day}T08:00:00", road="A59", vehicle_count=10, avg_speed_kmh=50.0
                ),
                traffic_row(
                    "d1", f"{day}T08:01:00", road="A59", vehicle_count=30, avg_speed_kmh=70.0
                ),
                traffic_row(
                    "d2",
                    f"{day}T08:02:00",
                    road="Mülheimer Str",
                    vehicle_count=5,
                    avg_speed_kmh=30.0,
                ),
            ],
        ),
        "ts",
    )
    land(
        lake,
        L.RAW,
        "traffic",
        raw_table(
            "traffic",
            [
                traffic_row("d3", f"{before}T23:59:00", road="A40", vehicle_count=400),
            ],
            first_offset=3,
        ),
        "ts",
        first=3,
    )

    land(
        lake,
        L.WINDOWS,
        "lighting",
        window_table(
            "lighting",
            [
                {
                    "entity": "l1",
                    "district": "Mitte",
                    "window_start": f"{day}T20:00:00",
                    "fault_count": 2,
                    "energy_wh": 100.0,
                },
                {
                    "entity": "l2",
                    "district": "Mitte",
                    "window_start": f"{day}T20:00:00",
                    "energy_wh": 80.0,
                },
                {
                    "entity": "l3",
                    "district": "Süd",
                    "window_start": f"{day}T20:15:00",
                    "fault_count": 1,
                    "energy_wh": 50.0,
                },
            ],
        ),
        "window_start",
        first=0,
        last=20,
    )
    land(
        lake,
        L.WINDOWS,
        "lighting",
        window_table(
            "lighting",
            [  # a correction of l1's window
                {
                    "entity": "l1",
                    "district": "Mitte",
                    "window_start": f"{day}T20:00:00",
                    "version": 1,
                    "fault_count": 3,
                    "energy_wh": 120.0,
                },
            ],
        ),
        "window_start",
        first=21,
        last=22,
    )

    def ap(
        ap_id: str, site: str, ts: str, clients: int, b_in: int, b_out: int, auth: int
    ) -> dict[str, Any]:
        return {
            "ap_id": ap_id,
            "ts": utc(ts),
            "site_type": site,
            "district": "Mitte",
            "connected_clients": clients,
            "bytes_in": b_in,
            "bytes_out": b_out,
            "auth_failures": auth,
            "latency_ms": 20.0,
            "status": "up",
        }

    land(
        lake,
        L.RAW,
        "wifi",
        raw_table(
            "wifi",
            [
                ap("ap-zoo-1", "zoo", f"{day}T14:00:00", 100, 10**9, 5 * 10**8, 2),
                ap("ap-zoo-1", "zoo", f"{day}T14:05:00", 300, 5 * 10**8, 0, 1),
                ap("ap-st-1", "street", f"{day}T14:00:00", 10, 0, 0, 0),
            ],
        ),
        "ts",
    )

    land(
        lake,
        L.WINDOWS,
        "logistics",
        window_table(
            "logistics",
            [
                {
                    "entity": "truck-1",
                    "window_start": f"{day}T06:00:00",
                    "n_events": 4,
                    "moving_count": 2,
                    "idle_count": 1,
                    "loading_count": 1,
                    "max_cargo_temp_c": 4.5,
                },
                {
                    "entity": "truck-2",
                    "window_start": f"{day}T06:00:00",
                    "n_events": 4,
                    "unloading_count": 4,
                    "max_cargo_temp_c": None,
                },
            ],
        ),
        "window_start",
    )

    def bad(reason: str, ts: str, offset: int) -> dict[str, Any]:
        return {
            "source_topic": "city.traffic.v1",
            "kafka_partition": 0,
            "kafka_offset": offset,
            "reason": reason,
            "field": "",
            "detail": "",
            "value": b"{",
            "key": None,
            "received_at": utc(ts),
        }

    q_schema = pa.schema(
        [
            ("source_topic", pa.string()),
            ("kafka_partition", pa.int32()),
            ("kafka_offset", pa.int64()),
            ("reason", pa.string()),
            ("field", pa.string()),
            ("detail", pa.string()),
            ("value", pa.binary()),
            ("key", pa.binary()),
            ("received_at", TS),
        ]
    )
    land(
        lake,
        L.QUARANTINE,
        "traffic",
        pa.Table.from_pylist(
            [bad("not_json", f"{day}T09:00:00", 10), bad("not_json", f"{day}T09:00:01", 11)],
            q_schema,
        ),
        "received_at",
        first=10,
    )
    land(
        lake,
        L.QUARANTINE,
        "traffic",
        pa.Table.from_pylist([bad("not_json", f"{before}T09:00:00", 1)], q_schema),
        "received_at",
        first=1,
    )
    land(
        lake,
        L.QUARANTINE,
        "wifi",
        pa.Table.from_pylist(
            [{**bad("out_of_range", f"{day}T09:30:00", 4), "source_topic": "city.wifi.v1"}],
            q_schema,
        ),
        "received_at",
        first=4,
    )

    late = raw_table("traffic", [traffic_row("d1", f"{day}T07:00:00")], first_offset=20)
    late = late.append_column("window_start", pa.array([utc(f"{day}T07:00:00")], TS)).append_column(
        "lateness_s", pa.array([1900.0])
    )
    land(lake, L.LATE_EVENTS, "traffic", late, "ts", first=20)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def test_daily_report_on_a_tiny_known_dataset(lake: L.Lake, db_path: Path) -> None:
    _report_lake(lake)
    build_warehouse(lake.root, db_path)
    con = connect(load_settings(lake=lake.root, warehouse_db=db_path))
    try:
        report = daily_report(con)  # default: latest day with data = 2024-03-02
        earlier = daily_report(con, date(2024, 3, 1))
        # the CLI finds the latest day from the date= directories: the same answer as SQL,
        # and a newer date directory holding only a temp file or nothing does not count
        for empty in ("date=2024-03-05/hour=1", "date=2024-03-04/hour=2"):
            os.makedirs(os.path.join(lake.root, "raw", "source=traffic", empty), exist_ok=True)
        Path(lake.root, "raw", "source=traffic", "date=2024-03-04", "hour=2", ".tmp-x.parquet").write_bytes(b"")
        assert latest_day(con, lake) == latest_day(con) == date(2024, 3, 2)
        assert daily_report(con, lake=lake)["busiest_roads"].equals(report["busiest_roads"])
    finally:
        con.close()

    assert all(f.attrs["day"] == "2024-03-02" for f in report.values())
    roads = _records(report["busiest_roads"])
    assert roads == [
        {"road": "A59", "detectors": 1, "vehicles": 40, "mean_speed_kmh": pytest.approx(65.0)},
        {
            "road": "Mülheimer Str",
            "detectors": 1,
            "vehicles": 5,
            "mean_speed_kmh": pytest.approx(30.0),
        },
    ]
    assert _records(report["lighting_by_district"]) == [
        {
            "district": "Mitte",
            "lamps": 2,
            "lamps_with_faults": 1,
            "fault_reports": 3,
            "energy_kwh": pytest.approx(0.2),
        },
        {
            "district": "Süd",
            "lamps": 1,
            "lamps_with_faults": 1,
            "fault_reports": 1,
            "energy_kwh": pytest.approx(0.05),
        },
    ]
    assert _records(report["wifi_by_site_type"]) == [
        {
            "site_type": "street",
            "access_points": 1,
            "mean_clients": 10.0,
            "max_clients": 10,
            "gb_transferred": 0.0,
            "auth_failures": 0,
        },
        {
            "site_type": "zoo",
            "access_points": 1,
            "mean_clients": 200.0,
            "max_clients": 300,
            "gb_transferred": pytest.approx(2.0),
            "auth_failures": 3,
        },
    ]
    assert _records(report["fleet_status"]) == [
        {
            "vehicles": 2,
            "position_fixes": 8,
            "moving_share": 0.25,
            "idle_share": 0.125,
            "loading_share": 0.125,
            "unloading_share": 0.5,
            "max_cargo_temp_c": 4.5,
        },
    ]
    assert _records(report["data_quality"]) == [
        {"kind": "quarantined", "source": "traffic", "reason": "not_json", "records": 2},
        {"kind": "quarantined", "source": "wifi", "reason": "out_of_range", "records": 1},
        {"kind": "late", "source": "traffic", "reason": "late_event", "records": 1},
    ]
    assert earlier["busiest_roads"]["road"].tolist() == ["A40"]
    assert earlier["lighting_by_district"].empty and earlier["fleet_status"].empty

    text = format_report(report)
    assert "2024-03-02" in text and "Mülheimer Str" in text and "out_of_range" in text


def test_daily_report_on_an_empty_lake_has_empty_sections(lake: L.Lake, db_path: Path) -> None:
    con = connect(load_settings(lake=lake.root, warehouse_db=db_path))
    try:
        report = daily_report(con)
    finally:
        con.close()
    assert report and all(f.empty and f.attrs["day"] is None for f in report.values())
    assert "no data" in format_report(report)


# -- CLI commands (called directly) ----------------------------------------------------------
@pytest.fixture
def cli_env(lake: L.Lake, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYFLOW_LAKE", lake.root)
    monkeypatch.setenv("CITYFLOW_WAREHOUSE_DB", str(db_path))


def test_query_command_bad_sql_exits_1_with_a_one_line_message(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cmd.run_query(argparse.Namespace(sql="SELEC * FROM traffic_1m", format="table"))
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "syntax error" in err and err.count("\n") == 1

    code = cmd.run_query(argparse.Namespace(sql="SELECT * FROM no_such_view", format="csv"))
    out, err = capsys.readouterr()
    assert code == 1 and "no_such_view" in err and "Traceback" not in err


def test_query_command_formats(
    lake: L.Lake, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    land(
        lake,
        L.RAW,
        "traffic",
        raw_table("traffic", [traffic_row("d1", "2024-03-02T10:00:05")]),
        "ts",
    )
    assert (
        cmd.run_query(
            argparse.Namespace(
                sql="SELECT detector_id, vehicle_count, ts FROM raw_traffic", format="json"
            )
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"detector_id": "d1", "vehicle_count": 10, "ts": "2024-03-02T10:00:05.000Z"}]
    assert (
        cmd.run_query(
            argparse.Namespace(
                sql="SELECT detector_id, vehicle_count FROM raw_traffic", format="csv"
            )
        )
        == 0
    )
    assert capsys.readouterr().out == "detector_id,vehicle_count\nd1,10\n"


def test_build_and_report_commands(
    lake: L.Lake, db_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _report_lake(lake)
    assert cmd.run_build(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "traffic_1m" in out and db_path.exists()
    assert cmd.run_report(argparse.Namespace(day=date(2024, 3, 2))) == 0
    out = capsys.readouterr().out
    assert "A59" in out and "zoo" in out


def test_register_adds_the_three_commands() -> None:
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["warehouse", "build"]).func is cmd.run_build
    args = parser.parse_args(["query", "SELECT 1", "--format", "csv"])
    assert args.func is cmd.run_query and args.format == "csv"
    args = parser.parse_args(["report", "--day", "2024-03-02"])
    assert args.func is cmd.run_report and args.day == date(2024, 3, 2)


def test_sql_models_live_next_to_the_module() -> None:
    assert {p.stem for p in SQL_DIR.glob("*.sql")} == EXPECTED_VIEWS


# -- what the stream workers really land -----------------------------------------------------
def _describe(db_path: Path, views: list[str]) -> dict[str, list[tuple[str, str]]]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {v: [(r[0], r[1]) for r in con.execute(f"DESCRIBE {v}").fetchall()] for v in views}
    finally:
        con.close()


def test_views_read_the_stream_sink_output_and_match_a_raw_recompute(
    lake: L.Lake, db_path: Path
) -> None:
    """Oracle: traffic_1m and district_traffic_1m (from the workers' files) equal the same
    aggregates recomputed from raw_traffic; the empty-lake fallbacks have the real schemas."""
    from streams.batch import RecordBatch, process_records
    from streams.sink import PartitionSink
    from streams.windows import WindowEngine

    views = [
        "raw_traffic",
        "traffic_1m",
        "traffic_1m_history",
        "district_traffic_1m",
        "late_events",
        "quarantine",
    ]
    build_warehouse(lake.root, db_path)
    empty_schemas = _describe(db_path, views)

    contract, d = CONTRACTS["traffic"], WINDOW_DEFAULTS["traffic"]
    start = utc("2024-03-02T10:00:00")
    rng = np.random.default_rng(7)
    for partition in (0, 1):
        values: list[bytes] = []
        for step in range(61):  # every 10 s for 10 minutes
            for det in (partition, partition + 2, partition + 4):
                ts = start + timedelta(seconds=10 * step + det)
                values.append(
                    json.dumps(
                        {
                            "detector_id": f"tdet-{det}",
                            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "district": ("Mitte", "Süd")[det % 2 if det < 4 else 0],
                            "road": "A59",
                            "lane": 1 + det % 2,
                            "vehicle_count": int(rng.integers(0, 40)),
                            "avg_speed_kmh": float(rng.uniform(20, 90)),
                            "occupancy_pct": float(rng.uniform(0, 60)),
                        }
                    ).encode()
                )
            if step == 35:  # a correction for the already final 10:02 window, then junk
                values.append(
                    json.dumps(
                        {
                            "detector_id": f"tdet-{partition}",
                            "ts": "2024-03-02T10:02:30Z",
                            "district": "Mitte",
                            "road": "A59",
                            "lane": 1,
                            "vehicle_count": 7,
                            "avg_speed_kmh": 33.0,
                            "occupancy_pct": 5.0,
                        }
                    ).encode()
                )
                values.append(b"not json")
        values.append(
            json.dumps(
                {  # far behind the watermark and the grace: a late event
                    "detector_id": f"tdet-{partition}",
                    "ts": "2024-03-02T09:40:00Z",
                    "district": "Mitte",
                    "road": "A59",
                    "lane": 1,
                    "vehicle_count": 1,
                    "avg_speed_kmh": 10.0,
                    "occupancy_pct": 1.0,
                }
            ).encode()
        )
        engine = WindowEngine(
            d, "traffic", partition
        )
        sink = PartitionSink(lake, contract, partition, engine)
        for lo in range(0, len(values), 50):
            chunk = values[lo : lo + 50]
            sink.add(
                process_records(
                    contract,
                    RecordBatch(
                        contract.topic,
                        partition,
                        list(range(lo, lo + len(chunk))),
                        [None] * len(chunk),
                        chunk,
                    ),
                    now=utc("2024-03-02T10:15:00"),
                )
            )
            if lo % 200 == 0:
                sink.flush()
        sink.flush()

    build_warehouse(lake.root, db_path)
    assert _describe(db_path, views) == empty_schemas

    got = sql(lake, db_path, "SELECT * FROM traffic_1m")
    assert len(got) > 0 and (got["version"] > 0).any()
    assert sql(lake, db_path, "SELECT count(*) AS n FROM late_events")["n"][0] == 2
    assert sql(lake, db_path, "SELECT count(*) AS n FROM quarantine")["n"][0] == 2

    oracle = sql(
        lake,
        db_path,
        """
        SELECT detector_id AS entity, time_bucket(INTERVAL 60 SECOND, ts) AS window_start,
               count(*) AS n_events, sum(vehicle_count) AS vehicle_count,
               avg(avg_speed_kmh) AS avg_speed_kmh, max(avg_speed_kmh) AS max_speed_kmh,
               quantile_cont(avg_speed_kmh, 0.95) AS p95_speed_kmh,
               avg(occupancy_pct) AS avg_occupancy_pct
        FROM raw_traffic GROUP BY ALL""",
    ).set_index(["entity", "window_start"])
    got = got.set_index(["entity", "window_start"])
    cols = [a.name for a in AGGREGATES["traffic"]]
    np.testing.assert_allclose(
        got[cols].to_numpy(float), oracle.loc[got.index, cols].to_numpy(float), rtol=1e-9
    )

    # District rollups, for windows both partitions have finalised.
    district = sql(lake, db_path, "SELECT * FROM district_traffic_1m WHERE n_partitions = 2")
    assert len(district) > 0
    raw = sql(
        lake,
        db_path,
        """
        SELECT district, time_bucket(INTERVAL 60 SECOND, ts) AS window_start,
               count(DISTINCT detector_id) AS n_entities, count(*) AS n_events,
               sum(vehicle_count) AS vehicle_count, avg(avg_speed_kmh) AS avg_speed_kmh,
               max(avg_speed_kmh) AS max_speed_kmh
        FROM raw_traffic GROUP BY ALL""",
    ).set_index(["district", "window_start"])
    district = district.set_index(["district", "window_start"])
    dcols = ["n_entities", "n_events", "vehicle_count", "avg_speed_kmh", "max_speed_kmh"]
    np.testing.assert_allclose(
        district[dcols].to_numpy(float), raw.loc[district.index, dcols].to_numpy(float), rtol=1e-9
    )
