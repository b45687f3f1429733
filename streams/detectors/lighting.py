"""Lighting detectors: a lamp burning in daylight, and its energy off its own curve.

`lighting.fault_cluster` (several lamps of one district failing together) needs every lamp of
a district, spread over partitions: it is in `district.py` and runs in the district stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streams.detectors.base import (
    Alerts,
    DetectorState,
    Rows,
    RunDetector,
    Severity,
    incident_starts,
    select_rows,
    utc_minute,
)
from streams.detectors.baseline import (
    BaselineDetector,
    above_baseline,
    check_baseline_settings,
)

SOURCE = "lighting"
ON, DIMMED, LUX, ENERGY, FAULT = "on_count", "dimmed_count", "min_ambient_lux", "energy_wh", "fault_count"


@dataclass(frozen=True)
class OnInDaylightConfig:
    """Lamp on in daylight: the lamp reported 'on' or 'dimmed' in windows whose *darkest*
    ambient reading was at least `daylight_lux`, for at least `min_duration_s`. Defaults:
    1,000 lx (overcast daylight; lamps switch at 25-45 lx, so dusk and dawn windows, whose
    darkest reading is below that, never count) and 30 min (two 15-min windows: a sensor
    shaded for a moment or a maintenance test is not an alert). One alert per run."""

    daylight_lux: float = 1000.0
    min_duration_s: float = 1800.0
    max_gap_s: float = 1800.0
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.daylight_lux <= 0 or self.min_duration_s <= 0 or self.max_gap_s < 0:
            raise ValueError("daylight_lux and min_duration_s must be > 0, max_gap_s >= 0")

    def build(self) -> OnInDaylight:
        return OnInDaylight(self)


class OnInDaylight(RunDetector):
    name, source, columns = "lighting.on_in_daylight", SOURCE, (ON, DIMMED, LUX)

    def condition(self, col: dict[str, np.ndarray]) -> np.ndarray:
        return (np.nan_to_num(col[ON]) + np.nan_to_num(col[DIMMED]) > 0) & (col[LUX] >= self.config.daylight_lux)

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        lux = rows.columns[LUX][i]
        evidence = f"on with at least {lux:.0f} lx of daylight for {minutes:.0f} min since {utc_minute(run_start)}"
        return lux, self.config.daylight_lux, evidence


@dataclass(frozen=True)
class EnergySpikeConfig:
    """Energy spike: a window's energy at least `z_threshold` spreads and `min_ratio` times
    above the lamp's own baseline for that hour (weekday/weekend apart: the dimming schedule
    is by clock), and `min_increase_wh` more. Its own curve, because lamps range from 28 to
    110 W and dim differently. Defaults: z 6, 1.5x (a driver fault or surge draws well over
    the rated power; dimming changes are in the baseline), +5 Wh per window (20 W over 15 min,
    so standby noise of a lamp that is off never counts); memory 7 days; one alert per episode
    (ends after an hour without a spike).

    Windows with a fault report are skipped (neither scored nor learned): a lamp in fault draws
    ~0 W, and two such windows in a bucket of six days pulled a 7.1 +- 0.03 Wh baseline to
    5.3 +- 3.0 Wh, which hid a x2.5 surge three days later (z 21 without them, under 6 with)."""

    z_threshold: float = 6.0
    min_ratio: float = 1.5
    min_increase_wh: float = 5.0
    memory_days: float = 7.0
    warmup_s: float = 7200.0
    clear_s: float = 3600.0
    timezone: str = "Europe/Berlin"
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.z_threshold <= 0 or self.min_ratio < 1 or self.min_increase_wh < 0:
            raise ValueError("z_threshold > 0, min_ratio >= 1 and min_increase_wh >= 0 are required")
        check_baseline_settings(self.memory_days, self.warmup_s, self.clear_s, self.timezone)

    def build(self) -> EnergySpike:
        return EnergySpike(self)


class EnergySpike(BaselineDetector):
    name, source, signal, min_sd = "lighting.energy_spike", SOURCE, ENERGY, 0.5

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, SOURCE, state, (ENERGY, FAULT))
        # a window with a fault report is no sample of the lamp's curve (see the config doc)
        x_all = np.where(rows.columns[FAULT] > 0, np.nan, rows.columns[ENERGY])
        alerts = Alerts(self.name, SOURCE, self.severity)
        x = x_all
        hot, st, z = above_baseline(self.learn(state, rows, x), x, cfg.z_threshold, cfg.min_ratio,
                                    cfg.min_increase_wh, min_sd=0.5)
        for j in np.flatnonzero(incident_starts(state, rows, hot, cfg.clear_s)).tolist():
            i = hot[j]
            alerts.add(rows.entity[i], rows.district[i], int(rows.window_start[i]), int(rows.window_end[i]),
                       x[i], st.mean[j], z[j],
                       f"energy {x[i]:.1f} Wh vs baseline {st.mean[j]:.1f}±{st.sd[j]:.1f} Wh for "
                       f"{self.tod.label(int(rows.window_start[i]))}")
        return alerts.table()
