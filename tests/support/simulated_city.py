"""Test helper: realistic traffic windows (the simulator's detectors and daily rhythm, run
through the real window engine), with incidents painted in, and a runner that feeds windows
to a detector in batches."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from contracts.windows import WindowGeometry
from streams.detectors.base import Detector, DetectorState
from streams.simulator import CityClock, TrafficDetector
from streams.windows import WindowEngine

MIN = 60_000
DAY = 86_400_000
# Monday 2026-03-02 00:00 Europe/Berlin (UTC+1): a Monday so weekdays and weekends are known
T0 = int(datetime(2026, 3, 1, 23, 0, tzinfo=UTC).timestamp() * 1000)


def local_ms(day: int, hour: float) -> int:
    """Epoch ms of local (Berlin, winter) hour `hour` on day `day` after T0 (day 0 = Monday)."""
    return T0 + day * DAY + int(hour * 3_600_000)


Paint = Callable[[pd.DataFrame], pd.DataFrame]


def _reports(devices: Sequence[Any], rng: random.Random, clock: CityClock, end_ms: int,
             every_s: int) -> pd.DataFrame:
    """One report of every device each `every_s` from T0 until `end_ms`, `ts` in epoch ms."""
    rows = []
    for ts in range(T0, end_ms, every_s * 1000):
        for d in devices:
            r = d.read(rng, clock, ts, "")
            r["ts"] = ts
            rows.append(r)
    return pd.DataFrame(rows)


def _engine_windows(frame: pd.DataFrame, source: str, size_s: int, columns: Sequence[str],
                    partition: int = 0) -> pa.Table:
    """The readings through the real window engine (in time order): its finalised windows.
    A district column without any value goes in as typed nulls."""
    frame = frame.sort_values(["ts", "entity"], kind="stable").reset_index(drop=True)
    frame["offset"] = np.arange(len(frame), dtype=np.int64)
    table = pa.Table.from_pandas(frame[list(columns)], preserve_index=False)
    i = table.schema.get_field_index("district")
    if pa.types.is_null(table.schema.field(i).type):
        table = table.set_column(i, "district", pa.nulls(len(frame), pa.string()))
    engine = WindowEngine(WindowGeometry(size_s=size_s), source, partition=partition)
    return engine.process(table).windows


def readings(days: float, n_detectors: int = 4, seed: int = 7, every_s: int = 60) -> pd.DataFrame:
    """Raw readings of `n_detectors` simulator detectors, one each `every_s`, from T0."""
    rng = random.Random(seed)
    clock = CityClock(seed)
    devices = [TrafficDetector(rng, i) for i in range(n_detectors)]
    frame = _reports(devices, rng, clock, T0 + int(days * DAY), every_s)
    return frame.rename(columns={"detector_id": "entity"})


def jam(frame: pd.DataFrame, entity: str, start: int, end: int, speed_factor: float = 0.25,
        occupancy: float = 45.0) -> pd.DataFrame:
    """A jam on one detector: speed falls to `speed_factor`, occupancy rises to `occupancy`."""
    out = frame.copy()
    sel = (out["entity"] == entity) & (out["ts"] >= start) & (out["ts"] < end) & (out["vehicle_count"] > 0)
    out.loc[sel, "avg_speed_kmh"] = out.loc[sel, "avg_speed_kmh"] * speed_factor
    out.loc[sel, "occupancy_pct"] = occupancy
    return out


def windows_of(frame: pd.DataFrame, size_s: int = 300, partition: int = 0) -> pa.Table:
    """The readings through the real window engine (in time order): its finalised windows.
    Loops measure no travel time: null unless the frame has it."""
    if "travel_time_s" not in frame.columns:
        frame = frame.assign(travel_time_s=np.nan)
    return _engine_windows(frame, "traffic", size_s, ["ts", "entity", "district", "offset", "vehicle_count",
                                                       "avg_speed_kmh", "occupancy_pct", "travel_time_s"], partition)


def run(detector: Detector, windows: pa.Table, cuts: Sequence[int] = (),
        state: DetectorState | None = None) -> pa.Table:
    """Feed `windows` (sorted by window_start) to the detector, split at row indices `cuts`."""
    windows = windows.sort_by([("window_start", "ascending"), ("entity", "ascending")])
    state = state if state is not None else detector.new_state()
    bounds = [0, *cuts, windows.num_rows]
    parts = [detector.detect(windows.slice(a, b - a), state) for a, b in itertools.pairwise(bounds)]
    return pa.concat_tables(parts)


def daily_batches(windows: pa.Table) -> list[int]:
    """Cut points at each day boundary (the worker's batches are much smaller; any cut works)."""
    ws = windows.sort_by("window_start").column("window_start").to_numpy()
    return [int(i) for i in np.searchsorted(ws, np.arange(T0 + DAY, int(ws.max()) + 1, DAY))]


def truck_fixes(hours: float, n_trucks: int = 10, seed: int = 3, every_s: int = 30) -> pd.DataFrame:
    """Raw fixes of the simulator's trucks (every fifth a reefer), one each `every_s`."""
    from streams.simulator import Truck

    rng = random.Random(seed)
    clock = CityClock(seed)
    trucks = [Truck(rng, i, T0 / 1000) for i in range(n_trucks)]
    frame = _reports(trucks, rng, clock, T0 + int(hours * 3_600_000), every_s)
    frame["entity"] = frame["vehicle_id"]
    frame["district"] = None
    return frame


def logistics_windows(frame: pd.DataFrame, size_s: int = 300) -> pa.Table:
    return _engine_windows(frame, "logistics", size_s, ["ts", "entity", "district", "offset", "status",
                                                         "speed_kmh", "cargo_temp_c", "eta_minutes"])


def raw_table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame[["vehicle_id", "ts", "lat", "lon", "speed_kmh", "status"]],
                                preserve_index=False)


