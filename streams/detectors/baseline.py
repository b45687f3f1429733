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

from collections.abc import Sequence
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
        """The bucket of each timestamp. Converted to local time once per distinct timestamp:
        a batch's windows share few starts (the time-zone conversion was 13 ms per 40k rows)."""
        distinct, inverse = np.unique(ts_ms, return_inverse=True)
        return self._bucket(distinct)[inverse.reshape(-1)]

    def _bucket(self, ts_ms: np.ndarray) -> np.ndarray:
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


def _learn_step(baselines: Sequence[Baseline], before: np.ndarray, xs: np.ndarray, size_s: np.ndarray,
                warm_n: np.ndarray) -> np.ndarray:
    """One update of the baselines of some rows, one (entity, bucket) each: `before` holds
    each row's bucket (mean, var, raw n) as arrays (3, signal, row); returns them after the
    update. A row whose value is NaN leaves its bucket as it was. Values are clipped only once
    the bucket is warm (`warm_n` samples): before that the mean and spread are too uncertain to
    say what is wild, and clipping against them would freeze a bucket that began in another
    regime (a lamp off on its first night). The clip band is at least clip_sd * min_sd wide: a
    bucket that started with a run of equal values (zeros before a school opens) must still be
    able to learn."""
    mean0, var0, n0 = before
    with np.errstate(invalid="ignore"):
        n = _nan_to_zero(n0) + 1.0
        first = n == 1.0
        mean = np.where(first, xs, mean0)
        var = np.where(first, 0.0, var0)
        clip_sd = np.array([b.clip_sd for b in baselines])[:, None]
        min_sd = np.array([b.min_sd for b in baselines])[:, None]
        band = clip_sd * np.maximum(np.sqrt(var), min_sd)
        clipped = np.where(n > warm_n[None, :], np.clip(xs, mean - band, mean + band), xs)
        per_day = np.array([b.tod.bucket_s * b.memory_days for b in baselines], dtype=np.float64)[:, None]
        alpha = np.maximum(size_s[None, :] / per_day, 1.0 / n)
        delta = clipped - mean
        after = np.stack([mean + alpha * delta, (1.0 - alpha) * (var + alpha * delta * delta), n])
    return np.where(np.isfinite(xs)[None], after, before)


_STATS_CHUNK = 2048  # rows per look-back in Learned.stats: (signal, row, bucket) temporaries stay small


