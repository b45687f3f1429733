"""Supply-network detectors over 15-min meter windows: power outage on a feeder, pressure drop
at a water point, poor cooling (return too hot) at a heating substation, and a water leak seen
as the minimum night flow rising above the point's own earlier nights."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from streams.detectors.base import (
    Alerts,
    DetectorState,
    Rows,
    RunDetector,
    Severity,
    select_rows,
    utc_minute,
)

SOURCE = "supply"
MAX_LOAD, MIN_VOLT, MAX_VOLT = "max_load_kw", "min_voltage_v", "max_voltage_v"
AVG_PRESSURE = "avg_pressure_bar"
AVG_RETURN, AVG_HEAT_FLOW = "avg_return_temp_c", "avg_heat_flow_m3h"
MIN_WATER_FLOW = "min_water_flow_m3h"


@dataclass(frozen=True)
class PowerOutageConfig:
    """Power outage on a feeder: every load reading of a window at most `max_load_kw` (the
    feeder carries nothing) or a voltage reading outside [`min_voltage_v`, `max_voltage_v`],
    for at least `min_duration_s`. Defaults: 1 kW (a live 0.4 kV feeder of a city substation
    never drops below tens of kW, even at night); 207-253 V, the EN 50160 band of 230 V
    +/- 10 %; one 15-min window, because an outage of that length is already reportable
    (and the windows' extremes make a window count only if it saw the failure). Windows of
    other asset types (no load, no voltage) never count. One alert per outage."""

    max_load_kw: float = 1.0
    min_voltage_v: float = 207.0
    max_voltage_v: float = 253.0
    min_duration_s: float = 900.0
    max_gap_s: float = 900.0
    severity: Severity = Severity.CRITICAL

    def __post_init__(self) -> None:
        if self.max_load_kw < 0 or not self.min_voltage_v < self.max_voltage_v:
            raise ValueError("max_load_kw >= 0 and min_voltage_v < max_voltage_v are required")
        if self.min_duration_s <= 0 or self.max_gap_s < 0:
            raise ValueError("min_duration_s must be > 0 and max_gap_s >= 0")

    def build(self) -> PowerOutage:
        return PowerOutage(self)


class PowerOutage(RunDetector):
    name, source, columns = "supply.power_outage", SOURCE, (MAX_LOAD, MIN_VOLT, MAX_VOLT)

    def condition(self, col: dict[str, np.ndarray]) -> np.ndarray:
        cfg = self.config
        with np.errstate(invalid="ignore"):
            dead = col[MAX_LOAD] <= cfg.max_load_kw
            off_band = (col[MIN_VOLT] < cfg.min_voltage_v) | (col[MAX_VOLT] > cfg.max_voltage_v)
        return dead | off_band

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        cfg, c = self.config, rows.columns
        load, lo, hi = c[MAX_LOAD][i], c[MIN_VOLT][i], c[MAX_VOLT][i]
        if np.isfinite(lo) and lo < cfg.min_voltage_v:
            return lo, cfg.min_voltage_v, (f"voltage down to {lo:.0f} V (band {cfg.min_voltage_v:g}-"
                                           f"{cfg.max_voltage_v:g} V) for {minutes:.0f} min since {utc_minute(run_start)}")
        if np.isfinite(hi) and hi > cfg.max_voltage_v:
            return hi, cfg.max_voltage_v, (f"voltage up to {hi:.0f} V (band {cfg.min_voltage_v:g}-"
                                           f"{cfg.max_voltage_v:g} V) for {minutes:.0f} min since {utc_minute(run_start)}")
        return load, cfg.max_load_kw, (f"feeder load at most {load:.1f} kW (<= {cfg.max_load_kw:g}) "
                                       f"for {minutes:.0f} min since {utc_minute(run_start)}")


@dataclass(frozen=True)
class PressureDropConfig:
    """Pressure drop at a water point: the window's mean pressure below `min_pressure_bar` for
    at least `min_duration_s`. Defaults: 2.0 bar, under which upper floors of a 4-storey
    house lose supply (DVGW W 400-1 asks about 2.35 bar at the connection for that); Duisburg's
    network runs at 3.5-5.5 bar and the morning peak's head loss takes about 0.8 bar of it,
    so only a burst main, a failed pump or a closed valve gets below 2. One 15-min window;
    one alert per drop."""

    min_pressure_bar: float = 2.0
    min_duration_s: float = 900.0
    max_gap_s: float = 900.0
    severity: Severity = Severity.CRITICAL

    def __post_init__(self) -> None:
        if self.min_pressure_bar <= 0 or self.min_duration_s <= 0 or self.max_gap_s < 0:
            raise ValueError("min_pressure_bar > 0, min_duration_s > 0 and max_gap_s >= 0 are required")

    def build(self) -> PressureDrop:
        return PressureDrop(self)


class PressureDrop(RunDetector):
    name, source, columns = "supply.pressure_drop", SOURCE, (AVG_PRESSURE,)

    def condition(self, col: dict[str, np.ndarray]) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return col[AVG_PRESSURE] < self.config.min_pressure_bar

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        p, limit = rows.columns[AVG_PRESSURE][i], self.config.min_pressure_bar
        return p, limit, f"pressure {p:.2f} bar below {limit:g} bar for {minutes:.0f} min since {utc_minute(run_start)}"


@dataclass(frozen=True)
class ReturnTooHotConfig:
    """Poor cooling at a district-heating substation: the window's mean primary return
    temperature above `max_return_c` while water flows (mean flow above `min_flow_m3h`), for
    at least `min_duration_s`. A hot return means the house's heat exchanger or controls do
    not take the heat out (fouled exchanger, a bypass left open), which costs the network
    pumping power and losses. Defaults: 55 °C, above the 45-50 °C that technical connection
    conditions (TAB) of German district-heating networks demand, so a cold-weather return of
    a healthy substation (up to ~48 °C here) stays below it; 0.05 m³/h (no flow, no return to
    judge); 30 min, two windows, so a domestic-hot-water draw that briefly heats the return
    is not a fault. One alert per episode."""

    max_return_c: float = 55.0
    min_flow_m3h: float = 0.05
    min_duration_s: float = 1800.0
    max_gap_s: float = 900.0
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.min_flow_m3h < 0 or self.min_duration_s <= 0 or self.max_gap_s < 0:
            raise ValueError("min_flow_m3h >= 0, min_duration_s > 0 and max_gap_s >= 0 are required")

    def build(self) -> ReturnTooHot:
        return ReturnTooHot(self)


class ReturnTooHot(RunDetector):
    name, source, columns = "supply.heat_return_high", SOURCE, (AVG_RETURN, AVG_HEAT_FLOW)

    def condition(self, col: dict[str, np.ndarray]) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return (col[AVG_RETURN] > self.config.max_return_c) & (col[AVG_HEAT_FLOW] > self.config.min_flow_m3h)

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        t, limit = rows.columns[AVG_RETURN][i], self.config.max_return_c
        return t, limit, (f"return {t:.1f} °C above {limit:g} °C with flow for {minutes:.0f} min "
                          f"since {utc_minute(run_start)}")


@dataclass(frozen=True)
class WaterLeakConfig:
    """Water leak: a water point's minimum night flow (MNF: the lowest flow reading between
    `night_start_h` and `night_end_h` local time, when almost nobody draws water, so what
    flows is mostly leakage) above its own baseline by more than `min_rise_m3h` and by more
    than `min_rise_frac` of the baseline. The baseline is the median MNF of the point's last
    `memory_nights` normal nights (at least `min_nights` of them), so each point is judged
    against itself, whatever its size. A night is judged when its point reports past the
    night's end (a window starting at or after it), so the alert comes after the night, not
    during it: a rule over days cannot answer within minutes. Nights that rose are not learned
    (a leak must not become the baseline) and one alert is raised per leak: the next alert
    needs a normal night in between. Defaults: 02:00-04:00 (the usual MNF hours of water
    audits); 7 nights; 2 nights of history; 2 m³/h and 20 %: the simulator's points vary
    ~5 % from night to night, real DMAs ~10 %, and a service-pipe burst adds several m³/h.
    Alerts: window_start = the night's start, window_end = its end."""

    night_start_h: float = 2.0
    night_end_h: float = 4.0
    memory_nights: int = 7
    min_nights: int = 2
    min_rise_m3h: float = 2.0
    min_rise_frac: float = 0.2
    timezone: str = "Europe/Berlin"
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if not 0 <= self.night_start_h < self.night_end_h <= 24:
            raise ValueError("0 <= night_start_h < night_end_h <= 24 is required")
        if not 1 <= self.min_nights <= self.memory_nights:
            raise ValueError("1 <= min_nights <= memory_nights is required")
        if self.min_rise_m3h < 0 or self.min_rise_frac < 0:
            raise ValueError("min_rise_m3h and min_rise_frac must be >= 0")
        pd.Timestamp(0, tz=self.timezone)  # raises on an unknown zone, at build time

    def build(self) -> WaterLeak:
        return WaterLeak(self)