def ap_readings(days: float, seed: int = 5, every_s: int = 60) -> pd.DataFrame:
    """Raw statistics of six simulator APs (street, zoo, tram, bus, school, street)."""
    from streams.simulator import WifiAccessPoint

    rng = random.Random(seed)
    clock = CityClock(seed)
    sites = ("street", "zoo", "tram", "bus", "school", "street")
    aps = [WifiAccessPoint(rng, s, i + 1, i, every_s) for i, s in enumerate(sites)]
    frame = _reports(aps, rng, clock, T0 + int(days * DAY), every_s)
    frame["entity"] = frame["ap_id"]
    return frame


def wifi_windows(frame: pd.DataFrame, size_s: int = 300) -> pa.Table:
    return _engine_windows(frame, "wifi", size_s, ["ts", "entity", "district", "offset", "connected_clients",
                                                    "bytes_in", "bytes_out", "auth_failures", "latency_ms", "status"])


def lamp_readings(days: float, n_lamps: int = 8, seed: int = 9, every_s: int = 60) -> pd.DataFrame:
    """Raw reports of simulator street lamps: on after dusk, dimmed after midnight, faults."""
    from streams.simulator import StreetLamp

    rng = random.Random(seed)
    clock = CityClock(seed)
    lamps = [StreetLamp(rng, i) for i in range(n_lamps)]
    frame = _reports(lamps, rng, clock, T0 + int(days * DAY), every_s)
    frame["entity"] = frame["lamp_id"]
    return frame


def lighting_windows(frame: pd.DataFrame, size_s: int = 900) -> pa.Table:
    return _engine_windows(frame, "lighting", size_s, ["ts", "entity", "district", "offset", "status",
                                                        "dim_level_pct", "power_w", "ambient_lux"])


# --------------------------------------------------------------------------------------------
# A whole simulated city (streams.simulator.generate, with or without injected incidents)
# through the real window engine at the worker's window sizes and every default detector

CITY_COLUMNS = {
    "traffic": ["vehicle_count", "avg_speed_kmh", "occupancy_pct", "travel_time_s"],
    "lighting": ["status", "dim_level_pct", "power_w", "ambient_lux"],
    "wifi": ["connected_clients", "bytes_in", "bytes_out", "auth_failures", "latency_ms", "status"],
    "logistics": ["status", "speed_kmh", "cargo_temp_c", "eta_minutes"],
}
# Exactly one traffic report a minute per detector (10 detectors, 60 s windows), minimum fleets
# of the other sources: 128,000 events in four days.
CITY_RATE = 10 / 27
T0_UTC = datetime.fromtimestamp(T0 / 1000, UTC)


def city_frames(events: Sequence[Any]) -> dict[str, pd.DataFrame]:
    """Simulator events (SimEvent) as one frame per source: ts in epoch ms, entity, district."""
    out: dict[str, pd.DataFrame] = {}
    for source, columns in CITY_COLUMNS.items():
        rows = [{**e.record, "ts": e.ts_ms, "entity": e.key} for e in events if e.source == source]
        if rows:
            frame = pd.DataFrame(rows)
            if "district" not in frame:
                frame["district"] = None
            for column in columns:  # optional fields the simulator leaves out (travel time)
                if column not in frame:
                    frame[column] = np.nan
            out[source] = frame
    return out


def city_alerts(events: Sequence[Any], kinds: Sequence[str] | None = None) -> pa.Table:
    """Every default detector (or `kinds`) over the events' windows, fed a day at a time;
    the impossible jump reads the raw logistics fixes, also a day at a time."""
    from contracts.windows import WINDOW_DEFAULTS
    from streams.detectors import DEFAULT_CONFIGS

    frames = city_frames(events)
    windows = {s: _engine_windows(f, s, WINDOW_DEFAULTS[s].size_s,
                                  ["ts", "entity", "district", "offset", *CITY_COLUMNS[s]])
               for s, f in frames.items()}
    found = []
    for kind, config in DEFAULT_CONFIGS.items():
        if kinds is not None and kind not in kinds:
            continue
        detector = config.build()
        if detector.source not in windows:
            continue
        if kind == "logistics.impossible_jump":
            fixes = frames["logistics"].sort_values(["ts", "entity"], kind="stable")
            raw = raw_table(fixes)
            ts = raw.column("ts").to_numpy()
            cuts = [0, *np.searchsorted(ts, np.arange(T0 + DAY, int(ts.max()) + 1, DAY)), raw.num_rows]
            state = detector.new_state()
            found += [detector.detect(pa.table({}), state, raw.slice(a, b - a))
                      for a, b in itertools.pairwise(cuts)]
        else:
            w = windows[detector.source]
            found.append(run(detector, w, daily_batches(w)))
    return pa.concat_tables(found) if found else pa.table({})


def city_device_hours(events: Sequence[Any]) -> float:
    """Device-hours of a run: each device from its first to its last reading."""
    span: dict[str, tuple[int, int]] = {}
    for e in events:
        a, b = span.get(e.key, (e.ts_ms, e.ts_ms))
        span[e.key] = (min(a, e.ts_ms), max(b, e.ts_ms))
    return sum((b - a) / 3_600_000 for a, b in span.values())
