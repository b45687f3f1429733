"""Wi-Fi detectors: an authentication-failure burst (possible brute force), an access point
down or silent, and latency degradation against the AP's own time-of-day baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streams.detectors.base import (
    RUN_WIDTHS,
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
    TimeOfDay,
    above_baseline,
    check_baseline_settings,
)
from streams.detectors.silence import SILENCE_EXTRAS, SILENCE_WIDTHS, add_silences

SOURCE = "wifi"
AUTH, LATENCY, DOWN, EVENTS = "auth_failures", "p95_latency_ms", "down_count", "n_events"


def _all_down(cols: dict[str, np.ndarray]) -> np.ndarray:
    return (cols[DOWN] > 0) & (cols[DOWN] >= cols[EVENTS])


@dataclass(frozen=True)
class AuthBurstConfig:
    """Auth-failure burst: failed logins in a window far above this AP's baseline for that hour
    (weekday/weekend apart): at least `min_failures`, at least `min_ratio` times the baseline,
    and `z_threshold` spreads above it, the spread at least the Poisson one (sqrt of the
    mean): failures are counts, so a quiet AP's baseline of 0.4 must not make 4 look like a
    storm. Before a bucket is warm (`warmup_s` of windows in it) only `absolute_failures` in a
    window fires, so a brand-new AP under attack is not invisible for two days.

    Defaults: 20 failures (a few mistyped passwords at a busy zoo AP are 5-25 per 5 min in the
    simulator's busiest hour, so 20 alone is no alarm, hence also 3x and z 6); 200 per window
    before warm-up; memory 7 days; one alert per burst, a burst ends after 30 min quiet."""

    min_failures: float = 20.0
    min_ratio: float = 3.0
    z_threshold: float = 6.0
    absolute_failures: float = 200.0
    memory_days: float = 7.0
    warmup_s: float = 7200.0
    clear_s: float = 1800.0
    timezone: str = "Europe/Berlin"
    severity: Severity = Severity.CRITICAL

    def __post_init__(self) -> None:
        if min(self.min_failures, self.z_threshold, self.absolute_failures, self.memory_days) <= 0:
            raise ValueError("min_failures, z_threshold, absolute_failures and memory_days must be > 0")
        if self.min_ratio < 1 or self.warmup_s < 0 or self.clear_s < 0:
            raise ValueError("min_ratio must be >= 1, warmup_s and clear_s >= 0")
        TimeOfDay(self.timezone)

    def build(self) -> AuthBurst:
        return AuthBurst(self)


class AuthBurst(BaselineDetector):
    name, source, signal = "wifi.auth_burst", SOURCE, AUTH

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, SOURCE, state, (AUTH,))
        alerts = Alerts(self.name, SOURCE, self.severity)
        x = rows.columns[AUTH]
        learned = self.learn(state, rows, x)
        with np.errstate(invalid="ignore"):
            warm_all = np.isfinite(learned.mean[0]) & (learned.n[0] >= learned.min_n)
            mean_all = np.where(warm_all, learned.mean[0], 0.0)
            # z needs the spread: looked up only where the rest of the rule holds
            maybe = np.flatnonzero((warm_all & (x >= cfg.min_failures) & (x >= cfg.min_ratio * mean_all))
                                   | (x >= cfg.absolute_failures))
        st = learned.stats(maybe)
        x_m, warm, mean = x[maybe], warm_all[maybe], mean_all[maybe]
        sd = np.fmax(np.fmax(st.sd[0], np.sqrt(np.maximum(mean, 0.0))), 1.0)
        z = (x_m - mean) / sd
        burst = warm & (x_m >= cfg.min_failures) & (x_m >= cfg.min_ratio * mean) & (z >= cfg.z_threshold)
        hot = np.flatnonzero(burst | (x_m >= cfg.absolute_failures))
        for j in hot[incident_starts(state, rows, maybe[hot], cfg.clear_s)].tolist():
            i = maybe[j]
            basis = (f"baseline {mean[j]:.1f}±{sd[j]:.1f} for {self.tod.label(int(rows.window_start[i]))}"
                     if warm[j] else "no baseline yet")
            alerts.add(rows.entity[i], rows.district[i], int(rows.window_start[i]), int(rows.window_end[i]),
                       x_m[j], mean[j] if warm[j] else np.nan, z[j] if warm[j] else np.nan,
                       f"{x_m[j]:.0f} failed logins in {learned.size_s[i] / 60:.0f} min vs {basis}")
        return alerts.table()


@dataclass(frozen=True)
class ApDownConfig:
    """Access point down or silent: every report of its windows says 'down' for at least
    `min_down_s`, or it sends nothing for `silence_s` while its partition goes on (see
    `silence`). Defaults: 15 min down (three 5-min windows: a reboot takes 2-5 min and
    should not page anyone), 15 min silent. One alert per outage."""

    min_down_s: float = 900.0
    silence_s: float = 900.0
    max_gap_s: float = 600.0
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.min_down_s <= 0 or self.silence_s <= 0 or self.max_gap_s < 0:
            raise ValueError("min_down_s and silence_s must be > 0, max_gap_s >= 0")

    def build(self) -> ApDown:
        return ApDown(self)


class ApDown(RunDetector):
    name, source, columns = "wifi.ap_down", SOURCE, (DOWN, EVENTS)
    waits_for_closed_windows = True  # for its silences; the worker passes closed_until_ms (streams.alerts)

    @property
    def min_duration_s(self) -> float:
        return float(self.config.min_down_s)

    def new_state(self) -> DetectorState:
        return DetectorState(self.name, {**RUN_WIDTHS, **SILENCE_WIDTHS}, {SILENCE_EXTRAS: {}})

    def condition(self, col: dict[str, np.ndarray]) -> np.ndarray:
        return _all_down(col)

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        return minutes, np.nan, f"every report 'down' for {minutes:.0f} min since {utc_minute(run_start)}"

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None,
               closed_until_ms: float | None = None) -> pa.Table:
        """'Down' runs as every RunDetector (on windows as they become final), then silences
        (on closed windows, see `silence`)."""
        runs = super().detect(windows, state, raw)
        silences = Alerts(self.name, SOURCE, self.severity)
        add_silences(silences, windows, SOURCE, state, self.config.silence_s, closed_until_ms, "silent")
        if not silences.rows:
            return runs
        return pa.concat_tables([runs, silences.table()]).sort_by([("window_start", "ascending"),
                                                                    ("entity", "ascending")])


@dataclass(frozen=True)
class LatencyConfig:
    """Latency degradation: the window's p95 latency at least `z_threshold` spreads and
    `min_ratio` times above this AP's baseline for the hour, and `min_increase_ms` higher, for
    `min_hot_windows` windows of one episode (a single slow window is a hiccup). Windows in
    which the AP was down (reports 0 ms) are not latency and are skipped. Defaults: z 6, 2x,
    +50 ms (users notice 100 ms on top of a 10-40 ms link; the simulator's busiest zoo hour
    adds about 35 ms), two windows; memory 7 days; 30 min to end an episode."""

    z_threshold: float = 6.0
    min_ratio: float = 2.0
    min_increase_ms: float = 50.0
    min_hot_windows: int = 2
    memory_days: float = 7.0
    warmup_s: float = 7200.0
    clear_s: float = 1800.0
    timezone: str = "Europe/Berlin"
    severity: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        if self.z_threshold <= 0 or self.min_ratio < 1 or self.min_increase_ms < 0 or self.min_hot_windows < 1:
            raise ValueError("z_threshold > 0, min_ratio >= 1, min_increase_ms >= 0, min_hot_windows >= 1")
        check_baseline_settings(self.memory_days, self.warmup_s, self.clear_s, self.timezone)

    def build(self) -> Latency:
        return Latency(self)


class Latency(BaselineDetector):
    name, source, signal = "wifi.latency", SOURCE, LATENCY

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, SOURCE, state, (LATENCY, DOWN, EVENTS))
        x_all = np.where(rows.columns[DOWN] > 0, np.nan, rows.columns[LATENCY])
        alerts = Alerts(self.name, SOURCE, self.severity)
        hot, st, z = above_baseline(self.learn(state, rows, x_all), x_all, cfg.z_threshold, cfg.min_ratio,
                                    cfg.min_increase_ms, min_sd=1.0)
        for j in np.flatnonzero(incident_starts(state, rows, hot, cfg.clear_s, cfg.min_hot_windows)).tolist():
            i = hot[j]
            alerts.add(rows.entity[i], rows.district[i], int(rows.window_start[i]), int(rows.window_end[i]),
                       x_all[i], st.mean[j], z[j],
                       f"p95 latency {x_all[i]:.0f} ms vs baseline {st.mean[j]:.0f}±{st.sd[j]:.0f} ms for "
                       f"{self.tod.label(int(rows.window_start[i]))}")
        return alerts.table()
