"""Offline scoring of the traffic detectors on NAB-style labelled series (no broker): reads a
directory laid out like `../shared/data/nab/` (CSV `timestamp,value` per file plus
`combined_windows.json`), turns each series into traffic window rows, runs a detector with one
configuration for every series and scores it window by window.

Series to windows: each reading becomes one window row starting at its timestamp, as long as
the series' median spacing (its reporting interval: 5 min for speed and occupancy, 10 min for
travel time; the spacing is irregular and gappy, which the detectors tolerate). The
file name says the signal: `speed*` -> avg_speed_kmh (mph converted to km/h), `occupancy*` ->
avg_occupancy_pct, `TravelTime*` -> avg_travel_time_s, which the congestion detector reads as the
inverse of speed (a rise is congestion). vehicle_count is unknown (null), never 0. Each file is
its own entity on its own partition. Timestamps are local time: the directory's
`metadata.json` may name their zone (`{"timezone": "America/Chicago"}`); without it they are
taken as NAB realTraffic's, the Twin Cities' America/Chicago. They are localised to that zone
and the detectors run in it (through the worker: CITYFLOW_DETECTORS_TZ), so the time of day is
the series' own, as Europe/Berlin is Duisburg's.

Scoring (the issue's rule): a labelled window is found when at least one alert of the detector
falls inside it (by the alert's window_start); every alert outside all windows is a false
positive. precision = found / (found + FP), recall = found / windows; delay = first alert in a
found window minus the window's start, averaged over found windows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from streams.detectors.base import Detector
from streams.detectors.traffic import CongestionConfig

NAB_TIMEZONE = "America/Chicago"  # NAB realTraffic (Minnesota DOT); a directory may say otherwise
METADATA_FILE = "metadata.json"
WEEK_MS = 7 * 86_400_000
MPH_TO_KMH = 1.609344
# window column of each signal -> the traffic contract field a replay sends it in
SIGNALS = {"avg_speed_kmh": "avg_speed_kmh", "avg_occupancy_pct": "occupancy_pct",
           "avg_travel_time_s": "travel_time_s"}
BATCH_ROWS = 288  # one day of 5-min readings per detect() call; results do not depend on it


@dataclass(frozen=True)
class Series:
    name: str
    signal: str
    ts_ms: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]
    timezone: str = NAB_TIMEZONE

    @property
    def window_s(self) -> int:
        """The reporting interval: median spacing, in whole minutes (at least one)."""
        spacing = np.median(np.diff(np.sort(self.ts_ms))) / 1000.0 if len(self.ts_ms) > 1 else 60.0
        return int(max(60, round(spacing / 60.0) * 60))


def signal_of(file_name: str) -> tuple[str, float]:
    """The window column a NAB file's values go to, and the factor to its unit."""
    lower = file_name.lower()
    if lower.startswith("speed"):
        return "avg_speed_kmh", MPH_TO_KMH
    if lower.startswith("occupancy"):
        return "avg_occupancy_pct", 1.0
    if lower.startswith("traveltime"):
        return "avg_travel_time_s", 1.0
    raise ValueError(f"{file_name}: cannot tell the signal; name it speed*, occupancy* or TravelTime*")


def _epoch_ms(stamps: pd.Series | Sequence[str], timezone: str) -> np.ndarray:
    local = pd.DatetimeIndex(pd.to_datetime(stamps)).tz_localize(timezone, ambiguous="NaT",
                                                                  nonexistent="shift_forward")
    return (local.as_unit("ms").asi8).astype(np.int64)


def series_timezone(data_dir: str | Path) -> str:
    """The zone of a directory's local timestamps: `metadata.json`'s "timezone", else NAB's."""
    path = Path(data_dir) / METADATA_FILE
    if not path.exists():
        return NAB_TIMEZONE
    zone = json.loads(path.read_text()).get("timezone", NAB_TIMEZONE)
    try:
        pd.Timestamp(0, tz=zone)
    except Exception as exc:  # pytz/zoneinfo raise different types for an unknown name
        raise ValueError(f"{path}: unknown time zone {zone!r}") from exc
    return zone


def load_series(data_dir: str | Path) -> list[Series]:
    """Every file named in `combined_windows.json` (sorted by name) with its windows, its
    timestamps localised to the directory's zone (`series_timezone`)."""
    data_dir = Path(data_dir)
    zone = series_timezone(data_dir)
    labels = json.loads((data_dir / "combined_windows.json").read_text())
    out = []
    for name in sorted(labels):
        frame = pd.read_csv(data_dir / name).dropna()
        signal, factor = signal_of(Path(name).name)
        ts = _epoch_ms(frame["timestamp"], zone)
        ok = ts > np.iinfo(np.int64).min
        windows = tuple((int(a), int(b)) for a, b in (_epoch_ms(list(w), zone) for w in labels[name]))
        out.append(Series(name, signal, ts[ok], frame["value"].to_numpy(float)[ok] * factor, windows, zone))
    return out


