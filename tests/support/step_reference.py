"""Test oracle: the detectors' step-by-step loops as they were before scoring went per batch
(commit d4cf566), kept verbatim. A batch was processed in *steps* (step k = the k-th row of
every entity), each step scoring then learning. The vectorised detectors must give identical
alerts and state for any batching; tests/streams/detectors/test_step_equivalence.py checks it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streams.detectors.base import Alerts, DetectorState, Rows, RunDetector, select_rows
from streams.detectors.baseline import (
    WARM_SHARE,
    BandStats,
    Baseline,
    _nan_to_zero,
    _nanmedian_rows,
)
from streams.detectors.lighting import DIMMED, ENERGY, FAULT, ON, POWER, EnergySpike, lit_power
from streams.detectors.traffic import (
    COUNT,
    N_EVENTS,
    OCCUPANCY,
    SOURCE,
    SPEED,
    STUCK_COLUMNS,
    STUCK_SHOWN,
    TRAVEL_TIME,
    Congestion,
    Stuck,
    _hhmm,
)
from streams.detectors.wifi import AUTH, DOWN, EVENTS, LATENCY, AuthBurst, Latency


def steps(rows: Rows) -> Iterator[np.ndarray]:
    """Row indices of step k = the k-th row of every entity that has one."""
    for k in range(int(rows.counts.max()) if len(rows.counts) else 0):
        yield rows.starts[rows.counts > k] + k


def incident_starts(state: DetectorState, codes: np.ndarray, ws: np.ndarray, hot: np.ndarray,
                    clear_s: float, min_hot: int = 1) -> np.ndarray:
    last = state["last_hot"][codes, 0]
    open_ = (ws - last) <= clear_s * 1000.0  # NaN -> False
    hot_n = state["hot_n"][codes, 0]
    n = np.where(open_ & ~np.isnan(hot_n), hot_n, 0.0) + hot
    state["hot_n"][codes[hot], 0] = n[hot]
    state["last_hot"][codes[hot], 0] = ws[hot]
    return hot & (n == min_hot)


# ------------------------------------------------------------------------------------------
# baselines: Baseline.stats / Baseline.update, stats_of_signals / update_signals


_STACK_MAX_ROWS = 256


def stats_one(bl: Baseline, state: DetectorState, codes: np.ndarray, buckets: np.ndarray,
              min_n: np.ndarray) -> BandStats:
    s = bl.signal
    n_all = _nan_to_zero(state[f"{s}_n"][codes])
    mean_all = state[f"{s}_mean"][codes]
    sd_all = np.sqrt(np.maximum(state[f"{s}_var"][codes], 0.0))
    warm = n_all >= min_n[:, None]
    rows = np.arange(len(codes))
    mean, sd, n = mean_all[rows, buckets], sd_all[rows, buckets], n_all[rows, buckets]
    with np.errstate(divide="ignore", invalid="ignore"):
        if bl.relative:
            spread = np.where(warm & (np.abs(mean_all) > 0), sd_all / np.abs(mean_all), np.nan)
        else:
            spread = np.where(warm, sd_all, np.nan)
    typical = _nanmedian_rows(spread)
    floor = typical * np.abs(mean) if bl.relative else typical
    return BandStats(mean, np.fmax(sd, floor), n)


def update_one(bl: Baseline, state: DetectorState, codes: np.ndarray, buckets: np.ndarray, x: np.ndarray,
               window_size_s: np.ndarray, warm_n: np.ndarray) -> None:
    ok = np.isfinite(x)
    if not ok.any():
        return
    c, b, x, warm_n = codes[ok], buckets[ok], x[ok], warm_n[ok]
    s = bl.signal
    n = _nan_to_zero(state[f"{s}_n"][c, b]) + 1.0
    mean = state[f"{s}_mean"][c, b]
    var = state[f"{s}_var"][c, b]
    first = n == 1.0
    mean = np.where(first, x, mean)
    var = np.where(first, 0.0, var)
    band = bl.clip_sd * np.maximum(np.sqrt(var), bl.min_sd)
    clipped = np.where(n > warm_n, np.clip(x, mean - band, mean + band), x)
    alpha = np.maximum(window_size_s[ok] / (bl.tod.bucket_s * bl.memory_days), 1.0 / n)
    delta = clipped - mean
    state[f"{s}_mean"][c, b] = mean + alpha * delta
    state[f"{s}_var"][c, b] = (1.0 - alpha) * (var + alpha * delta * delta)
    state[f"{s}_n"][c, b] = n


def stats_of_signals(baselines: Sequence[Baseline], state: DetectorState, codes: np.ndarray,
                     buckets: np.ndarray, min_n: np.ndarray) -> BandStats:
    if len(baselines) > 1 and len(codes) > _STACK_MAX_ROWS:
        parts = [stats_of_signals([b], state, codes, buckets, min_n) for b in baselines]
        return BandStats(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("mean", "sd", "n")))
    n_all = _nan_to_zero(np.stack([state[f"{b.signal}_n"][codes] for b in baselines]))
    mean_all = np.stack([state[f"{b.signal}_mean"][codes] for b in baselines])
    sd_all = np.sqrt(np.maximum(np.stack([state[f"{b.signal}_var"][codes] for b in baselines]), 0.0))
    warm = n_all >= min_n[None, :, None]
    rows = np.arange(len(codes))
    mean, sd, n = mean_all[:, rows, buckets], sd_all[:, rows, buckets], n_all[:, rows, buckets]
    relative = np.array([b.relative for b in baselines])
    with np.errstate(divide="ignore", invalid="ignore"):
        abs_all = np.abs(mean_all)
        spread = np.where(warm & (~relative[:, None, None] | (abs_all > 0)),
                          np.where(relative[:, None, None], sd_all / abs_all, sd_all), np.nan)
    typical = _nanmedian_rows(spread.reshape(-1, spread.shape[2])).reshape(len(baselines), len(codes))
    floor = np.where(relative[:, None], typical * np.abs(mean), typical)
    return BandStats(mean, np.fmax(sd, floor), n)


def update_signals(baselines: Sequence[Baseline], state: DetectorState, codes: np.ndarray,
                   buckets: np.ndarray, xs: np.ndarray, window_size_s: np.ndarray,
                   warm_n: np.ndarray) -> None:
    if len(baselines) > 1 and len(codes) > _STACK_MAX_ROWS:
        for i, b in enumerate(baselines):
            update_signals([b], state, codes, buckets, xs[i : i + 1], window_size_s, warm_n)
        return
    ok = np.isfinite(xs)
    if not ok.any():
        return
    names = [(f"{b.signal}_n", f"{b.signal}_mean", f"{b.signal}_var") for b in baselines]
    n = _nan_to_zero(np.stack([state[nn][codes, buckets] for nn, _, _ in names])) + 1.0
    mean = np.stack([state[m][codes, buckets] for _, m, _ in names])
    var = np.stack([state[v][codes, buckets] for _, _, v in names])
    first = n == 1.0
    with np.errstate(invalid="ignore"):
        mean = np.where(first, xs, mean)
        var = np.where(first, 0.0, var)
        clip_sd = np.array([b.clip_sd for b in baselines])[:, None]
        min_sd = np.array([b.min_sd for b in baselines])[:, None]
        band = clip_sd * np.maximum(np.sqrt(var), min_sd)
        clipped = np.where(n > warm_n[None, :], np.clip(xs, mean - band, mean + band), xs)
        per_day = np.array([b.tod.bucket_s * b.memory_days for b in baselines], dtype=np.float64)[:, None]
        alpha = np.maximum(window_size_s[None, :] / per_day, 1.0 / n)
        delta = clipped - mean
        new_mean = mean + alpha * delta
        new_var = (1.0 - alpha) * (var + alpha * delta * delta)
    for i, (nn, m, v) in enumerate(names):
        k = ok[i]
        if not k.any():
            continue
        c, b = codes[k], buckets[k]
        state[m][c, b] = new_mean[i][k]
        state[v][c, b] = new_var[i][k]
        state[nn][c, b] = n[i][k]


@dataclass(frozen=True)
class BaselineStep:
    idx: np.ndarray
    codes: np.ndarray
    x: np.ndarray
    stats: BandStats
    min_n: np.ndarray
    size_s: np.ndarray


def baseline_steps(baseline: Baseline, rows: Rows, state: DetectorState, x_all: np.ndarray,
                   warmup_s: float) -> Iterator[BaselineStep]:
    buckets = baseline.tod.bucket(rows.window_start)
    size_s = (rows.window_end - rows.window_start) / 1000.0
    min_n = warmup_s / np.maximum(size_s, 1.0)
    verdict_n = WARM_SHARE * min_n  # since the warm share (streams/detectors/baseline.py)
    for idx in steps(rows):
        c, b, x = rows.codes[idx], buckets[idx], x_all[idx]
        yield BaselineStep(idx, c, x, stats_one(baseline, state, c, b, min_n[idx]), verdict_n[idx], size_s[idx])
        update_one(baseline, state, c, b, x, size_s[idx], min_n[idx])


def above_baseline(step: BaselineStep, z_threshold: float, min_ratio: float, min_increase: float,
                   min_sd: float) -> tuple[np.ndarray, np.ndarray]:
    st, x = step.stats, step.x
    valid = np.isfinite(x) & np.isfinite(st.mean) & (st.n >= step.min_n)
    z = (x - st.mean) / np.fmax(st.sd, min_sd)
    hot = valid & (z >= z_threshold) & (x >= min_ratio * st.mean) & (x - st.mean >= min_increase)
    return hot, z


# ------------------------------------------------------------------------------------------
# the kinds


class ReferenceCongestion(Congestion):
    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, SOURCE, state, (SPEED, OCCUPANCY, TRAVEL_TIME, COUNT))
        vc = rows.columns[COUNT]
        rows.columns[SPEED] = np.where(vc == 0, np.nan, rows.columns[SPEED])
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.columns[TRAVEL_TIME] = np.where(rows.columns[TRAVEL_TIME] > 0, np.log(rows.columns[TRAVEL_TIME]), np.nan)
        alerts = Alerts(self.name, SOURCE, self.severity)
        buckets = self.tod.bucket(rows.window_start)
        size_s = (rows.window_end - rows.window_start) / 1000.0
        min_n = cfg.warmup_s / np.maximum(size_s, 1.0)
        verdict_n = WARM_SHARE * min_n  # since the warm share (streams/detectors/baseline.py)
        baselines = list(self.baselines.values())
        signals = np.stack([rows.columns[s] for s in self.baselines]) if len(rows) else np.empty((3, 0))
        no_vehicles = rows.columns[COUNT] == 0
        is_speed = np.array([[s == SPEED] for s in self.baselines])
        is_time = np.array([[s == TRAVEL_TIME] for s in self.baselines])
        is_occupancy = ~is_speed & ~is_time
        k_speed, k_time, k_occ = (list(self.baselines).index(s) for s in (SPEED, TRAVEL_TIME, OCCUPANCY))
        time_rise = -np.log1p(-cfg.min_speed_drop)
        for idx in steps(rows):
            c, b, ws = rows.codes[idx], buckets[idx], rows.window_start[idx]
            xs = signals[:, idx]
            st = stats_of_signals(baselines, state, c, b, min_n[idx])
            valid = np.isfinite(xs) & np.isfinite(st.mean) & (st.n >= verdict_n[idx])
            sd = np.maximum(st.sd, np.where(is_time, cfg.sd_floor_rel, cfg.sd_floor_rel * np.abs(st.mean)))
            diff = xs - st.mean
            z = np.where(is_speed, -diff, diff) / np.where(is_occupancy & ~(sd > 0), 1e-9, sd)
            big = np.empty(xs.shape, dtype=bool)
            big[k_speed] = xs[k_speed] <= (1 - cfg.min_speed_drop) * st.mean[k_speed]
            big[k_time] = diff[k_time] >= time_rise
            big[k_occ] = xs[k_occ] >= st.mean[k_occ] + cfg.min_occupancy_rise_pct
            passes = (z >= cfg.z_threshold) & big & valid
            # a present signal needs a warm baseline (the one rule change since, from i13-quality)
            hot = valid.any(axis=0) & (passes | ~np.isfinite(xs)).all(axis=0) & ~no_vehicles[idx]
            alerting = np.flatnonzero(incident_starts(state, c, ws, hot, cfg.clear_s, cfg.min_hot_windows))
            if len(alerting):
                score = np.where(valid, z, np.inf).min(axis=0)
                seen = {s: (xs[k], BandStats(st.mean[k], st.sd[k], st.n[k]), valid[k])
                        for k, s in enumerate(self.baselines)}
                for j in alerting:
                    self._alert(alerts, rows, int(idx[j]), seen, int(j), float(score[j]))
            update_signals(baselines, state, c, b, xs, size_s[idx], min_n[idx])
        return alerts.table()


class ReferenceStuck(Stuck):
    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, SOURCE, state, (*STUCK_COLUMNS, N_EVENTS))
        n = rows.columns[N_EVENTS]
        per_report = np.where(n > 0, rows.columns[COUNT] / np.where(n > 0, n, 1.0), rows.columns[COUNT])
        columns = {**rows.columns, COUNT: per_report}  # NaN n_events (hand-made windows): the sum
        values = np.column_stack([columns[c] for c in STUCK_COLUMNS]) if len(rows) else np.empty((0, 3))
        informative = ~(rows.columns[COUNT] == 0) & np.isfinite(values).any(axis=1)
        alerts = Alerts(self.name, SOURCE, self.severity)
        for idx in steps(rows):
            c, ws, we = rows.codes[idx], rows.window_start[idx], rows.window_end[idx]
            x, prev = values[idx], state["prev"][c]
            equal = (np.isclose(x, prev, rtol=1e-9, atol=0.0) | (np.isnan(x) & np.isnan(prev))).all(axis=1)
            contiguous = (ws - state["last_end"][c, 0]) <= cfg.max_gap_s * 1000.0
            same = equal & contiguous & informative[idx] & np.isfinite(state["run_start"][c, 0])
            run_start = np.where(same, state["run_start"][c, 0], np.where(informative[idx], ws, np.nan))
            run_n = np.where(same, state["run_n"][c, 0] + 1, 1.0)
            fire = same & (we - run_start >= cfg.min_flat_s * 1000.0) & (run_n >= cfg.min_windows)
            fire &= state["alerted_run"][c, 0] != run_start
            state["prev"][c] = x
            state["last_end"][c, 0] = we
            state["run_start"][c, 0] = run_start
            state["run_n"][c, 0] = run_n
            state["alerted_run"][c[fire], 0] = run_start[fire]
            for j in np.flatnonzero(fire):
                i = idx[j]
                shown = ", ".join(f"{name} {v:g}" for name, v in zip(STUCK_SHOWN, x[j], strict=True)
                                  if np.isfinite(v))
                minutes = (we[j] - run_start[j]) / 60000.0
                alerts.add(rows.entity[i], rows.district[i], int(run_start[j]), int(we[j]), x[j][1],
                           np.nan, minutes,
                           f"{shown} unchanged in {int(run_n[j])} windows since {_hhmm(run_start[j])} "
                           f"({minutes:.0f} min)")
        return alerts.table()


class ReferenceEnergySpike(EnergySpike):
    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, self.source, state, (ENERGY, FAULT, ON, DIMMED, POWER, EVENTS))
        x_all = lit_power(rows.columns)  # since i13: power while lit, faults skipped
        alerts = Alerts(self.name, self.source, self.severity)
        for step in baseline_steps(self.baseline, rows, state, x_all, cfg.warmup_s):
            idx, x, st = step.idx, step.x, step.stats
            hot, z = above_baseline(step, cfg.z_threshold, cfg.min_ratio, cfg.min_increase_w, min_sd=0.5)
            for j in np.flatnonzero(incident_starts(state, step.codes, rows.window_start[idx], hot, cfg.clear_s)):
                i = idx[j]
                alerts.add(rows.entity[i], rows.district[i], int(rows.window_start[i]), int(rows.window_end[i]),
                           x[j], st.mean[j], z[j],
                           f"{x[j]:.1f} W while lit vs baseline {st.mean[j]:.1f}±{st.sd[j]:.1f} W for "
                           f"{self.tod.label(int(rows.window_start[i]))} ({rows.columns[ENERGY][i]:.1f} Wh in the window)")
        return alerts.table()


class ReferenceAuthBurst(AuthBurst):
    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, self.source, state, (AUTH,))
        alerts = Alerts(self.name, self.source, self.severity)
        for step in baseline_steps(self.baseline, rows, state, rows.columns[AUTH], cfg.warmup_s):
            idx, x, st = step.idx, step.x, step.stats
            warm = np.isfinite(st.mean) & (st.n >= step.min_n)
            mean = np.where(warm, st.mean, 0.0)
            sd = np.fmax(np.fmax(st.sd, np.sqrt(np.maximum(mean, 0.0))), 1.0)
            z = (x - mean) / sd
            burst = warm & (x >= cfg.min_failures) & (x >= cfg.min_ratio * mean) & (z >= cfg.z_threshold)
            hot = burst | (x >= cfg.absolute_failures)
            for j in np.flatnonzero(incident_starts(state, step.codes, rows.window_start[idx], hot, cfg.clear_s)):
                i = idx[j]
                basis = (f"baseline {mean[j]:.1f}±{sd[j]:.1f} for {self.tod.label(int(rows.window_start[i]))}"
                         if warm[j] else "no baseline yet")
                alerts.add(rows.entity[i], rows.district[i], int(rows.window_start[i]), int(rows.window_end[i]),
                           x[j], mean[j] if warm[j] else np.nan, z[j] if warm[j] else np.nan,
                           f"{x[j]:.0f} failed logins in {step.size_s[j] / 60:.0f} min vs {basis}")
        return alerts.table()


class ReferenceLatency(Latency):
    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, self.source, state, (LATENCY, DOWN, EVENTS))
        x_all = np.where(rows.columns[DOWN] > 0, np.nan, rows.columns[LATENCY])
        alerts = Alerts(self.name, self.source, self.severity)
        for step in baseline_steps(self.baseline, rows, state, x_all, cfg.warmup_s):
            idx, x, st = step.idx, step.x, step.stats
            hot, z = above_baseline(step, cfg.z_threshold, cfg.min_ratio, cfg.min_increase_ms, min_sd=1.0)
            start = incident_starts(state, step.codes, rows.window_start[idx], hot, cfg.clear_s, cfg.min_hot_windows)
            for j in np.flatnonzero(start):
                i = idx[j]
                alerts.add(rows.entity[i], rows.district[i], int(rows.window_start[i]), int(rows.window_end[i]),
                           x[j], st.mean[j], z[j],
                           f"p95 latency {x[j]:.0f} ms vs baseline {st.mean[j]:.0f}±{st.sd[j]:.0f} ms for "
                           f"{self.tod.label(int(rows.window_start[i]))}")
        return alerts.table()


# ------------------------------------------------------------------------------------------
# runs (RunDetector: cold chain, stalled, on in daylight, AP down)


def advance_runs(state: DetectorState, codes: np.ndarray, ws: np.ndarray, we: np.ndarray,
                 cond: np.ndarray, max_gap_s: float) -> np.ndarray:
    contiguous = (ws - state["last_end"][codes, 0]) <= max_gap_s * 1000.0
    prev = state["run_start"][codes, 0]
    run_start = np.where(cond & contiguous & np.isfinite(prev), prev, np.where(cond, ws.astype(float), np.nan))
    state["run_start"][codes, 0] = run_start
    state["last_end"][codes, 0] = we
    return run_start


def runs_due(state: DetectorState, codes: np.ndarray, run_start: np.ndarray, due: np.ndarray) -> np.ndarray:
    fire = due & np.isfinite(run_start) & (state["alerted_run"][codes, 0] != run_start)
    state["alerted_run"][codes[fire], 0] = run_start[fire]
    return fire


def long_runs(rows: Rows, state: DetectorState, cond: np.ndarray, min_duration_s: float,
              max_gap_s: float) -> Iterator[tuple[int, float, float]]:
    for idx in steps(rows):
        c, ws, we = rows.codes[idx], rows.window_start[idx], rows.window_end[idx]
        run_start = advance_runs(state, c, ws, we, cond[idx], max_gap_s)
        fire = runs_due(state, c, run_start, we - run_start >= min_duration_s * 1000.0)
        for j in np.flatnonzero(fire):
            yield int(idx[j]), float(run_start[j]), (we[j] - run_start[j]) / 60000.0


def reference_run_detect(detector: RunDetector, windows: pa.Table, state: DetectorState) -> pa.Table:
    """RunDetector.detect as it was, for any RunDetector kind."""
    rows = select_rows(windows, detector.source, state, detector.columns)
    alerts = Alerts(detector.name, detector.source, detector.severity)
    detector.before_runs(rows, state, alerts)
    runs = long_runs(rows, state, detector.condition(rows.columns), detector.min_duration_s,
                     detector.config.max_gap_s)
    for i, run_start, minutes in runs:
        observed, expected, evidence = detector.describe(rows, i, run_start, minutes)
        alerts.add(rows.entity[i], rows.district[i], int(run_start), int(rows.window_end[i]), observed,
                   expected, minutes, evidence)
    return alerts.table()
