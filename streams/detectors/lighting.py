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
POWER, EVENTS = "avg_power_w", "n_events"
LIT_POWER = "lit_power_w"  # the energy spike's baseline signal (not a window column)


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
    """Energy spike: the lamp's power while lit at least `z_threshold` spreads, `min_ratio`
    times and `min_increase_w` above its own baseline for that hour (weekday/weekend apart: the
    dimming schedule is by clock). Its own curve, because lamps range from 28 to 110 W and dim
    differently. Defaults: z 6, 1.5x (a driver fault or surge draws well over the rated power;
    dimming changes are in the baseline), +20 W (standby noise never counts); memory 7 days;
    one alert per episode (ends after an hour without a spike).

    Power while lit, not the window's energy: a window's energy also depends on how much of
    it the lamp was lit, and the switch-on at dusk moves with the weather and the season. A
    dusk window lit for 5 of its 15 min one day and for none the days before is an energy
    step of 10 Wh against a baseline of 0.1 Wh (six false alerts in one eval week), but no
    change of power. Power while lit is the window's mean power times its reports over its lit
    (on or dimmed) reports; a window without lit reports has none (off all the time: nothing
    to judge, nothing learned).

    Windows with a fault report are skipped (neither scored nor learned): a lamp in fault draws
    ~0 W, and two such windows in a bucket of six days pulled a 7.1 +- 0.03 Wh baseline to
    5.3 +- 3.0 Wh, which hid a x2.5 surge three days later (z 21 without them, under 6 with)."""

    z_threshold: float = 6.0
    min_ratio: float = 1.5
    min_increase_w: float = 20.0
    memory_days: float = 7.0
    warmup_s: float = 7200.0
    clear_s: float = 3600.0
    timezone: str = "Europe/Berlin"
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.z_threshold <= 0 or self.min_ratio < 1 or self.min_increase_w < 0:
            raise ValueError("z_threshold > 0, min_ratio >= 1 and min_increase_w >= 0 are required")
        check_baseline_settings(self.memory_days, self.warmup_s, self.clear_s, self.timezone)

    def build(self) -> EnergySpike:
        return EnergySpike(self)


def lit_power(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Mean power of the window's lit reports (W): NaN without lit reports or with a fault."""
    lit = np.nan_to_num(columns[ON]) + np.nan_to_num(columns[DIMMED])
    with np.errstate(divide="ignore", invalid="ignore"):
        power = columns[POWER] * columns[EVENTS] / lit
    return np.where((lit > 0) & ~(columns[FAULT] > 0), power, np.nan)


class EnergySpike(BaselineDetector):
    name, source, signal, min_sd = "lighting.energy_spike", SOURCE, LIT_POWER, 0.5

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, SOURCE, state, (ENERGY, FAULT, ON, DIMMED, POWER, EVENTS))
        x = lit_power(rows.columns)
        alerts = Alerts(self.name, SOURCE, self.severity)
        hot, st, z = above_baseline(self.learn(state, rows, x), x, cfg.z_threshold, cfg.min_ratio,
                                    cfg.min_increase_w, min_sd=0.5)
        for j in np.flatnonzero(incident_starts(state, rows, hot, cfg.clear_s)).tolist():
            i = hot[j]
            alerts.add(rows.entity[i], rows.district[i], int(rows.window_start[i]), int(rows.window_end[i]),
                       x[i], st.mean[j], z[j],
                       f"{x[i]:.1f} W while lit vs baseline {st.mean[j]:.1f}±{st.sd[j]:.1f} W for "
                       f"{self.tod.label(int(rows.window_start[i]))} ({rows.columns[ENERGY][i]:.1f} Wh in the window)")
        return alerts.table()
