"""A small known lake for the report figures and exports: seeded random rows of every table a
figure reads, around one UTC day (REPORT_DAY) with rows just before and after it, landed where
the workers would put them; returns the landed rows as pandas frames, which the tests'
independent recomputes work from."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.tables import ANOMALIES
from tests.support.warehouse_lake import TS, land, raw_table, traffic_row, window_table

REPORT_DAY = "2024-03-02"
PERIOD_START = datetime(2024, 3, 2)
PERIOD_END = datetime(2024, 3, 3)
# hours with data: one before the period, five inside (incl. its first and last), two after
HOURS = [datetime(2024, 3, 1, 23), datetime(2024, 3, 2, 0), datetime(2024, 3, 2, 7),
         datetime(2024, 3, 2, 8), datetime(2024, 3, 2, 12), datetime(2024, 3, 2, 23),
         datetime(2024, 3, 3, 0), datetime(2024, 3, 3, 1)]
DETECTORS = {"tdet-1": ("A59", "Mitte"), "tdet-2": ("A59", "Mitte"), "tdet-3": ("A40", "Hamborn"),
             "tdet-4": ("Mülheimer Str", "Mitte"), "tdet-5": ("A3", "Süd"), "tdet-6": ("Düsseldorfer Str", "Süd")}
LAMPS = {f"lamp-{i}": d for i, d in enumerate(["Mitte", "Mitte", "Süd", "Süd", "Hamborn", "Rheinhausen"], 1)}
APS = {"ap-st-1": ("street", "Mitte"), "ap-st-2": ("street", "Süd"), "ap-zoo-1": ("zoo", "Mitte"),
       "ap-tram-1": ("tram", "Hamborn"), "ap-bus-1": ("bus", "Süd"), "ap-school-1": ("school", "Rheinhausen")}
TRUCKS = ["truck-1", "truck-2", "truck-3"]
ASSETS = {"feeder-1": ("feeder", "Mitte"), "feeder-2": ("feeder", "Süd"), "feeder-3": ("feeder", "Mitte"),
          "water-1": ("water", "Mitte"), "water-2": ("water", "Hamborn"), "heat-1": ("heat", "Süd")}
# supply adds the local night (02-04 Europe/Berlin = 01-03 UTC in March) the night-flow figure reads
SUPPLY_HOURS = sorted({*HOURS, datetime(2024, 3, 2, 1), datetime(2024, 3, 2, 2), datetime(2024, 3, 3, 2)})


@dataclass
class KnownLake:
    """What was landed, as frames (times as tz-aware UTC pandas timestamps)."""

    raw_traffic: pd.DataFrame
    traffic_windows: pd.DataFrame  # every version landed
    lighting_windows: pd.DataFrame
    raw_wifi: pd.DataFrame
    logistics_windows: pd.DataFrame
    anomalies: pd.DataFrame
    quarantine: pd.DataFrame
    late_events: pd.DataFrame
    raw_other: dict[str, pd.DataFrame] = field(default_factory=dict)  # raw lighting, logistics, supply
    supply_windows: pd.DataFrame = field(default_factory=pd.DataFrame)


def utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC)


class _Lander:
    """Lands a table split by UTC hour, each file with its own offset range."""

    def __init__(self, lake: L.Lake) -> None:
        self.lake = lake
        self.next_offset: dict[tuple[str, str], int] = defaultdict(int)

    def __call__(self, table_name: str, source: str, table: pa.Table, time_col: str) -> None:
        hours = pd.Series(table.column(time_col).to_pylist()).map(lambda t: t.replace(minute=0, second=0))
        for hour in sorted(set(hours)):
            part = table.filter(pa.array((hours == hour).tolist()))
            first = self.next_offset[(table_name, source)]
            self.next_offset[(table_name, source)] = first + part.num_rows + 10
            land(self.lake, table_name, source, part, time_col, first=first)


def _raw_with_offsets(source: str, rows: list[dict[str, Any]], start: int) -> pa.Table:
    return raw_table(source, rows, first_offset=start)


def build_known_lake(lake: L.Lake, seed: int = 14, roads: dict[str, tuple[str, str]] | None = None) -> KnownLake:
    """Land the known lake into `lake`; `roads` replaces DETECTORS (e.g. a hostile road name)."""
    rng = random.Random(seed)
    put = _Lander(lake)
    detectors = roads or DETECTORS

    # traffic: one reading per detector and minute (at :10), and its 1-minute window; a few
    # windows get a correction (version 1) landed later
    raw, windows, corrections = [], [], []
    for hour in HOURS:
        for minute in rng.sample(range(60), 6):
            for det, (road, district) in detectors.items():
                n = rng.choice([0, rng.randint(1, 40)])
                speed = None if n == 0 else round(rng.uniform(5, 110), 1)
                occ = 0.0 if n == 0 else round(rng.uniform(0, 60), 2)
                ws = hour + timedelta(minutes=minute)
                raw.append(traffic_row(det, (ws + timedelta(seconds=10)).isoformat(), road=road, district=district,
                                       vehicle_count=n, avg_speed_kmh=speed, occupancy_pct=occ))
                w = {"entity": det, "district": district, "window_start": ws.isoformat(), "n_events": 1,
                     "vehicle_count": n, "avg_speed_kmh": speed, "avg_occupancy_pct": occ}
                windows.append(w)
                if rng.random() < 0.08:
                    corrections.append({**w, "version": 1, "vehicle_count": n + 3,
                                        "avg_speed_kmh": 12.0, "avg_occupancy_pct": 31.0})
    raw_t = _raw_with_offsets("traffic", raw, 0)
    put(L.RAW, "traffic", raw_t, "ts")
    put(L.WINDOWS, "traffic", window_table("traffic", windows), "window_start")
    if corrections:
        put(L.WINDOWS, "traffic", window_table("traffic", corrections), "window_start")
    traffic_windows = pd.DataFrame(windows + corrections)
    traffic_windows["version"] = traffic_windows.get("version", 0)
    traffic_windows["version"] = traffic_windows["version"].fillna(0).astype(int)

    # lighting: 15-minute windows per lamp
    lwin = []
    for hour in HOURS:
        for q in range(4):
            for lamp, district in LAMPS.items():
                if rng.random() < 0.2:
                    continue
                n = rng.randint(1, 4)
                fault = rng.choice([0, 0, 0, rng.randint(1, n)])
                on = rng.randint(0, n - fault)
                dimmed = rng.randint(0, n - fault - on)
                lwin.append({"entity": lamp, "district": district,
                             "window_start": (hour + timedelta(minutes=15 * q)).isoformat(),
                             "n_events": n, "fault_count": fault, "on_count": on, "dimmed_count": dimmed,
                             "off_count": n - fault - on - dimmed,
                             "energy_wh": round(rng.uniform(0, 30), 3),
                             "min_ambient_lux": rng.choice([0.5, 40.0, 999.9, 1000.0, 25000.0])})
    put(L.WINDOWS, "lighting", window_table("lighting", lwin), "window_start")

    # wifi: raw reports every 2 minutes (some missing)
    wraw = []
    for hour in HOURS:
        for minute in range(0, 60, 2):
            for ap, (site, district) in APS.items():
                if rng.random() < 0.3:
                    continue
                wraw.append({"ap_id": ap, "ts": utc(hour + timedelta(minutes=minute, seconds=30)), "site_type": site,
                             "district": district, "connected_clients": rng.randint(0, 300),
                             "bytes_in": rng.randint(0, 10**9), "bytes_out": rng.randint(0, 10**8),
                             "auth_failures": rng.randint(0, 3), "latency_ms": 20.0, "status": "up"})
    put(L.RAW, "wifi", _raw_with_offsets("wifi", wraw, 0), "ts")

    # logistics: 5-minute windows per truck; some all idle and standing (stalled), some idle but rolling
    gwin = []
    for hour in HOURS:
        for slot in range(12):
            for truck in TRUCKS:
                if rng.random() < 0.3:
                    continue
                n = rng.randint(1, 6)
                kind = rng.random()
                if kind < 0.25:
                    counts, speed = (0, n, 0, 0), rng.choice([0.0, 0.5, 0.99])
                elif kind < 0.35:
                    counts, speed = (0, n, 0, 0), rng.choice([1.0, 4.0])
                else:
                    moving = rng.randint(0, n)
                    idle = rng.randint(0, n - moving)
                    loading = rng.randint(0, n - moving - idle)
                    counts, speed = (moving, idle, loading, n - moving - idle - loading), rng.uniform(0, 60)
                gwin.append({"entity": truck, "window_start": (hour + timedelta(minutes=5 * slot)).isoformat(),
                             "n_events": n, "moving_count": counts[0], "idle_count": counts[1],
                             "loading_count": counts[2], "unloading_count": counts[3], "avg_speed_kmh": speed})
    put(L.WINDOWS, "logistics", window_table("logistics", gwin), "window_start")

    # anomalies
    kinds = [("traffic.congestion", "tdet-1", "Mitte"), ("traffic.congestion", "tdet-3", "Hamborn"),
             ("lighting.on_in_daylight", "lamp-2", "Mitte"), ("logistics.stalled", "truck-1", None),
             ("wifi.ap_down", "ap-zoo-1", "Mitte")]
    alerts = []
    for i in range(40):
        kind, entity, district = rng.choice(kinds)
        ws = utc(rng.choice(HOURS) + timedelta(minutes=rng.randint(0, 59)))
        alerts.append({"anomaly_id": f"a{i:03d}", "source": kind.split(".")[0], "kind": kind,
                       "severity": rng.choice(["warning", "critical"]), "entity": entity, "district": district,
                       "window_start": ws, "window_end": ws, "detected_at": ws, "value": 1.0, "expected": None,
                       "score": 1.0, "evidence": "test", "kafka_partition": 0, "version": 0, "emitted_at": ws})
    for source in ("traffic", "lighting", "logistics", "wifi"):
        part = [a for a in alerts if a["source"] == source]
        if part:
            put(L.ANOMALIES, source, pa.Table.from_pylist(part, schema=ANOMALIES.schema), "window_start")

    # quarantine by receipt time
    q_schema = pa.schema([("source_topic", pa.string()), ("kafka_partition", pa.int32()),
                          ("kafka_offset", pa.int64()), ("reason", pa.string()), ("field", pa.string()),
                          ("detail", pa.string()), ("value", pa.binary()), ("key", pa.binary()),
                          ("received_at", TS)])
    bad = []
    for i in range(30):
        source = rng.choice(["traffic", "wifi"])
        bad.append({"source": source, "source_topic": f"city.{source}.v1", "kafka_partition": 0,
                    "kafka_offset": 1000 + i, "reason": rng.choice(["not_json", "out_of_range", "key_mismatch"]),
                    "field": "", "detail": "", "value": b"{", "key": None,
                    "received_at": utc(rng.choice(HOURS) + timedelta(minutes=rng.randint(0, 59)))})
    for source in ("traffic", "wifi"):
        part = [{k: v for k, v in b.items() if k != "source"} for b in bad if b["source"] == source]
        put(L.QUARANTINE, source, pa.Table.from_pylist(part, schema=q_schema), "received_at")

    # late traffic events: a record may miss two windows (same offset twice)
    late_rows, late_meta = [], []
    for i in range(12):
        t = rng.choice(HOURS) + timedelta(minutes=rng.randint(0, 58), seconds=5)
        det = rng.choice(list(detectors))
        road, district = detectors[det]
        missed = [t.replace(second=0)] + ([t.replace(second=0) - timedelta(minutes=1)] if i % 4 == 0 else [])
        for ws in missed:
            late_rows.append(traffic_row(det, t.isoformat(), road=road, district=district))
            late_meta.append((5000 + i, utc(ws), round(rng.uniform(700, 4000), 2)))
    late = raw_table("traffic", late_rows)
    late = late.set_column(late.schema.get_field_index("kafka_offset"), "kafka_offset",
                           pa.array([m[0] for m in late_meta], pa.int64()))
    late = late.append_column("window_start", pa.array([m[1] for m in late_meta], TS)).append_column(
        "lateness_s", pa.array([m[2] for m in late_meta]))
    put(L.LATE_EVENTS, "traffic", late, "ts")

    # raw lighting and logistics (the figures read their windows; freshness reads these)
    lraw, graw = [], []
    for hour in HOURS:
        for minute in (3, 33, 59):
            ts = utc(hour + timedelta(minutes=minute))
            for lamp, district in LAMPS.items():
                lraw.append({"lamp_id": lamp, "ts": ts, "district": district, "status": "on", "dim_level_pct": 80.0,
                             "power_w": 40.0, "ambient_lux": 3.0, "fault_code": None})
            for truck in TRUCKS:
                graw.append({"vehicle_id": truck, "ts": ts, "lat": 51.43, "lon": 6.76, "speed_kmh": 20.0,
                             "status": "moving", "cargo_temp_c": None, "eta_minutes": 12.0})
    put(L.RAW, "lighting", _raw_with_offsets("lighting", lraw, 0), "ts")
    put(L.RAW, "logistics", _raw_with_offsets("logistics", graw, 0), "ts")

    # supply: 15-minute windows per asset (only its type's columns), raw readings, outage alerts;
    # its own random stream, so the other sources' rows stay what they were
    srng = random.Random(seed + 1000)
    swin, sraw = [], []
    empty = {a.name: None for a in AGGREGATES["supply"] if a.name != "n_events"}
    for hour in SUPPLY_HOURS:
        for q in range(4):
            for asset, (kind, district) in ASSETS.items():
                if srng.random() < 0.15:
                    continue
                w = {**empty, "entity": asset, "district": district, "n_events": 15,
                     "window_start": (hour + timedelta(minutes=15 * q)).isoformat()}
                if kind == "feeder":
                    w.update(max_load_kw=srng.choice([0.0, 0.8, 1.0, 120.0, 310.5]),
                             min_voltage_v=srng.choice([0.0, 206.9, 207.0, 226.0]),
                             max_voltage_v=srng.choice([231.0, 253.0, 253.1]),
                             energy_kwh=round(srng.uniform(0, 80), 3))
                elif kind == "water":
                    w.update(min_water_flow_m3h=round(srng.uniform(5, 60), 2), water_m3=round(srng.uniform(2, 30), 2))
                else:
                    w.update(heat_kwh=round(srng.uniform(0, 50), 3))
                swin.append(w)
        for minute in (3, 33, 59):
            ts = utc(hour + timedelta(minutes=minute))
            for asset, (kind, district) in ASSETS.items():
                sraw.append({"asset_id": asset, "ts": ts, "district": district, "asset_type": kind,
                             "load_kw": 100.0 if kind == "feeder" else None})
    put(L.WINDOWS, "supply", window_table("supply", swin), "window_start")
    put(L.RAW, "supply", _raw_with_offsets("supply", sraw, 0), "ts")
    salerts = []
    for i in range(8):
        entity = srng.choice(["feeder-1", "feeder-2"])
        ws = utc(srng.choice(HOURS) + timedelta(minutes=srng.randint(0, 59)))
        salerts.append({"anomaly_id": f"s{i:03d}", "source": "supply", "kind": "supply.power_outage",
                        "severity": "critical", "entity": entity, "district": ASSETS[entity][1],
                        "window_start": ws, "window_end": ws, "detected_at": ws, "value": 0.0, "expected": 1.0,
                        "score": 15.0, "evidence": "test", "kafka_partition": 0, "version": 0, "emitted_at": ws})
    put(L.ANOMALIES, "supply", pa.Table.from_pylist(salerts, schema=ANOMALIES.schema), "window_start")
    alerts += salerts

    def frame(rows: list[dict[str, Any]], time_cols: tuple[str, ...]) -> pd.DataFrame:
        f = pd.DataFrame(rows)
        for c in time_cols:
            if c in f:
                f[c] = pd.to_datetime(f[c], utc=True)
        return f

    late_df = late.to_pandas()
    return KnownLake(
        raw_traffic=frame(raw, ("ts",)),
        traffic_windows=frame(traffic_windows.to_dict("records"), ("window_start",)),
        lighting_windows=frame(lwin, ("window_start",)),
        raw_wifi=frame(wraw, ("ts",)),
        logistics_windows=frame(gwin, ("window_start",)),
        anomalies=frame(alerts, ("window_start",)),
        quarantine=frame(bad, ("received_at",)),
        late_events=late_df.assign(ts=pd.to_datetime(late_df["ts"], utc=True)),
        raw_other={"lighting": frame(lraw, ("ts",)), "logistics": frame(graw, ("ts",)), "supply": frame(sraw, ("ts",))},
        supply_windows=frame(swin, ("window_start",)),
    )