class WaterLeak:
    """Minimum night flow per point and local night, then a nightly judgement (see config).

    State per point: the open night (its local day number, start and end ms, running MNF),
    the ring of the last `memory_nights` normal MNFs, and whether a leak is open."""

    name = "supply.water_leak"
    source = SOURCE

    def __init__(self, config: WaterLeakConfig):
        self.config = config
        self.severity = config.severity

    def new_state(self) -> DetectorState:
        return DetectorState(self.name, {"scored_until": 1, "night": 1, "night_start": 1, "night_end": 1,
                                         "night_min": 1, "history": self.config.memory_nights,
                                         "leak_open": 1})

    def _nights(self, ws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per window start: its local day number, whether it starts within the night, and that
        night's start and end (epoch ms)."""
        cfg = self.config
        distinct, inverse = np.unique(ws, return_inverse=True)
        t = pd.DatetimeIndex(pd.to_datetime(distinct, unit="ms", utc=True)).tz_convert(cfg.timezone)
        secs = (t.hour * 3600 + t.minute * 60 + t.second).to_numpy()
        midnight = t.normalize()
        day = (midnight.tz_localize(None) - pd.Timestamp(0)).days.to_numpy().astype(np.float64)
        n0 = (midnight + pd.to_timedelta(cfg.night_start_h, unit="h")).as_unit("ms").asi8
        n1 = (midnight + pd.to_timedelta(cfg.night_end_h, unit="h")).as_unit("ms").asi8
        inside = (secs >= cfg.night_start_h * 3600) & (secs < cfg.night_end_h * 3600)
        inverse = inverse.reshape(-1)
        return day[inverse], inside[inverse], n0[inverse].astype(np.float64), n1[inverse].astype(np.float64)

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        rows = select_rows(windows, SOURCE, state, (MIN_WATER_FLOW,))
        alerts = Alerts(self.name, SOURCE, self.severity)
        flow = rows.columns[MIN_WATER_FLOW]
        water = np.isfinite(flow)  # feeders and heating substations have no water flow
        if not water.any():
            return alerts.table()
        idx = np.flatnonzero(water)
        day, inside, n0, n1 = self._nights(rows.window_start[idx])
        # Rows of the batch, per point in window order: a night row folds into its night's
        # minimum; any row at or after the open night's end closes it. Python per point and
        # night (few: a point has one night a day), numpy within.
        codes = rows.codes[idx]
        bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
        for a, b in itertools.pairwise(bounds):
            c = int(codes[a])
            for j in range(a, b):
                ws = rows.window_start[idx[j]]
                open_end = state["night_end"][c, 0]
                if np.isfinite(open_end) and ws >= open_end:
                    self._close(state, c, rows, idx[j], alerts)
                if inside[j]:
                    if state["night"][c, 0] != day[j]:
                        state["night"][c, 0] = day[j]
                        state["night_start"][c, 0] = n0[j]
                        state["night_end"][c, 0] = n1[j]
                        state["night_min"][c, 0] = flow[idx[j]]
                    else:
                        state["night_min"][c, 0] = np.fmin(state["night_min"][c, 0], flow[idx[j]])
        return alerts.table()

    def _close(self, state: DetectorState, c: int, rows: Rows, i: int, alerts: Alerts) -> None:
        """Judge the point's open night, learn it if normal, and clear it."""
        cfg = self.config
        mnf = state["night_min"][c, 0]
        history = state["history"][c]
        known = history[np.isfinite(history)]
        rose = False
        if len(known) >= cfg.min_nights and np.isfinite(mnf):
            base = float(np.median(known))
            rise = mnf - base
            rose = rise > cfg.min_rise_m3h and rise > cfg.min_rise_frac * base
            if rose and state["leak_open"][c, 0] != 1.0:
                start, end = state["night_start"][c, 0], state["night_end"][c, 0]
                alerts.add(rows.entity[i], rows.district[i], int(start), int(end), mnf, base,
                           rise / max(base, 1e-9),
                           f"minimum night flow {mnf:.1f} m³/h, {rise:.1f} m³/h above the median "
                           f"{base:.1f} m³/h of its last {len(known)} nights ({utc_minute(start)} to "
                           f"{utc_minute(end)})")
        state["leak_open"][c, 0] = 1.0 if rose else 0.0
        if not rose and np.isfinite(mnf):
            state["history"][c] = np.r_[history[1:], mnf]
        for name in ("night", "night_start", "night_end", "night_min"):
            state[name][c, 0] = np.nan
