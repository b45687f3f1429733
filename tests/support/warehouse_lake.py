"""Hand-made lake files for warehouse tests (no broker): raw, window and district tables
written where the sink would put them, and a build-and-query shortcut."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS
from warehouse.db import build_warehouse

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
    "raw_supply",
    "supply_15m",
    "supply_15m_history",
    "district_supply_15m",
    "late_events",
    "quarantine",
    "anomalies",
    "data_freshness",
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


def sql(lake: L.Lake, db_path: Path, text: str) -> pd.DataFrame:
    """Build (idempotently) and query with a fresh connection."""
    build_warehouse(lake.root, db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(text).fetchdf()
    finally:
        con.close()


def report_lake(lake: L.Lake) -> None:
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

    # supply: a feeder and a water point in Mitte (the water point corrected once), a heat point
    # in Süd; each asset fills only its own type's columns, as the worker lands them
    no_feeder = {"avg_load_kw": None, "max_load_kw": None, "energy_kwh": None, "min_voltage_v": None,
                 "max_voltage_v": None, "avg_voltage_v": None, "avg_frequency_hz": None}
    no_water = {"avg_water_flow_m3h": None, "min_water_flow_m3h": None, "water_m3": None,
                "avg_pressure_bar": None, "min_pressure_bar": None}
    no_heat = {"avg_supply_temp_c": None, "avg_return_temp_c": None, "max_return_temp_c": None,
               "avg_heat_flow_m3h": None, "heat_kwh": None}
    supply = [  # (first offset, rows of one partition-hour)
        (0, [{"entity": "feeder-1", "district": "Mitte", "window_start": f"{day}T18:00:00",
              **no_water, **no_heat, "energy_kwh": 1500.0, "avg_load_kw": 6000.0},
             {"entity": "feeder-1", "district": "Mitte", "window_start": f"{day}T18:15:00",
              **no_water, **no_heat, "energy_kwh": 500.0, "avg_load_kw": 2000.0}]),
        (2, [{"entity": "water-1", "district": "Mitte", "window_start": f"{day}T03:00:00",
              **no_feeder, **no_heat, "water_m3": 10.0, "min_pressure_bar": 3.5}]),
        (3, [{"entity": "heat-1", "district": "Süd", "window_start": f"{day}T06:00:00",
              **no_feeder, **no_water, "heat_kwh": 250.0}]),
        (4, [{"entity": "heat-1", "district": "Süd", "window_start": f"{before}T06:00:00",
              **no_feeder, **no_water, "heat_kwh": 999.0}]),
        (5, [{"entity": "water-1", "district": "Mitte", "window_start": f"{day}T03:00:00", "version": 1,
              **no_feeder, **no_heat, "water_m3": 12.0, "min_pressure_bar": 2.9}]),  # replaces 10 m³, 3.5 bar
    ]
    for first, rows in supply:
        land(lake, L.WINDOWS, "supply", window_table("supply", rows), "window_start", first=first, last=first)

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


def query_args(**kw: Any) -> argparse.Namespace:
    """The `cityflow query` arguments, defaults as the parser gives them."""
    args: dict[str, Any] = {"sql": None, "name": None, "param": [], "list": False, "format": None, "out": None}
    args.update(kw)
    return argparse.Namespace(**args)
