"""The daily city report: a few small tables per UTC day computed by DuckDB from the warehouse
views, and a plain-text rendering of them for the terminal.

    >>> sections = daily_report(con)            # the latest day with data
    >>> print(format_report(sections))
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import duckdb
import pandas as pd

from contracts.lake import RAW, Lake
from contracts.logistics import VEHICLE_STATUS
from contracts.registry import CONTRACTS
from warehouse.scoped import period_views

SECTION_TITLES: dict[str, str] = {
    "busiest_roads": "Busiest roads (raw_traffic: vehicles counted, vehicle-weighted mean speed)",
    "lighting_by_district": "Lamp faults and energy per district (lighting_15m)",
    "wifi_by_site_type": "Wi-Fi load by site type (raw_wifi)",
    "fleet_status": "Fleet status (logistics_5m: share of position fixes per status)",
    "supply_by_district": "Supply networks per district (supply_15m: delivered energy, water and heat)",
    "data_quality": "Data quality (quarantine by reason, late events)",
    "anomalies": "Anomalies by kind and district (anomalies, by window_start)",
    "anomaly_entities": "Entities with the most anomalies (anomalies)",
}


def _day_filter(ts_col: str, day: date) -> str:
    """Rows whose `ts_col` falls on `day` (UTC). `date` is the Hive partition of that same
    column, so the first term prunes files and the second is the exact definition."""
    nxt = day + timedelta(days=1)
    return (
        f"date = DATE '{day.isoformat()}' "
        f"AND {ts_col} >= TIMESTAMPTZ '{day.isoformat()} 00:00:00+00' "
        f"AND {ts_col} < TIMESTAMPTZ '{nxt.isoformat()} 00:00:00+00'"
    )


def _busiest_roads(day: date, top: int) -> str:
    return f"""
        SELECT road,
               count(DISTINCT detector_id) AS detectors,
               CAST(sum(vehicle_count) AS BIGINT) AS vehicles,
               sum(vehicle_count * avg_speed_kmh) / nullif(sum(vehicle_count), 0) AS mean_speed_kmh
        FROM raw_traffic
        WHERE {_day_filter("ts", day)}
        GROUP BY road
        ORDER BY vehicles DESC, road
        LIMIT {int(top)}"""


def _lighting_by_district(day: date) -> str:
    return f"""
        SELECT district,
               count(DISTINCT entity) AS lamps,
               count(DISTINCT entity) FILTER (WHERE fault_count > 0) AS lamps_with_faults,
               CAST(sum(fault_count) AS BIGINT) AS fault_reports,
               sum(energy_wh) / 1000.0 AS energy_kwh
        FROM lighting_15m
        WHERE {_day_filter("window_start", day)}
        GROUP BY district
        ORDER BY district"""


def _wifi_by_site_type(day: date) -> str:
    return f"""
        SELECT site_type,
               count(DISTINCT ap_id) AS access_points,
               avg(connected_clients) AS mean_clients,
               max(connected_clients) AS max_clients,
               (sum(bytes_in) + sum(bytes_out)) / 1e9 AS gb_transferred,
               CAST(sum(auth_failures) AS BIGINT) AS auth_failures
        FROM raw_wifi
        WHERE {_day_filter("ts", day)}
        GROUP BY site_type
        ORDER BY site_type"""


def _fleet_status(day: date) -> str:
    shares = ",\n               ".join(
        f"sum({s}_count) / sum(n_events) AS {s}_share" for s in VEHICLE_STATUS
    )
    return f"""
        SELECT count(DISTINCT entity) AS vehicles,
               CAST(sum(n_events) AS BIGINT) AS position_fixes,
               {shares},
               max(max_cargo_temp_c) AS max_cargo_temp_c
        FROM logistics_5m
        WHERE {_day_filter("window_start", day)}
        HAVING count(*) > 0"""


def _supply_by_district(day: date) -> str:
    # An asset has one type and fills only its type's columns (feeder: energy_kwh, water point:
    # water_m3 and pressure, heat point: heat_kwh), so the sums skip the other types' nulls.
    return f"""
        SELECT district,
               count(DISTINCT entity) AS assets,
               sum(energy_kwh) / 1000.0 AS energy_mwh,
               sum(water_m3) AS water_m3,
               sum(heat_kwh) / 1000.0 AS heat_mwh,
               min(min_pressure_bar) AS min_pressure_bar
        FROM supply_15m
        WHERE {_day_filter("window_start", day)}
        GROUP BY district
        ORDER BY district"""


def _data_quality(day: date) -> str:
    return f"""
        SELECT 'quarantined' AS kind, source, reason, count(*) AS records
        FROM quarantine
        WHERE {_day_filter("received_at", day)}
        GROUP BY source, reason
        UNION ALL
        SELECT 'late' AS kind, source, 'late_event' AS reason,
               count(DISTINCT (kafka_partition, kafka_offset)) AS records
        FROM late_events
        WHERE {_day_filter("ts", day)}
        GROUP BY source
        ORDER BY kind DESC, source, reason"""


def _anomalies(day: date) -> str:
    return f"""
        SELECT kind, coalesce(district, '(none)') AS district, count(*) AS anomalies,
               count(*) FILTER (WHERE severity = 'critical') AS critical,
               count(DISTINCT entity) AS entities
        FROM anomalies
        WHERE {_day_filter("window_start", day)}
        GROUP BY ALL
        ORDER BY anomalies DESC, kind, district"""


def _anomaly_entities(day: date, top: int) -> str:
    return f"""
        SELECT source, entity, count(*) AS anomalies,
               string_agg(DISTINCT kind, ', ' ORDER BY kind) AS kinds,
               min(window_start) AS first_start
        FROM anomalies
        WHERE {_day_filter("window_start", day)} AND entity IS NOT NULL
        GROUP BY source, entity
        ORDER BY anomalies DESC, source, entity
        LIMIT {int(top)}"""


def latest_day(con: duckdb.DuckDBPyConnection, lake: Lake | None = None) -> date | None:
    """The latest UTC day with any landed raw event, or None on an empty lake. With the `lake`
    it is read off the `date=` directories (the UTC date of ts, by the layout): no Parquet file
    is opened, where the SQL fallback reads max(ts) from every raw file."""
    if lake is not None:
        newest = lake.latest_date(RAW, CONTRACTS)
        return date.fromisoformat(newest) if newest else None
    per_source = " UNION ALL ".join(f"SELECT max(ts) AS ts FROM raw_{s}" for s in CONTRACTS)
    row = con.execute(
        f"SELECT CAST(timezone('UTC', max(ts)) AS DATE) FROM ({per_source})"
    ).fetchone()
    return row[0] if row else None


def daily_report(
    con: duckdb.DuckDBPyConnection, day: date | None = None, *, top_roads: int = 10, lake: Lake | None = None,
    top_entities: int = 10,
) -> dict[str, pd.DataFrame]:
    """The report sections for one UTC day (default: the latest day with data, found from the
    `lake`'s directories when given, else by SQL). With a `lake`, the sections read that day's
    files only (period-scoped views, warehouse/scoped.py); without, the views over the lake.

    Every frame carries the day in `frame.attrs["day"]` (None when the lake has no data, in
    which case every section is empty).
    """
    day = day or latest_day(con, lake)
    queries = {
        "busiest_roads": lambda d: _busiest_roads(d, top_roads),
        "lighting_by_district": _lighting_by_district,
        "wifi_by_site_type": _wifi_by_site_type,
        "fleet_status": _fleet_status,
        "supply_by_district": _supply_by_district,
        "data_quality": _data_quality,
        "anomalies": _anomalies,
        "anomaly_entities": lambda d: _anomaly_entities(d, top_entities),
    }
    texts = {name: make_sql(day or date(1970, 1, 1)) for name, make_sql in queries.items()}
    if day is None or lake is None:
        return _run_sections(con, texts, day)
    # every section filters on the day's `date` partition: read that day's files only
    with period_views(con, lake, day, day, [duckdb.get_table_names(t, qualified=False) for t in texts.values()]):
        return _run_sections(con, texts, day)


def _run_sections(con: duckdb.DuckDBPyConnection, texts: dict[str, str], day: date | None) -> dict[str, pd.DataFrame]:
    sections: dict[str, pd.DataFrame] = {}
    for name, sql in texts.items():
        frame = con.execute(sql if day else f"SELECT * FROM ({sql}) WHERE false").fetchdf()
        frame.attrs["day"] = day.isoformat() if day else None
        sections[name] = frame
    return sections


def _format_value(v: object) -> str:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def format_table(frame: pd.DataFrame) -> str:
    """A DataFrame as an aligned text table (numbers right-aligned), or '(no rows)'."""
    if frame.empty:
        return "(no rows)"
    cols = list(frame.columns)
    cells = [
        [_format_value(v) for v in row] for row in frame.astype(object).itertuples(index=False)
    ]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in cols]
    widths = [max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line([str(c) for c in cols]), rule] + [line(r) for r in cells])


def format_report(sections: dict[str, pd.DataFrame]) -> str:
    """Render report sections as text tables under their titles."""
    day = next((f.attrs.get("day") for f in sections.values() if f.attrs.get("day")), None)
    header = f"cityflow daily report for {day} (UTC)" if day else "cityflow daily report: no data"
    out = [header, "=" * len(header)]
    for name, frame in sections.items():
        title = SECTION_TITLES.get(name, name)
        out += ["", title, format_table(frame)]
    return "\n".join(out) + "\n"
