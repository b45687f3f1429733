"""Event-time window engine (pure: no Faust, no Kafka): tumbling and hopping windows per
entity and per district, a per-partition watermark, versioned corrections and late events.

Semantics are per event in offset order, computed vectorised per batch, so every window's
version number and content do not depend on how records were batched (which makes replay after
a restart deterministic). A batch emits only the newest version of each window it touched, so
intermediate versions may be skipped (e.g. version 0 when the batch that finalises a window
also corrects it); the latest version is always the same:

- watermark before event i = max(ts of all earlier events) - allowed_lateness
- a pair (event, window) is *on time* if window_end > watermark, a *correction* if
  window_end <= watermark < window_end + grace, and *late* otherwise (-> late_events)
- a window is final (emitted as version 0) once the watermark reaches its end; every
  correction event re-emits its window with version + 1. is_correction is true for any row
  that includes events which arrived after the window was final (so also for a version 0 of a
  window whose only events all came late, within grace).

State is columnar (numpy, no per-event Python): one set of arrays per partition holding every
(event, window) pair that can still change a window, sorted by window start and then arrival,
with entities and districts as integer codes. Windows that can no longer change are a prefix of
that order and are dropped by slicing; versions live in a sorted key array.

    >>> eng = WindowEngine(WindowGeometry(size_s=60, allowed_lateness_s=10, grace_s=120), "traffic")
    >>> out = eng.process(batch)   # Arrow table or DataFrame: ts (ms), entity, district, offset, fields
    >>> out.windows, out.district_windows, out.late_events
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts.aggregates import (
    AGGREGATES,
    Aggregate,
    Groups,
    aggregate_groups,
    partial_aggregate_groups,
)
from contracts.tables import district_window_table, window_table
from contracts.windows import WindowGeometry

_NO_TS = np.iinfo(np.int64).min // 4


_EMPTY = pa.table({})


@dataclass
class WindowOutput:
    """What one batch produced, as Arrow tables (times as epoch-ms int64): window rows to land
    (new versions), district partials and late events."""

    windows: pa.Table = field(default_factory=lambda: _EMPTY)
    district_windows: pa.Table = field(default_factory=lambda: _EMPTY)
    late_events: pa.Table = field(default_factory=lambda: _EMPTY)

    @property
    def empty(self) -> bool:
        return not (self.windows.num_rows or self.district_windows.num_rows or self.late_events.num_rows)


_CODE_SPACE = 1 << 24  # entity (or district) codes per engine; a version key is window * space + code


class _Codes:
    """Stable integer codes for the strings of one key column (entities or districts)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self._array: pa.Array | None = None

    def encode(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """int64 codes of a string column; -1 for null."""
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if col.null_count == len(col):
            return np.full(len(col), -1, dtype=np.int64)
        enc = pc.dictionary_encode(col)
        words = enc.dictionary.to_pylist()
        mapping = np.fromiter((self._code(w) for w in words), dtype=np.int64, count=len(words))
        indices = pc.fill_null(enc.indices, -1) if enc.indices.null_count else enc.indices
        return np.append(mapping, -1)[indices.to_numpy()]  # index -1 -> the appended -1

    def _code(self, word: str) -> int:
        code = self.index.get(word)
        if code is None:
            if len(self.names) >= _CODE_SPACE:
                raise OverflowError(f"more than {_CODE_SPACE} distinct keys in one partition's open windows")
            code = self.index[word] = len(self.names)
            self.names.append(word)
            self._array = None
        return code

    def decode(self, codes: np.ndarray) -> pa.Array:
        """The strings of `codes` (null for -1) as an Arrow large_string array."""
        if self._array is None:
            self._array = pa.array([*self.names, None], pa.large_string())
        return self._array.take(pa.array(np.where(codes >= 0, codes, len(self.names))))

    def compact(self, live: np.ndarray) -> np.ndarray:
        """Keep only the codes in `live`, renumbered; return the old -> new map (-1: dropped; the
        map's last slot maps -1 to -1)."""
        keep = np.unique(live[live >= 0])
        remap = np.full(len(self.names) + 1, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        self.names = [self.names[i] for i in keep.tolist()]
        self.index = {w: i for i, w in enumerate(self.names)}
        self._array = None
        return remap


class _VersionTable:
    """Latest version per (window, key), as sorted int64 keys (window index * space + code)."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.int64)
        self.versions = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def bump(self, keys: np.ndarray, inc: np.ndarray) -> np.ndarray:
        """Add `inc` to the versions of `keys` (unique, sorted; absent keys start at -1)."""
        pos = np.searchsorted(self.keys, keys)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == keys[found]
        new = np.full(len(keys), -1, dtype=np.int64)
        new[found] = self.versions[pos[found]]
        new += inc
        self.versions[pos[found]] = new[found]
        if not found.all():
            fresh = ~found
            self.keys = np.insert(self.keys, pos[fresh], keys[fresh])
            self.versions = np.insert(self.versions, pos[fresh], new[fresh])
        return new

    def expire_below(self, key: int) -> None:
        cut = int(np.searchsorted(self.keys, key, side="left"))
        self.keys, self.versions = self.keys[cut:], self.versions[cut:]

    def remap(self, remap: np.ndarray) -> None:
        window, code = np.divmod(self.keys, _CODE_SPACE)
        code = remap[code]
        keep = code >= 0
        keys = window[keep] * _CODE_SPACE + code[keep]
        order = np.argsort(keys, kind="stable")
        self.keys, self.versions = keys[order], self.versions[keep][order]


@dataclass
class _Touched:
    """The groups of one key kind (entity or district) whose version this batch bumped."""

    keys: np.ndarray  # version keys of the emitted groups, sorted
    versions: np.ndarray
    codes: np.ndarray  # group index (0..len(keys)-1) of every row in `rows`
    rows: dict[str, np.ndarray]


class WindowEngine:
    """Open-window state and watermark of one topic partition for one source."""

    def __init__(self, spec: WindowGeometry, source: str, partition: int = 0):
        self.spec = spec
        self.source = source
        self.partition = partition
        self.aggregates: tuple[Aggregate, ...] = AGGREGATES[source]
        # the per-event input columns the aggregates read, once each ('f:<field>', 'h:<name>')
        self._inputs = {a.input_key: a for a in self.aggregates if a.input_key is not None}
        # the declared columns of the tables it emits (contracts/tables.py); the sink adds emitted_at
        self._columns_of = {key: [n for n in table.names if n != "emitted_at"]
                            for key, table in (("entity", window_table(source)),
                                               ("district", district_window_table(source)))}
        self.reset()

    # -- public -------------------------------------------------------------------------------
    def reset(self, max_ts: int | None = None) -> None:
        """Forget all state; start from a known max event time (replay start point)."""
        self.max_ts: int = _NO_TS if max_ts is None else int(max_ts)
        # every (event, window) pair that can still change a window, sorted by window start
        # and then arrival: ws, ent, dist, corr and the aggregates' inputs (Aggregate.input_key)
        self._state: dict[str, np.ndarray] = {}
        self._ent, self._dist = _Codes(), _Codes()
        self._entity_v, self._district_v = _VersionTable(), _VersionTable()
        self._compact_at = 100_000

    @property
    def watermark(self) -> int | None:
        return None if self.max_ts == _NO_TS else self.max_ts - self.spec.allowed_lateness_s * 1000

    @property
    def state_rows(self) -> int:
        return len(self._state.get("ws", ()))

    @property
    def open_windows(self) -> int:
        ws = self._state.get("ws")
        return 0 if ws is None or not len(ws) else 1 + int(np.count_nonzero(np.diff(ws)))

    def process(self, events: pa.Table | pd.DataFrame, emit: bool = True) -> WindowOutput:
        """Apply a batch of events (in offset order); return the window versions it produced.

        `events` needs columns ts (int64 epoch ms), entity, district (may be null), offset and
        the source's value fields. With emit=False (replay on start-up) state and versions are
        rebuilt and nothing is returned.
        """
        table = events if isinstance(events, pa.Table) else pa.Table.from_pandas(events, preserve_index=False)
        if table.num_rows == 0:
            return WindowOutput()
        spec = self.spec
        size_ms, hop_ms = spec.size_s * 1000, spec.hop * 1000
        late_ms, grace_ms = spec.allowed_lateness_s * 1000, spec.grace_s * 1000
        ts = table.column("ts").cast(pa.int64()).to_numpy()
        running = np.maximum.accumulate(np.concatenate(([self.max_ts], ts)))
        wm_before = running[:-1] - late_ms

        k = spec.size_s // spec.hop  # windows per event
        last_start = (ts // hop_ms) * hop_ms
        pair_event = None if k == 1 else np.repeat(np.arange(len(ts)), k)
        if pair_event is None:
            ws, wmb = last_start, wm_before
        else:
            ws = np.repeat(last_start, k) - np.tile(np.arange(k, dtype=np.int64) * hop_ms, len(ts))
            wmb = wm_before[pair_event]
        end = ws + size_ms
        late = wmb >= end + grace_ms
        corr = ~late & (wmb >= end)
        any_late = bool(late.any())
        late_out = self._late_rows(table, ts, running, pair_event, ws, late) if emit and any_late else _EMPTY

        # the batch's kept pairs, merged into the state (stable: arrival order within a window)
        keep = ~late
        take = pair_event[keep] if pair_event is not None else (np.flatnonzero(keep) if any_late else None)
        batch = {"ws": ws[keep], "corr": corr[keep]}
        for name, values in self._columns(table).items():
            batch[name] = values if take is None else values[take]
        state, is_new = self._merge(batch)

        wm_prev = self.max_ts - late_ms
        self.max_ts = int(running[-1])
        wm_after = self.max_ts - late_ms
        windows, districts = self._emit(state, is_new, batch, wm_prev, wm_after, emit)

        dead = wm_after - size_ms - grace_ms  # windows starting at or before this can't change
        cut = int(np.searchsorted(state["ws"], dead, side="right"))
        self._state = {c: a[cut:] for c, a in state.items()} if cut else state
        bound = (dead // hop_ms + 1) * _CODE_SPACE
        self._entity_v.expire_below(bound)
        self._district_v.expire_below(bound)
        if len(self._ent.names) + len(self._dist.names) > self._compact_at:
            self._compact_codes()
        if not emit:
            return WindowOutput()
        return WindowOutput(windows, districts, late_out)

    # -- internals ----------------------------------------------------------------------------
    def _columns(self, table: pa.Table) -> dict[str, np.ndarray]:
        """Per event: entity and district codes and the aggregates' input columns."""
        cols = {"ent": self._ent.encode(table.column("entity")), "dist": self._dist.encode(table.column("district"))}
        for key, agg in self._inputs.items():
            cols[key] = agg.function.event_values(agg, table)
        return cols

    def _merge(self, batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """State + batch sorted by window start (stable); and which rows came from the batch."""
        old = self._state
        n_old = len(old["ws"]) if old else 0
        ws = np.concatenate((old["ws"], batch["ws"])) if n_old else batch["ws"]
        order = np.argsort(ws, kind="stable")
        if n_old:
            merged = {c: np.concatenate((old[c], batch[c]))[order] for c in batch}
        else:
            merged = {c: a[order] for c, a in batch.items()}
        return merged, order >= n_old

    def _emit(self, state, is_new, batch, wm_prev: int, wm_after: int, emit: bool):
        """Bump the versions of every (window, key) this batch made final or corrected; with
        `emit`, aggregate them. Returns (entity windows, district windows)."""
        size_ms = self.spec.size_s * 1000
        sws = state["ws"]
        final_lo, final_hi = wm_prev - size_ms, wm_after - size_ms  # newly final: lo < ws <= hi
        touched = np.zeros(len(sws) + 1, dtype=np.int64)
        touched[int(np.searchsorted(sws, final_lo, side="right"))] += 1
        touched[int(np.searchsorted(sws, final_hi, side="right"))] -= 1
        corrected = np.unique(batch["ws"][batch["corr"]])
        if len(corrected):
            touched[np.searchsorted(sws, corrected, side="left")] += 1
            touched[np.searchsorted(sws, corrected, side="right")] -= 1
        sel = np.cumsum(touched[:-1]) > 0
        if not sel.any():
            return _EMPTY, _EMPTY
        rows = {c: a[sel] for c, a in state.items()}
        new_corr = (is_new & state["corr"])[sel]
        ent = self._touch(rows, rows["ent"], new_corr, final_lo, final_hi, self._entity_v)
        with_district = rows["dist"] >= 0
        dist = None
        if with_district.any():
            drows = rows if with_district.all() else {c: a[with_district] for c, a in rows.items()}
            dist = self._touch(drows, drows["dist"], new_corr[with_district], final_lo, final_hi, self._district_v)
        if not emit:
            return _EMPTY, _EMPTY
        windows = self._entity_frame(ent) if ent is not None else _EMPTY
        districts = self._district_frame(dist) if dist is not None else _EMPTY
        return windows, districts

    def _touch(self, rows, key_codes, new_corr, final_lo, final_hi, table: _VersionTable) -> _Touched | None:
        """Version bumps of the (window, key) groups of `rows`: +1 when the window became final
        now and the group has on-time content, +1 per correction event of this batch."""
        hop_ms = self.spec.hop * 1000
        gkey = (rows["ws"] // hop_ms) * _CODE_SPACE + key_codes
        keys, codes = np.unique(gkey, return_inverse=True)
        codes = codes.reshape(-1)
        g = len(keys)
        ontime = np.bincount(codes, weights=~rows["corr"], minlength=g) > 0
        ncorr = np.bincount(codes, weights=new_corr, minlength=g).astype(np.int64)
        gws = (keys // _CODE_SPACE) * hop_ms
        inc = ((gws > final_lo) & (gws <= final_hi) & ontime).astype(np.int64) + ncorr
        bumped = inc > 0
        if not bumped.any():
            return None
        versions = table.bump(keys[bumped], inc[bumped])
        if bumped.all():
            return _Touched(keys, versions, codes, rows)
        row_sel = bumped[codes]
        renumber = np.cumsum(bumped) - 1
        return _Touched(keys[bumped], versions, renumber[codes[row_sel]], {c: a[row_sel] for c, a in rows.items()})

    def _entity_frame(self, t: _Touched) -> pa.Table:
        cols = aggregate_groups(Groups(t.codes, len(t.keys), t.rows, self.spec.size_s), self.aggregates)
        cols["district"] = self._dist.decode(_last_per_group(t.codes, t.rows["dist"], len(t.keys)))
        return self._frame(t, "entity", self._ent, cols)

    def _district_frame(self, t: _Touched) -> pa.Table:
        cols = partial_aggregate_groups(Groups(t.codes, len(t.keys), t.rows, self.spec.size_s), self.aggregates)
        return self._frame(t, "district", self._dist, cols)

    def _frame(self, t: _Touched, key: str, names: _Codes, cols: dict[str, Any]) -> pa.Table:
        """One row per emitted group in its table's declared columns (times as epoch ms): the
        key, window geometry, version, is_correction, partition and the aggregates `cols`."""
        g = len(t.keys)
        window, code = np.divmod(t.keys, _CODE_SPACE)
        window_start = window * (self.spec.hop * 1000)
        row = {
            "source": _repeat(self.source, g),
            "window_start": window_start,
            key: names.decode(code),
            **cols,
            "version": t.versions.astype(np.int32),
            "window_end": window_start + self.spec.size_s * 1000,
            "window_size_s": np.full(g, self.spec.size_s, dtype=np.int32),
            "hop_s": np.full(g, self.spec.hop, dtype=np.int32),
            "is_correction": np.bincount(t.codes, weights=t.rows["corr"], minlength=g) > 0,
            "kafka_partition": np.full(g, self.partition, dtype=np.int32),
        }
        return pa.table({name: row[name] for name in self._columns_of[key]})

    def _late_rows(self, table: pa.Table, ts, running, pair_event, ws, late) -> pa.Table:
        """The late (event, window) pairs as rows: the event's columns, window_start, lateness_s."""
        pairs = np.flatnonzero(late)
        event = pairs if pair_event is None else pair_event[pairs]
        rows = table.take(pa.array(event))
        rows = rows.set_column(rows.schema.get_field_index("ts"), "ts", pa.array(ts[event]))
        return rows.append_column("window_start", pa.array(ws[pairs])).append_column(
            "lateness_s", pa.array((running[:-1][event] - ts[event]) / 1000.0))

    def _compact_codes(self) -> None:
        """Forget the codes of entities and districts that no longer have open windows."""
        state = self._state
        for column, names, versions in (("ent", self._ent, self._entity_v), ("dist", self._dist, self._district_v)):
            remap = names.compact(state.get(column, np.empty(0, dtype=np.int64)))
            versions.remap(remap)
            if state:
                state[column] = remap[state[column]]
        self._compact_at = max(100_000, 4 * (len(self._ent.names) + len(self._dist.names)))


def _repeat(text: str, n: int) -> pa.Array:
    return pa.nulls(n, pa.large_string()).fill_null(text)


def _last_per_group(codes: np.ndarray, values: np.ndarray, g: int) -> np.ndarray:
    """Per group, the last non-negative value in row order (-1 if none)."""
    out = np.full(g, -1, dtype=np.int64)
    present = values >= 0
    if present.any():
        rc, rv = codes[present][::-1], values[present][::-1]
        groups, first = np.unique(rc, return_index=True)
        out[groups] = rv[first]
    return out
