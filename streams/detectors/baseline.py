"""Per-entity, per-time-of-day baselines: an exponentially weighted mean and variance per
(entity, local hour [, weekday/weekend]) in fixed numpy arrays, so memory is constant per entity.

Why EWMA and not a running median: it is three floats per bucket, mergeable into Arrow state,
and it follows slow drift (roadworks, seasons). Robustness comes from clipping instead: once a
bucket is warm, a value far outside the band is clipped to the band before it updates the
baseline, so one wild reading moves it by at most `clip_sd` standard deviations (at least
`min_sd`) times the weight, and an hour-long incident moves it by a fraction of a deviation.
Flagged windows do update it (clipped): a lasting change (a lamp replaced by a stronger one, a
road rebuilt) becomes the new normal within about `memory_days`, instead of alerting for ever.

The weight is set in *days of memory*, not per sample, so it does not depend on the window size:
a bucket of `bucket_s` seconds sees bucket_s / window_size_s samples a day, and alpha =
window_size_s / (bucket_s * memory_days). Until a bucket has seen 1/alpha samples the mean is a
plain running mean (alpha = 1/n), so the first day is not over-weighted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from streams.detectors.base import DetectorState, Rows

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class TimeOfDay:
    """Which bucket a window falls in: local hour of `timezone` (`buckets_per_day` buckets),
    times weekday/weekend when `split_weekend`."""

    timezone: str = "Europe/Berlin"
    buckets_per_day: int = 24
    split_weekend: bool = True

    def __post_init__(self) -> None:
        if self.buckets_per_day <= 0 or 86400 % self.buckets_per_day:
            raise ValueError(f"buckets_per_day must divide a day, got {self.buckets_per_day}")
        pd.Timestamp(0, tz=self.timezone)  # raises on an unknown zone, at build time

    @property
    def n_buckets(self) -> int:
        return self.buckets_per_day * (2 if self.split_weekend else 1)

    @property
    def bucket_s(self) -> int:
        return 86400 // self.buckets_per_day

    def local(self, ts_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(seconds since local midnight, weekday 0=Mon) of epoch-ms timestamps."""
        t = pd.DatetimeIndex(pd.to_datetime(ts_ms, unit="ms", utc=True)).tz_convert(self.timezone)
        secs = (t.hour * 3600 + t.minute * 60 + t.second).to_numpy()
        return secs, t.weekday.to_numpy()

    def bucket(self, ts_ms: np.ndarray) -> np.ndarray:
        secs, weekday = self.local(ts_ms)
        b = secs // self.bucket_s
        if self.split_weekend:
            b = b + self.buckets_per_day * (weekday >= 5)
        return b.astype(np.int64)

    def label(self, ts_ms: int) -> str:
        """'Mon 08:00' style label of the bucket a timestamp falls in (for evidence)."""
        secs, weekday = self.local(np.array([ts_ms]))
        start = int(secs[0]) // self.bucket_s * self.bucket_s
        return f"{WEEKDAY_NAMES[int(weekday[0])]} {start // 3600:02d}:{start % 3600 // 60:02d}"


@dataclass(frozen=True)
class BandStats:
    mean: np.ndarray
    sd: np.ndarray
    n: np.ndarray


