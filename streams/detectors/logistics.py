"""Logistics detectors: cold-chain breach (cargo too warm for too long), a vehicle stalled on a
trip, and an impossible jump between two consecutive GPS fixes (raw rows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streams.detectors.base import (
    Alerts,
    DetectorState,
    Rows,
    RunDetector,
    Severity,
    utc_minute,
)

SOURCE = "logistics"
TEMP, SPEED = "max_cargo_temp_c", "avg_speed_kmh"
MOVING, LOADING, UNLOADING = "moving_count", "loading_count", "unloading_count"


@dataclass(frozen=True)
class ColdChainConfig:
    """Cold-chain breach: a reefer's warmest cargo reading in each window above
    `max_temp_c` for at least `min_duration_s` (windows in a row, gaps up to `max_gap_s`).
    Defaults: 8 °C, the top of the 2-8 °C chilled band (GDP pharma and fresh food); 15 min,
    three 5-min windows, long enough that a door opened at a dock (the simulator's trucks gain
    about 1 °C while loading) does not count, short enough to save a load. Vehicles without
    reefer data (null temperature) are never scored. One alert per excursion."""

    max_temp_c: float = 8.0
    min_duration_s: float = 900.0
    max_gap_s: float = 600.0
    severity: Severity = Severity.CRITICAL

    def __post_init__(self) -> None:
        if self.min_duration_s <= 0 or self.max_gap_s < 0:
            raise ValueError("min_duration_s must be > 0 and max_gap_s >= 0")

    def build(self) -> ColdChain:
        return ColdChain(self)


class ColdChain(RunDetector):
    name, source, columns = "logistics.cold_chain", SOURCE, (TEMP,)

    def condition(self, col: dict[str, np.ndarray]) -> np.ndarray:
        return col[TEMP] > self.config.max_temp_c

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        temp, limit = rows.columns[TEMP][i], self.config.max_temp_c
        evidence = f"cargo {temp:.1f} °C above {limit:g} °C for {minutes:.0f} min since {utc_minute(run_start)}"
        return temp, limit, evidence


@dataclass(frozen=True)
class StalledConfig:
    """Stalled vehicle: on a trip (status 'moving' reported in the window) but not moving
    (mean speed at most `max_speed_kmh`) and neither loading nor unloading, for at least
    `min_duration_s`. Trucks parked overnight or waiting at a hub report 'idle' and are not on
    a trip, so they never count. Defaults: 2 km/h (GPS jitter of a parked truck); 30 min
    (longer than a level crossing, a red-light queue or a traffic jam's stop-and-go, whose
    window means stay above walking pace). One alert per stall."""

    max_speed_kmh: float = 2.0
    min_duration_s: float = 1800.0
    max_gap_s: float = 600.0
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.max_speed_kmh < 0 or self.min_duration_s <= 0 or self.max_gap_s < 0:
            raise ValueError("max_speed_kmh >= 0, min_duration_s > 0 and max_gap_s >= 0 are required")

    def build(self) -> Stalled:
        return Stalled(self)


class Stalled(RunDetector):
    name, source, columns = "logistics.stalled", SOURCE, (SPEED, MOVING, LOADING, UNLOADING)

    def condition(self, col: dict[str, np.ndarray]) -> np.ndarray:
        on_trip = (col[MOVING] > 0) & ~(np.nan_to_num(col[LOADING]) + np.nan_to_num(col[UNLOADING]) > 0)
        return on_trip & (col[SPEED] <= self.config.max_speed_kmh)

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        speed, limit = rows.columns[SPEED][i], self.config.max_speed_kmh
        evidence = (f"on a trip but at {speed:.1f} km/h (<= {limit:g}), not loading, "
                    f"for {minutes:.0f} min since {utc_minute(run_start)}")
        return speed, limit, evidence


@dataclass(frozen=True)
class ImpossibleJumpConfig:
    """Impossible jump: two consecutive fixes of a vehicle (raw rows, in event-time order)
    farther apart than `max_speed_kmh` allows in the time between them, and more than
    `min_km` apart (so GPS jitter between fixes a second apart does not count). Defaults:
    200 km/h (a truck's limit is 130 km/h in the contract; the rest is slack for timestamp
    rounding); 0.5 km. A jump and the jump back within `clear_s` (a single bad fix) are one
    alert. The last fix per vehicle is the state; a fix older than it (late) is skipped."""

    max_speed_kmh: float = 200.0
    min_km: float = 0.5
    clear_s: float = 600.0
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.max_speed_kmh <= 0 or self.min_km < 0 or self.clear_s < 0:
            raise ValueError("max_speed_kmh > 0, min_km >= 0 and clear_s >= 0 are required")

    def build(self) -> ImpossibleJump:
        return ImpossibleJump(self)


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


class ImpossibleJump:
    name = "logistics.impossible_jump"
    source = SOURCE

    def __init__(self, config: ImpossibleJumpConfig):
        self.config = config
        self.severity = config.severity

    def new_state(self) -> DetectorState:
        return DetectorState(self.name, {"lat": 1, "lon": 1, "ts": 1, "last_jump": 1})

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        """Needs `raw` (columns vehicle_id or entity, ts, lat, lon); windows are not used."""
        cfg = self.config
        alerts = Alerts(self.name, SOURCE, self.severity)
        if raw is None or raw.num_rows == 0:
            return alerts.table()
        key = "vehicle_id" if "vehicle_id" in raw.column_names else "entity"
        codes = state.encode(raw.column(key))
        ts = raw.column("ts").cast(pa.int64()).to_numpy().astype(np.int64)
        lat = raw.column("lat").cast(pa.float64()).to_numpy(zero_copy_only=False)
        lon = raw.column("lon").cast(pa.float64()).to_numpy(zero_copy_only=False)
        order = np.lexsort((ts, codes))
        codes, ts, lat, lon = codes[order], ts[order], lat[order], lon[order]
        names = pc.take(raw.column(key), pa.array(order)).to_pylist()
        first = np.r_[True, codes[1:] != codes[:-1]]
        # the previous fix: the row before within the vehicle, else the state's last fix.
        # A fix not after the previous one (late, or a duplicate) is dropped first.
        keep = np.ones(len(ts), dtype=bool)
        state_ts = state["ts"][codes, 0]
        keep &= ~(ts <= state_ts)
        codes, ts, lat, lon = codes[keep], ts[keep], lat[keep], lon[keep]
        names = [n for n, k in zip(names, keep, strict=True) if k]
        first = np.r_[True, codes[1:] != codes[:-1]] if len(codes) else first[:0]
        same_ts = np.r_[False, (ts[1:] == ts[:-1]) & ~first[1:]] if len(ts) else first
        p_lat = np.r_[np.nan, lat[:-1]] if len(lat) else lat
        p_lon = np.r_[np.nan, lon[:-1]] if len(lon) else lon
        p_ts = np.r_[np.nan, ts[:-1].astype(float)] if len(ts) else ts.astype(float)
        p_lat[first] = state["lat"][codes[first], 0]
        p_lon[first] = state["lon"][codes[first], 0]
        p_ts[first] = state["ts"][codes[first], 0]
        km = haversine_km(p_lat, p_lon, lat, lon)
        hours = np.maximum(ts - p_ts, 1000.0) / 3_600_000.0  # at least a second
        speed = km / hours
        jump = (km > cfg.min_km) & (speed > cfg.max_speed_kmh) & ~same_ts
        # one alert per jump, a jump back within clear_s is the same incident (per vehicle, in order)
        for i in np.flatnonzero(jump):
            c = codes[i]
            if ts[i] - state["last_jump"][c, 0] <= cfg.clear_s * 1000.0:
                state["last_jump"][c, 0] = ts[i]
                continue
            state["last_jump"][c, 0] = ts[i]
            alerts.add(names[i], None, int(p_ts[i]), int(ts[i]), speed[i], cfg.max_speed_kmh,
                       speed[i] / cfg.max_speed_kmh,
                       f"{km[i]:.1f} km in {(ts[i] - p_ts[i]) / 1000:.0f} s ({speed[i]:.0f} km/h > "
                       f"{cfg.max_speed_kmh:g}) from {p_lat[i]:.5f},{p_lon[i]:.5f} to {lat[i]:.5f},{lon[i]:.5f}")
        if len(codes):
            last = np.r_[np.flatnonzero(codes[1:] != codes[:-1]), len(codes) - 1]
            for name, arr in (("lat", lat), ("lon", lon), ("ts", ts)):
                state[name][codes[last], 0] = arr[last]
        return alerts.table()