def shift_local_weeks(ts_ms: np.ndarray, weeks: int, timezone: str) -> np.ndarray:
    """Epoch-ms times moved by whole weeks of *local* time in `timezone`: the same weekday and
    wall-clock time, so a replay shifted to the present keeps every reading in its time-of-day
    bucket across daylight-saving changes (a fixed shift in ms moves them by the DST
    difference). A wall-clock time that the new date repeats (autumn) takes the fixed shift.

        >>> ts = np.array([1441112400000])  # Tue 2015-09-01 08:00 in Chicago (CDT)
        >>> shift_local_weeks(ts, 10, "America/Chicago") - ts == 10 * WEEK_MS + 3_600_000  # CST
        array([ True])
    """
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    local = pd.DatetimeIndex(pd.to_datetime(ts_ms, unit="ms", utc=True)).tz_convert(timezone).tz_localize(None)
    moved = (local + pd.Timedelta(weeks=weeks)).tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward")
    out = moved.as_unit("ms").asi8.astype(np.int64)
    fixed = ts_ms + weeks * WEEK_MS
    return np.where(moved.isna(), fixed, out)


def window_rows(series: Series, partition: int = 0) -> pa.Table:
    """The series as traffic window rows in the window engine's layout (sorted by time)."""
    order = np.argsort(series.ts_ms, kind="stable")
    ts = series.ts_ms[order]
    n = len(ts)
    size = series.window_s
    cols: dict[str, pa.Array] = {
        "source": pa.array(["traffic"] * n),
        "window_start": pa.array(ts, pa.int64()),
        "entity": pa.array([Path(series.name).stem] * n),
        "vehicle_count": pa.nulls(n, pa.int64()),
    }
    for signal in SIGNALS:
        values = series.values[order] if signal == series.signal else np.full(n, np.nan)
        cols[signal] = pa.array(values, pa.float64(), from_pandas=True)
    cols.update({
        "district": pa.nulls(n, pa.string()),
        "version": pa.array(np.zeros(n, np.int32)),
        "window_end": pa.array(ts + size * 1000, pa.int64()),
        "window_size_s": pa.array(np.full(n, size, np.int32)),
        "hop_s": pa.array(np.full(n, size, np.int32)),
        "is_correction": pa.array(np.zeros(n, bool)),
        "kafka_partition": pa.array(np.full(n, partition, np.int32)),
    })
    return pa.table(cols)


def alert_times(detector: Detector, series: Series, batch_rows: int = BATCH_ROWS) -> np.ndarray:
    """window_start (ms) of every alert the detector raises on the series, replayed in batches."""
    rows = window_rows(series)
    state = detector.new_state()
    found = [detector.detect(rows.slice(i, batch_rows), state).column("window_start").to_numpy()
             for i in range(0, rows.num_rows, batch_rows)]
    return np.concatenate(found) if found else np.empty(0, np.int64)


class Counts:
    """Precision, recall, F1 and mean delay from true/false positives, false negatives and
    the delays of the windows found (shared by one file's score and the totals)."""

    tp: int
    fp: int
    fn: int
    delays_min: tuple[float, ...]

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return f1(self.tp, self.fp, self.fn)

    @property
    def mean_delay_min(self) -> float:
        return float(np.mean(self.delays_min)) if self.delays_min else float("nan")


@dataclass(frozen=True)
class FileScore(Counts):
    file: str
    windows: int
    tp: int
    fp: int
    fn: int
    alerts: int
    delays_min: tuple[float, ...]


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def f1(tp: int, fp: int, fn: int) -> float:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def score_file(series: Series, alerts_ms: np.ndarray) -> FileScore:
    """Window-level score of one file's alerts (see module doc)."""
    inside_any = np.zeros(len(alerts_ms), dtype=bool)
    delays = []
    for start, end in series.windows:
        inside = (alerts_ms >= start) & (alerts_ms <= end)
        inside_any |= inside
        if inside.any():
            delays.append((alerts_ms[inside].min() - start) / 60000.0)
    tp = len(delays)
    return FileScore(series.name, len(series.windows), tp, int((~inside_any).sum()), len(series.windows) - tp,
                     len(alerts_ms), tuple(delays))


@dataclass(frozen=True)
class Totals(Counts):
    tp: int
    fp: int
    fn: int
    delays_min: tuple[float, ...]

    @classmethod
    def of(cls, scores: Sequence[FileScore]) -> Totals:
        return cls(sum(s.tp for s in scores), sum(s.fp for s in scores), sum(s.fn for s in scores),
                   tuple(d for s in scores for d in s.delays_min))


def evaluate(series: Sequence[Series], detector: Detector) -> list[FileScore]:
    """One configuration over every series: the per-file scores."""
    return [score_file(s, alert_times(detector, s)) for s in series]