class Baseline:
    """EWMA mean/variance of one signal per (entity, bucket), stored in a `DetectorState` as
    arrays `<signal>_mean`, `<signal>_var`, `<signal>_n` of width n_buckets."""

    def __init__(self, signal: str, tod: TimeOfDay, memory_days: float, clip_sd: float,
                 relative: bool = True, min_sd: float = 1.0):
        self.signal = signal
        self.relative = relative
        self.min_sd = min_sd
        self.tod = tod
        self.memory_days = memory_days
        self.clip_sd = clip_sd

    def widths(self) -> dict[str, int]:
        n = self.tod.n_buckets
        return {f"{self.signal}_mean": n, f"{self.signal}_var": n, f"{self.signal}_n": n}

    def stats(self, state: DetectorState, codes: np.ndarray, buckets: np.ndarray,
              min_n: np.ndarray) -> BandStats:
        """Mean, spread and sample count of each row's bucket. The spread is the larger of the
        bucket's own and the sensor's typical one (the median over its warm buckets, relative
        to the mean when `relative`): a bucket that has seen a few dozen samples can
        underestimate its spread, and a median is not moved by a few noisy hours."""
        s = self.signal
        n_all = _nan_to_zero(state[f"{s}_n"][codes])
        mean_all = state[f"{s}_mean"][codes]
        sd_all = np.sqrt(np.maximum(state[f"{s}_var"][codes], 0.0))
        warm = n_all >= min_n[:, None]
        rows = np.arange(len(codes))
        mean, sd, n = mean_all[rows, buckets], sd_all[rows, buckets], n_all[rows, buckets]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.relative:
                spread = np.where(warm & (np.abs(mean_all) > 0), sd_all / np.abs(mean_all), np.nan)
            else:
                spread = np.where(warm, sd_all, np.nan)
        typical = _nanmedian_rows(spread)
        floor = typical * np.abs(mean) if self.relative else typical
        return BandStats(mean, np.fmax(sd, floor), n)

    def update(self, state: DetectorState, codes: np.ndarray, buckets: np.ndarray, x: np.ndarray,
               window_size_s: np.ndarray, warm_n: np.ndarray) -> None:
        """Fold `x` into the baselines (rows with NaN x are skipped). `codes` must be unique.
        Values are clipped only once the bucket is warm (`warm_n` samples): before that the
        mean and spread are too uncertain to say what is wild, and clipping against them
        would freeze a bucket that began in another regime (a lamp off on its first night)."""
        ok = np.isfinite(x)
        if not ok.any():
            return
        c, b, x, warm_n = codes[ok], buckets[ok], x[ok], warm_n[ok]
        s = self.signal
        n = _nan_to_zero(state[f"{s}_n"][c, b]) + 1.0
        mean = state[f"{s}_mean"][c, b]
        var = state[f"{s}_var"][c, b]
        first = n == 1.0
        mean = np.where(first, x, mean)
        var = np.where(first, 0.0, var)
        # the clip band is at least clip_sd * min_sd wide: a bucket that started with a run of
        # equal values (zeros before a school opens) must still be able to learn
        band = self.clip_sd * np.maximum(np.sqrt(var), self.min_sd)
        clipped = np.where(n > warm_n, np.clip(x, mean - band, mean + band), x)
        alpha = np.maximum(window_size_s[ok] / (self.tod.bucket_s * self.memory_days), 1.0 / n)
        delta = clipped - mean
        state[f"{s}_mean"][c, b] = mean + alpha * delta
        state[f"{s}_var"][c, b] = (1.0 - alpha) * (var + alpha * delta * delta)
        state[f"{s}_n"][c, b] = n


_STACK_MAX_ROWS = 256  # steps of more entities than this go signal by signal (see stats_of_signals)


def stats_of_signals(baselines: Sequence[Baseline], state: DetectorState, codes: np.ndarray,
                     buckets: np.ndarray, min_n: np.ndarray) -> BandStats:
    """`Baseline.stats` of several signals of the same rows at once: the same element-wise
    operations on arrays stacked (signal, row, bucket), so the results are identical, with a
    third of the numpy calls for three signals (a backlog batch is hundreds of small steps,
    where the per-call overhead is the cost). Arrays of shape (signal, row). Large steps (a
    batch of many entities) go one signal at a time: there the cost is memory traffic, and
    stacked temporaries that outgrow the cache made it 2x slower."""
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
    """`Baseline.update` of several signals (`xs`: one row per baseline) of the same rows at
    once, element-wise identical to updating them one by one. `codes` must be unique."""
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


def check_baseline_settings(memory_days: float, warmup_s: float, clear_s: float, timezone: str) -> None:
    """Validate the settings every baseline detector has (raises ValueError when built)."""
    if memory_days <= 0 or warmup_s < 0 or clear_s < 0:
        raise ValueError("memory_days must be > 0, warmup_s and clear_s >= 0")
    TimeOfDay(timezone)


