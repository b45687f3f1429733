"""The detector framework: anomaly rows, per-entity state as numpy arrays (serialisable to
Arrow), the rule for which window rows a detector scores, and incident de-duplication.

Pure (numpy/pyarrow/pandas only). Every detector follows one shape, in the bytewax manner: a
frozen, typed `...Config` validated when built, whose `build()` returns the detector; the
detector's `detect(windows, state, raw=None)` takes one batch of finalised window rows (the
window engine's layout) and returns anomaly rows (`ANOMALY_SCHEMA`). Two kinds of rule recur
and are written once: a run of windows meeting a condition for N minutes (`RunDetector`,
`long_runs`: cold chain, stalled, lamp on in daylight, AP down) and a value far above the
entity's own time-of-day baseline (`BaselineDetector`, `Learned`, `above_baseline` in
baseline.py: energy spike, auth burst, latency).

Which rows are scored (corrections). A detector scores each (entity, window) once, the first
time the window reaches it, in window order per entity: a row whose window_start is not after
the last window already scored for its entity is ignored. So a correction (version > 0) of a
scored window neither raises nor retracts an alert (alerts say what was known when the window
was final; the corrected window stays in the lake for the warehouse), a version > 0 whose
version 0 was skipped by the engine is scored like a version 0, and a window made only of late
events that arrives after a later window of the same entity was scored is skipped. The rule
is one float per entity of state and does not depend on how windows are batched.

Sequential semantics, vectorised over the batch. Baselines, runs and incidents are sequences
per entity, and a batch catching up a backlog holds hundreds of windows per entity, so no rule
walks the batch window by window (each step a handful of numpy calls on tiny arrays: that cost
40 % of a worker's throughput). Instead: a baseline bucket's updates depend only on that
(entity, time-of-day bucket), so they go in steps of the k-th row of every (entity, bucket)
(`baseline.Learned`: an hour's 1-min windows are 60 steps, whatever the batch spans) and the
scores look back at the buckets as they stood; runs (`long_runs`, stuck) and incidents
(`incident_starts`, over the few hot windows only) are segments of consecutive rows, found
with cumulative operations over the sorted batch. Results are identical, alert for alert and
state bit for bit, to scoring window by window, however the windows are split into batches
(tests/streams/detectors/test_step_equivalence.py against the old loops).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


ANOMALY_SCHEMA = pa.schema([
    ("anomaly_id", pa.string()),  # hash of kind, entity, window_start: replay gives the same id
    ("source", pa.string()),
    ("kind", pa.string()),
    ("severity", pa.string()),
    ("entity", pa.string()),
    ("district", pa.string()),
    ("window_start", pa.int64()),  # epoch ms: start of the window (or silence) that raised it
    ("window_end", pa.int64()),  # epoch ms: when the alert could first be raised
    ("observed", pa.float64()),
    ("expected", pa.float64()),
    ("score", pa.float64()),  # how far beyond the threshold (z-score, minutes, km/h: per kind)
    ("evidence", pa.string()),
])


def anomaly_id(kind: str, entity: str, window_start: int) -> str:
    """Deterministic id of an alert: the same incident replayed gets the same id."""
    return hashlib.sha256(f"{kind}|{entity}|{window_start}".encode()).hexdigest()[:32]


def empty_anomalies() -> pa.Table:
    return ANOMALY_SCHEMA.empty_table()


@dataclass
class Alerts:
    """Alert rows collected while a detector runs (few: Python lists are fine)."""

    kind: str
    source: str
    severity: str

    def __post_init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, entity: str, district: str | None, window_start: int, window_end: int,
            observed: float, expected: float, score: float, evidence: str) -> None:
        self.rows.append({
            "anomaly_id": anomaly_id(self.kind, entity, int(window_start)),
            "source": self.source, "kind": self.kind, "severity": self.severity,
            "entity": entity, "district": district,
            "window_start": int(window_start), "window_end": int(window_end),
            "observed": _finite_or_none(observed), "expected": _finite_or_none(expected),
            "score": _finite_or_none(score), "evidence": evidence,
        })

    def table(self) -> pa.Table:
        if not self.rows:
            return empty_anomalies()
        table = pa.Table.from_pylist(self.rows, schema=ANOMALY_SCHEMA)
        return table.sort_by([("window_start", "ascending"), ("entity", "ascending")])


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


class EntityCodes:
    """Stable integer codes for entity ids (the row index into a state's arrays)."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names: list[str] = list(names)
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.names)}

    def encode(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        enc = pc.dictionary_encode(col)
        words = enc.dictionary.to_pylist()
        mapping = np.fromiter((self._code(w) for w in words), dtype=np.int64, count=len(words))
        return mapping[enc.indices.to_numpy(zero_copy_only=False)]

    def _code(self, word: str) -> int:
        code = self.index.get(word)
        if code is None:
            code = self.index[word] = len(self.names)
            self.names.append(word)
        return code


class DetectorState:
    """A detector's state: named float64 arrays of shape (entities, width), row = entity code,
    plus small JSON `extras` (e.g. per-partition clocks). Memory is constant per entity.

    `to_table()` gives one row per entity (column `entity` and one fixed-size list column per
    array; kind and extras in the schema metadata) and `from_table()` restores it exactly, so
    a worker can land it with its flush or rebuild it.

        >>> s = DetectorState("traffic.stuck", {"run_start": 1})
        >>> codes = s.encode(pa.array(["tdet-0001"]))
        >>> s["run_start"][codes, 0] = 60_000.0
        >>> DetectorState.from_table(s.to_table())["run_start"][0, 0]
        60000.0
    """

    def __init__(self, kind: str, widths: dict[str, int], extras: dict[str, Any] | None = None):
        self.kind = kind
        self.codes = EntityCodes()
        self.extras: dict[str, Any] = extras or {}
        self._arrays = {name: np.full((0, w), np.nan) for name, w in widths.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __len__(self) -> int:
        return len(self.codes.names)

    def encode(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Codes of the entity column, growing every array (NaN rows) for new entities."""
        codes = self.codes.encode(col)
        n = len(self.codes.names)
        for name, arr in self._arrays.items():
            if arr.shape[0] < n:
                grown = np.full((max(n, 2 * arr.shape[0]), arr.shape[1]), np.nan)
                grown[: arr.shape[0]] = arr
                self._arrays[name] = grown
        return codes

    def to_table(self) -> pa.Table:
        n = len(self)
        cols: dict[str, pa.Array] = {"entity": pa.array(self.codes.names, pa.string())}
        for name, arr in self._arrays.items():
            flat = pa.array(np.ascontiguousarray(arr[:n]).reshape(-1), pa.float64())
            cols[name] = pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
        meta = {"kind": self.kind, "extras": json.dumps(self.extras, sort_keys=True)}
        return pa.table(cols).replace_schema_metadata(meta)

    @classmethod
    def from_table(cls, table: pa.Table) -> DetectorState:
        meta = table.schema.metadata or {}
        widths = {f.name: f.type.list_size for f in table.schema if f.name != "entity"}
        state = cls(meta[b"kind"].decode(), widths, json.loads(meta.get(b"extras", b"{}")))
        state.encode(table.column("entity"))
        for name, width in widths.items():
            col = table.column(name).combine_chunks()
            values = col.flatten().to_numpy(zero_copy_only=False)
            state._arrays[name][: len(table)] = values.reshape(len(table), width)
        return state


class StringColumn(Sequence[Any]):
    """A string column read value by value (`column[i]` is a str or None). A detector needs the
    entity and district of its few alert rows only; converting a backlog batch's 50,000 to
    Python strings cost ~10 ms per detector per batch."""

    def __init__(self, array: pa.Array | pa.ChunkedArray):
        self._array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self._array[i].to_pylist()
        return self._array[int(i)].as_py()


@dataclass
class Rows:
    """The window rows a detector scores in one batch, sorted by entity then window_start."""

    codes: np.ndarray
    entity: StringColumn
    district: StringColumn
    window_start: np.ndarray
    window_end: np.ndarray
    partition: np.ndarray
    columns: dict[str, np.ndarray]
    starts: np.ndarray  # first row of each entity's run in this batch
    counts: np.ndarray  # rows per entity in this batch

    def __len__(self) -> int:
        return len(self.codes)


def select_rows(windows: pa.Table, source: str, state: DetectorState,
                columns: Sequence[str]) -> Rows:
    """The rows of `source` that `state` has not scored yet (see module doc), as numpy arrays;
    marks them scored. Missing or null numeric columns become NaN."""
    if windows.num_rows and "source" in windows.column_names:
        windows = windows.filter(pc.equal(windows.column("source"), source))
    if windows.num_rows == 0:
        windows = pa.table({"entity": pa.array([], pa.string()), "window_start": pa.array([], pa.int64()),
                            "window_end": pa.array([], pa.int64())})
    codes = state.encode(windows.column("entity"))
    ws = windows.column("window_start").to_numpy().astype(np.int64)
    we = windows.column("window_end").to_numpy().astype(np.int64)
    version = _numeric(windows, "version", len(ws), 0.0)
    # one row per (entity, window): the newest version in the batch; then entity, window order
    order = np.lexsort((-version, ws, codes))
    codes, ws_sorted = codes[order], ws[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | (ws_sorted[1:] != ws_sorted[:-1])
    scored = state["scored_until"][codes, 0]
    keep = first & ~(ws_sorted <= scored)  # NaN (never scored) compares False
    order = order[keep]
    codes = codes[keep]
    if len(codes):
        last = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True])
        state["scored_until"][codes[last], 0] = ws[order][last]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.empty(0, np.int64)
    counts = np.diff(np.r_[starts, len(codes)])
    take = pa.array(order, pa.int64())
    district = (windows.column("district").take(take) if "district" in windows.column_names
                else pa.nulls(len(order), pa.string()))
    return Rows(
        codes=codes,
        entity=StringColumn(windows.column("entity").take(take)),
        district=StringColumn(district),
        window_start=ws[order],
        window_end=we[order],
        partition=_numeric(windows, "kafka_partition", len(ws), 0.0)[order].astype(np.int64),
        columns={c: _numeric(windows, c, len(ws), np.nan)[order] for c in columns},
        starts=starts,
        counts=counts,
    )


def _numeric(table: pa.Table, name: str, n: int, default: float) -> np.ndarray:
    if name not in table.column_names:
        return np.full(n, default)
    return table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def incident_starts(state: DetectorState, rows: Rows, hot: np.ndarray, clear_s: float, min_hot: int = 1) -> np.ndarray:
    """De-duplicate the batch's hot windows (`hot`: row indices into `rows`, ascending) into
    incidents: an incident stays open while hot windows of the entity follow each other within
    `clear_s` seconds (hysteresis), and raises one alert, at its `min_hot`-th hot window (1 =
    at once; 2 = confirmed by a second, which drops one-reading glitches). Uses the state
    arrays `last_hot` (ms) and `hot_n`. Returns a mask over `hot`: the windows that alert.

    Per entity this is a sequence over its hot windows only (a count that restarts after a
    gap), done with cumulative operations over the batch."""
    c = rows.codes[hot]
    t = rows.window_start[hot].astype(np.float64)
    if len(c) == 0:
        return np.zeros(0, dtype=bool)
    first = np.r_[True, c[1:] != c[:-1]]
    last = np.r_[np.nan, t[:-1]]
    last[first] = state["last_hot"][c[first], 0]
    open_ = (t - last) <= clear_s * 1000.0  # NaN -> False
    carried = state["hot_n"][c, 0]  # the state's count, read where the entity's hot windows begin
    base = np.where(first & open_ & ~np.isnan(carried), carried, 0.0)
    pos = np.arange(len(c))
    head = np.maximum.accumulate(np.where(first | ~open_, pos, 0))
    n = base[head] + (pos - head) + 1.0
    end = np.r_[c[1:] != c[:-1], True]
    state["hot_n"][c[end], 0] = n[end]
    state["last_hot"][c[end], 0] = t[end]
    return n == min_hot


class Detector(Protocol):
    """One kind of anomaly: `name` (e.g. 'traffic.congestion'), `source`, `severity`, and the
    `config` it was built from."""

    name: str
    source: str
    severity: Severity
    config: Any

    def new_state(self) -> DetectorState: ...

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table: ...


RUN_WIDTHS = {"scored_until": 1, "run_start": 1, "last_end": 1, "alerted_run": 1}


@dataclass(frozen=True)
class Runs:
    """Where each row's run of windows began (`start`, ms; NaN where the row is in no run) and
    which row began it (`head`, a row index; runs carried over from the state start before the
    batch: their head is the entity's first row)."""

    start: np.ndarray
    head: np.ndarray


def runs_of(rows: Rows, state: DetectorState, cond: np.ndarray, carried: np.ndarray, same: np.ndarray) -> Runs:
    """Runs of consecutive rows of an entity: a row `same` as the one before it continues its
    run (for an entity's first row in the batch: the state's run, whose start is `carried`);
    any other row where `cond` holds starts one at its window_start. A run only continues
    from a row in one (`cond`), and `same` must imply `cond`."""
    n = len(rows)
    first = np.zeros(n, dtype=bool)
    first[rows.starts] = True
    pos = np.arange(n)
    head = np.maximum.accumulate(np.where(first | ~same, pos, 0)) if n else pos
    value = np.where(first & same, carried, np.where(cond, rows.window_start.astype(np.float64), np.nan))
    return Runs(value[head], head)


def first_due(state: DetectorState, rows: Rows, runs: Runs, due: np.ndarray) -> np.ndarray:
    """Rows raising their run's alert: the first row of each run where `due` holds, unless the
    state says that run (a run carried over) was already alerted (state array `alerted_run`).
    Marks them alerted. One alert per run: runs begun in the batch start after every run the
    state knows, so only a carried run can have been alerted before."""
    due = due & np.isfinite(runs.start)
    rows_due = np.flatnonzero(due)
    first_of_run = np.r_[True, runs.head[rows_due[1:]] != runs.head[rows_due[:-1]]] if len(rows_due) else rows_due > 0
    fire = rows_due[first_of_run]
    fire = fire[state["alerted_run"][rows.codes[fire], 0] != runs.start[fire]]
    state["alerted_run"][rows.codes[fire], 0] = runs.start[fire]
    return fire


def _entity_last(rows: Rows) -> np.ndarray:
    return rows.starts + rows.counts - 1


def previous_values(rows: Rows, values: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Per row, `values` of the entity's previous row; `stored` (per entity code) for its first."""
    prev = np.empty_like(values, dtype=np.float64)
    prev[1:] = values[:-1]
    prev[rows.starts] = stored[rows.codes[rows.starts]]
    return prev


def long_runs(rows: Rows, state: DetectorState, cond: np.ndarray, min_duration_s: float,
              max_gap_s: float) -> Iterator[tuple[int, float, float]]:
    """The runs of windows meeting `cond` that have lasted `min_duration_s` (a run goes on
    while each window meets it and starts within `max_gap_s` of the previous window's end): for
    each, once, at the window where it first has, (row index, run start ms, minutes so far).
    State arrays `RUN_WIDTHS` (run_start, last_end, alerted_run): the same for any batching.

        >>> for i, run_start, minutes in long_runs(rows, state, temp > 8.0, 900, 600):
        ...     alerts.add(rows.entity[i], ..., int(run_start), int(rows.window_end[i]), ...)
    """
    if len(rows) == 0:
        return
    ws, we = rows.window_start, rows.window_end
    prev_end = previous_values(rows, we, state["last_end"][:, 0])
    prev_in_run = previous_values(rows, cond, np.isfinite(state["run_start"][:, 0]))
    same = cond & ((ws - prev_end) <= max_gap_s * 1000.0) & (prev_in_run > 0)
    runs = runs_of(rows, state, cond, state["run_start"][rows.codes, 0], same)
    last = _entity_last(rows)
    state["run_start"][rows.codes[last], 0] = runs.start[last]
    state["last_end"][rows.codes[last], 0] = we[last]
    with np.errstate(invalid="ignore"):
        due = (we - runs.start) >= min_duration_s * 1000.0
    for i in first_due(state, rows, runs, due).tolist():
        yield i, float(runs.start[i]), (we[i] - runs.start[i]) / 60000.0


class RunDetector:
    """A detector raising one alert per run of windows that meet a condition for long enough
    (`long_runs`; config `min_duration_s` or what `min_duration_s` names, and `max_gap_s`).
    A kind names the window columns it reads and says which windows meet its condition and
    what an alert shows (observed, expected, evidence); the alert's score is the run's minutes.

        >>> class ColdChain(RunDetector):
        ...     name, source, columns = "logistics.cold_chain", "logistics", ("max_cargo_temp_c",)
        ...     def condition(self, col): return col["max_cargo_temp_c"] > self.config.max_temp_c
    """

    name: str
    source: str
    columns: tuple[str, ...]

    def __init__(self, config: Any):
        self.config = config
        self.severity = config.severity

    @property
    def min_duration_s(self) -> float:
        return float(self.config.min_duration_s)

    def new_state(self) -> DetectorState:
        return DetectorState(self.name, RUN_WIDTHS)

    def condition(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def describe(self, rows: Rows, i: int, run_start: float, minutes: float) -> tuple[float, float, str]:
        """(observed, expected, evidence) of the alert of the run through row `i`."""
        raise NotImplementedError

    def before_runs(self, rows: Rows, state: DetectorState, alerts: Alerts) -> None:
        """Alerts a kind raises besides its runs (e.g. silence), before them."""

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        rows = select_rows(windows, self.source, state, self.columns)
        alerts = Alerts(self.name, self.source, self.severity)
        self.before_runs(rows, state, alerts)
        runs = long_runs(rows, state, self.condition(rows.columns), self.min_duration_s, self.config.max_gap_s)
        for i, run_start, minutes in runs:
            observed, expected, evidence = self.describe(rows, i, run_start, minutes)
            alerts.add(rows.entity[i], rows.district[i], int(run_start), int(rows.window_end[i]), observed,
                       expected, minutes, evidence)
        return alerts.table()


def utc_minute(ts_ms: float) -> str:
    """'2026-03-02 14:05 UTC' for evidence strings."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


class DetectorConfig(Protocol):
    """A kind's typed settings, validated when constructed; `build()` makes its detector."""

    def build(self) -> Detector: ...