def congestion_detector(config: CongestionConfig, timezone: str = NAB_TIMEZONE) -> Detector:
    return replace(config, timezone=timezone).build()


# The candidates leave-one-file-out chooses from: the settings that decide sensitivity (the
# z threshold; one or two hot windows per alert) around the default, the default first so a
# tie keeps it. min_speed_drop is left alone: 0.2-0.4 gave the same alerts on these series.
def candidate_configs(base: CongestionConfig | None = None) -> list[CongestionConfig]:
    base = base or CongestionConfig()
    grid = [(base.z_threshold, base.min_hot_windows)]
    grid += [(z, m) for m in (1, 2) for z in (3.0, 4.0, 5.0, 6.0, 7.0) if (z, m) != grid[0]]
    return [replace(base, z_threshold=z, min_hot_windows=m) for z, m in grid]


@dataclass(frozen=True)
class LofoFold:
    held_out: str
    chosen: CongestionConfig
    train_f1: float
    score: FileScore


def leave_one_file_out(series: Sequence[Series], candidates: Sequence[CongestionConfig],
                       build: Callable[[CongestionConfig], Detector] = congestion_detector) -> list[LofoFold]:
    """For each file: choose the candidate with the best F1 on the other files (first wins a
    tie), then score it on the held-out file."""
    table = [evaluate(series, build(c)) for c in candidates]  # candidates x files
    folds = []
    for k, held in enumerate(series):
        train = [Totals.of([s for i, s in enumerate(scores) if i != k]).f1 for scores in table]
        best = int(np.argmax(train))
        folds.append(LofoFold(held.name, candidates[best], train[best], table[best][k]))
    return folds


def format_scores(scores: Sequence[FileScore]) -> str:
    lines = [f"{'file':<22}{'win':>4}{'TP':>4}{'FP':>4}{'FN':>4}{'P':>7}{'R':>7}{'F1':>7}{'delay min':>11}"]
    for s in scores:
        lines.append(f"{s.file:<22}{s.windows:>4}{s.tp:>4}{s.fp:>4}{s.fn:>4}{s.precision:>7.2f}"
                     f"{s.recall:>7.2f}{s.f1:>7.2f}{s.mean_delay_min:>11.0f}")
    t = Totals.of(scores)
    lines.append(f"{'overall':<22}{t.tp + t.fn:>4}{t.tp:>4}{t.fp:>4}{t.fn:>4}{t.precision:>7.2f}"
                 f"{t.recall:>7.2f}{t.f1:>7.2f}{t.mean_delay_min:>11.0f}")
    return "\n".join(lines)


def report(data_dir: str | Path, config: CongestionConfig | None = None, lofo: bool = True) -> dict:
    """The evaluation as JSON-able data: per-file scores, overall, and leave-one-file-out."""
    config = config or CongestionConfig()
    series = load_series(data_dir)
    zone = series_timezone(data_dir)
    scores = evaluate(series, congestion_detector(config, zone))
    out: dict = {"config": asdict(config), "files": [_score_dict(s) for s in scores],
                 "overall": _totals_dict(Totals.of(scores))}
    if lofo:
        folds = leave_one_file_out(series, candidate_configs(config), lambda c: congestion_detector(c, zone))
        out["lofo"] = {
            "folds": [{"held_out": f.held_out, "z_threshold": f.chosen.z_threshold,
                       "min_hot_windows": f.chosen.min_hot_windows, "train_f1": f.train_f1,
                       **_score_dict(f.score)} for f in folds],
            "overall": _totals_dict(Totals.of([f.score for f in folds])),
        }
    return out


def _score_dict(s: FileScore) -> dict:
    return {"file": s.file, "windows": s.windows, "tp": s.tp, "fp": s.fp, "fn": s.fn, "alerts": s.alerts,
            "precision": s.precision, "recall": s.recall, "f1": s.f1, "mean_delay_min": s.mean_delay_min}


def _totals_dict(t: Totals) -> dict:
    return {"tp": t.tp, "fp": t.fp, "fn": t.fn, "precision": t.precision, "recall": t.recall, "f1": t.f1,
            "mean_delay_min": t.mean_delay_min}


if __name__ == "__main__":  # python -m streams.detectors.nab DIR
    import sys

    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/nab"
    s = load_series(data)
    zone = series_timezone(data)
    print(format_scores(evaluate(s, congestion_detector(CongestionConfig(), zone))))
    folds = leave_one_file_out(s, candidate_configs(), lambda c: congestion_detector(c, zone))
    for f in folds:
        print(f"LOFO {f.held_out}: z={f.chosen.z_threshold} min_hot={f.chosen.min_hot_windows} "
              f"train F1 {f.train_f1:.2f}")
    print(format_scores([f.score for f in folds]))