class BaselineDetector:
    """A detector scoring one window signal against the entity's own per-time-of-day baseline
    (config `timezone`, `memory_days`), with incidents de-duplicated by `incident_starts`: the
    construction and state every such kind shares. A kind sets `signal` (and `min_sd`, the
    smallest spread its clip band assumes) and writes `detect` with `baseline_steps`."""

    name: str
    source: str
    signal: str
    min_sd: float = 1.0

    def __init__(self, config: Any):
        self.config = config
        self.severity = config.severity
        self.tod = TimeOfDay(config.timezone)
        self.baseline = Baseline(self.signal, self.tod, config.memory_days, clip_sd=3.0, min_sd=self.min_sd)

    def new_state(self) -> DetectorState:
        return DetectorState(self.name, {"scored_until": 1, "last_hot": 1, "hot_n": 1, **self.baseline.widths()})


@dataclass(frozen=True)
class BaselineStep:
    """One step of window rows (`Rows.steps`) with the baseline of each row's time-of-day
    bucket: row indices, entity codes, the signal's values, the bucket statistics, how many
    samples make a bucket warm, and the window sizes in seconds."""

    idx: np.ndarray
    codes: np.ndarray
    x: np.ndarray
    stats: BandStats
    min_n: np.ndarray
    size_s: np.ndarray


def baseline_steps(baseline: Baseline, rows: Rows, state: DetectorState, x_all: np.ndarray,
                   warmup_s: float) -> Iterator[BaselineStep]:
    """Score-then-learn over `rows`, step by step: each step is yielded with the baseline as it
    stood before it, and the baseline learns the step's values (`x_all`, NaN = skipped) once the
    caller asks for the next one. A bucket is warm after `warmup_s` seconds of windows.

        >>> for step in baseline_steps(self.baseline, rows, state, x_all, cfg.warmup_s):
        ...     hot, z = above_baseline(step, cfg.z_threshold, cfg.min_ratio, 50.0, min_sd=1.0)
    """
    buckets = baseline.tod.bucket(rows.window_start)
    size_s = (rows.window_end - rows.window_start) / 1000.0
    min_n = warmup_s / np.maximum(size_s, 1.0)
    for idx in rows.steps():
        c, b, x = rows.codes[idx], buckets[idx], x_all[idx]
        yield BaselineStep(idx, c, x, baseline.stats(state, c, b, min_n[idx]), min_n[idx], size_s[idx])
        baseline.update(state, c, b, x, size_s[idx], min_n[idx])


def above_baseline(step: BaselineStep, z_threshold: float, min_ratio: float, min_increase: float,
                   min_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """The baseline-ratio rule, per row of a step: (hot, z). Hot where the value and a warm
    baseline exist and the value is at least `z_threshold` spreads (the spread at least
    `min_sd`), `min_ratio` times and `min_increase` above the baseline mean."""
    st, x = step.stats, step.x
    valid = np.isfinite(x) & np.isfinite(st.mean) & (st.n >= step.min_n)
    z = (x - st.mean) / np.fmax(st.sd, min_sd)
    hot = valid & (z >= z_threshold) & (x >= min_ratio * st.mean) & (x - st.mean >= min_increase)
    return hot, z


def _nanmedian_rows(a: np.ndarray) -> np.ndarray:
    """Row-wise median ignoring NaN; NaN for rows with no value (sort-based: NaN sorts last,
    several times faster than np.nanmedian on the small rows of a step)."""
    srt = np.sort(a, axis=1)
    cnt = np.isfinite(a).sum(axis=1)
    rows = np.arange(a.shape[0])
    lo, hi = np.maximum(cnt - 1, 0) // 2, cnt // 2
    hi = np.minimum(hi, a.shape[1] - 1)
    return np.where(cnt > 0, (srt[rows, lo] + srt[rows, hi]) / 2.0, np.nan)


def _nan_to_zero(a: np.ndarray) -> np.ndarray:
    """`np.nan_to_num` for sample counts (never infinite), without its per-call overhead."""
    return np.where(np.isnan(a), 0.0, a)