class Learned:
    """Score-then-learn over a whole batch of window rows, for one or several signals of the
    same rows (`Learned(baselines, state, rows, xs, warmup_s)` learns; xs is (signal, row),
    NaN = no value). Sequentially, each row is scored against the baselines as they stood
    before it and then updates its own (entity, bucket). Here every update is done first and
    the scores look back:

    - `mean`, `n` (signal, row): the row's own bucket before the row, for every row: what the
      cheap part of a rule needs (is the bucket warm, is the value 30 % below its mean);
    - `stats(sel)`: the full `BandStats` of chosen rows (the spread floor is the median over
      *all* the entity's warm buckets as they stood before the row), asked only for the few
      rows the cheap part lets through.

    Identical to the step loop element for element, because a bucket's update reads only that
    bucket (never a score or another bucket): the updates of one (entity, bucket) are a
    sequence of their own, so step k updates the k-th row of every (entity, bucket) pair. A
    backlog batch spanning a day of 1-min windows is 60 steps, not 1,440. Every row's bucket
    before and after its update is kept, so any bucket before any row is the value after that
    bucket's last earlier row in the batch, else before its first row in the batch, else (the
    batch never touches it) the state as it is."""

    def __init__(self, baselines: Sequence[Baseline], state: DetectorState, rows: Rows, xs: np.ndarray,
                 warmup_s: float):
        tod = baselines[0].tod
        self.relative = np.array([b.relative for b in baselines])
        self.n_buckets = nb = tod.n_buckets
        n_rows = len(rows)
        self.buckets = tod.bucket(rows.window_start)
        self.size_s = (rows.window_end - rows.window_start) / 1000.0
        self.clip_n = warmup_s / np.maximum(self.size_s, 1.0)  # clipping and typical spread: all of it
        self.min_n = WARM_SHARE * self.clip_n  # a verdict from here on (see WARM_SHARE)
        names = [[f"{b.signal}_{part}" for b in baselines] for part in ("mean", "var", "n")]
        self.local = np.repeat(np.arange(len(rows.starts)), rows.counts)  # entity index in the batch
        group = self.local * nb + self.buckets
        self.by_group = np.argsort(group, kind="stable")  # the rows of an (entity, bucket) in window order
        self.group_sorted = group[self.by_group]
        self.keys = self.group_sorted * max(n_rows, 1) + self.by_group
        self.codes = rows.codes
        self.state, self.names = state, names
        self.after = np.empty((3, len(baselines), n_rows))
        self.before = before_all = np.empty((3, len(baselines), n_rows))
        if n_rows:
            head = np.r_[True, self.group_sorted[1:] != self.group_sorted[:-1]]
            pos = np.arange(n_rows)
            occurrence = pos - np.maximum.accumulate(np.where(head, pos, 0))
            step_order = self.by_group[np.argsort(occurrence, kind="stable")]
            bounds = np.r_[0, np.cumsum(np.bincount(occurrence))]
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
                idx = step_order[lo:hi]  # unique (entity, bucket) pairs
                c, b = rows.codes[idx], self.buckets[idx]
                before = np.stack([np.stack([state[name][c, b] for name in part]) for part in names])
                after = _learn_step(baselines, before, xs[:, idx], self.size_s[idx], self.clip_n[idx])
                before_all[:, :, idx] = before
                self.after[:, :, idx] = after
                for k, part in enumerate(names):
                    for i, name in enumerate(part):
                        state[name][c, b] = after[k, i]
        self.mean = before_all[0]
        self.n = _nan_to_zero(before_all[2])

    def stats(self, sel: np.ndarray) -> BandStats:
        """Mean, spread and sample count of rows `sel`'s buckets as they stood before each row,
        arrays (signal, len(sel)). The spread is the larger of the bucket's own and the sensor's
        typical one (the median over its warm buckets, relative to the mean when the baseline
        is `relative`): a bucket that has seen a few dozen samples can underestimate its
        spread, and a median is not moved by a few noisy hours."""
        if len(sel) > _STATS_CHUNK:
            parts = [self.stats(sel[i : i + _STATS_CHUNK]) for i in range(0, len(sel), _STATS_CHUNK)]
            return BandStats(*(np.concatenate([getattr(p, f) for p in parts], axis=1) for f in ("mean", "sd", "n")))
        nb, signals = self.n_buckets, len(self.relative)
        if len(sel) == 0:
            return BandStats(*(np.empty((signals, 0)) for _ in range(3)))
        every = np.arange(nb)[None, :]
        target = self.local[sel][:, None] * nb + every
        # the last row of the same (entity, bucket) before the row in this batch, if any; else
        # its first row in the batch (after the row), if any
        nxt = np.searchsorted(self.keys, target * len(self.buckets) + sel[:, None])
        has_last = nxt > 0
        last, nxt = np.maximum(nxt - 1, 0), np.minimum(nxt, len(self.keys) - 1)
        earlier = has_last & (self.group_sorted[last] == target)
        later = ~earlier & (self.group_sorted[nxt] == target)
        untouched = np.stack([np.stack([self.state[name][self.codes[sel][:, None], every] for name in part])
                              for part in self.names])
        mean_all, var_all, n_raw = np.where(  # (signal, row, bucket)
            earlier[None, None], self.after[:, :, self.by_group[last]],
            np.where(later[None, None], self.before[:, :, self.by_group[nxt]], untouched))
        n_all = _nan_to_zero(n_raw)
        sd_all = np.sqrt(np.maximum(var_all, 0.0))
        warm = n_all >= self.clip_n[sel][None, :, None]  # the typical spread: of fully warm buckets
        rows, buckets = np.arange(len(sel)), self.buckets[sel]
        mean, sd, n = mean_all[:, rows, buckets], sd_all[:, rows, buckets], n_all[:, rows, buckets]
        relative = self.relative[:, None, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            abs_all = np.abs(mean_all)
            spread = np.where(warm & (~relative | (abs_all > 0)), np.where(relative, sd_all / abs_all, sd_all), np.nan)
        typical = _nanmedian_rows(spread.reshape(-1, nb)).reshape(signals, len(sel))
        floor = np.where(self.relative[:, None], typical * np.abs(mean), typical)
        return BandStats(mean, np.fmax(sd, floor), n)


# A bucket gives a verdict after WARM_SHARE of the windows `warmup_s` spans (`Learned.min_n`).
# Not all of them: a window that is skipped (a lamp's fault report, a detector's reboot) would
# otherwise leave a bucket one sample short of warm for another whole day (`warmup_s` 7200 with
# 15-min windows is 8 samples, two evenings; a fault in one of them blinded
# `lighting.energy_spike` on the third). What the baseline learns does not change: clipping
# starts, and a bucket counts towards the sensor's typical spread, after all of `warmup_s`
# (`Learned.clip_n`; a spread from three quarters of the samples is noisier, and it raised the
# floor enough to lose a NAB window).
WARM_SHARE = 0.75


def check_baseline_settings(memory_days: float, warmup_s: float, clear_s: float, timezone: str) -> None:
    """Validate the settings every baseline detector has (raises ValueError when built)."""
    if memory_days <= 0 or warmup_s < 0 or clear_s < 0:
        raise ValueError("memory_days must be > 0, warmup_s and clear_s >= 0")
    TimeOfDay(timezone)


class BaselineDetector:
    """A detector scoring one window signal against the entity's own per-time-of-day baseline
    (config `timezone`, `memory_days`), with incidents de-duplicated by `incident_starts`: the
    construction and state every such kind shares. A kind sets `signal` (and `min_sd`, the
    smallest spread its clip band assumes) and writes `detect` with `learn` and (usually)
    `above_baseline`."""

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

    def learn(self, state: DetectorState, rows: Rows, x: np.ndarray) -> Learned:
        """Fold the batch's values `x` (NaN = none) into the baseline; what each row saw."""
        return Learned([self.baseline], state, rows, x[None, :], self.config.warmup_s)


def above_baseline(learned: Learned, x: np.ndarray, z_threshold: float, min_ratio: float,
                   min_increase: float, min_sd: float) -> tuple[np.ndarray, BandStats, np.ndarray]:
    """The baseline-ratio rule over a batch (`learned`: one signal, values `x`): the rows
    where the value and a warm baseline exist and the value is at least `z_threshold` spreads
    (the spread at least `min_sd`), `min_ratio` times and `min_increase` above the baseline
    mean, with their stats and z. The full stats are looked up only for rows that pass the
    ratio and the increase.

        >>> learned = self.learn(state, rows, x_all)
        >>> hot, st, z = above_baseline(learned, x_all, cfg.z_threshold, cfg.min_ratio, 50.0, min_sd=1.0)
    """
    mean, n = learned.mean[0], learned.n[0]
    with np.errstate(invalid="ignore"):
        maybe = np.flatnonzero(np.isfinite(x) & np.isfinite(mean) & (n >= learned.min_n)
                               & (x >= min_ratio * mean) & (x - mean >= min_increase))
    st = learned.stats(maybe)
    z = (x[maybe] - st.mean[0]) / np.fmax(st.sd[0], min_sd)
    hot = z >= z_threshold
    return maybe[hot], BandStats(st.mean[0][hot], st.sd[0][hot], st.n[0][hot]), z[hot]


def _nanmedian_rows(a: np.ndarray) -> np.ndarray:
    """Row-wise median ignoring NaN; NaN for rows with no value (sort-based: NaN sorts last,
    several times faster than np.nanmedian on short rows)."""
    srt = np.sort(a, axis=1)
    cnt = np.isfinite(a).sum(axis=1)
    rows = np.arange(a.shape[0])
    lo, hi = np.maximum(cnt - 1, 0) // 2, cnt // 2
    hi = np.minimum(hi, a.shape[1] - 1)
    return np.where(cnt > 0, (srt[rows, lo] + srt[rows, hi]) / 2.0, np.nan)


def _nan_to_zero(a: np.ndarray) -> np.ndarray:
    """`np.nan_to_num` for sample counts (never infinite), without its per-call overhead."""
    return np.where(np.isnan(a), 0.0, a)
