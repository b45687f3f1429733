"""Silence of an entity while its Kafka partition goes on: shared by traffic dropout and Wi-Fi
AP down. A function of the event-time data only, not of how records were batched.

Definition. Take the partition's windows as they end up (every entity, every version counted
once). An entity is silent from the end `e` of one of its windows when its next window starts
at or after `e + silence` (or never comes), and the partition went on: some window of the
partition starts in [e + silence, next). One alert per silence, id from (kind, entity, e); its
district is the entity's last window before the silence. A reader can check every alert
against the `windows` table alone.

Why windows wait. A window can still appear or change until the watermark passes its end by
the grace period (an event arriving late, within grace, re-emits it or creates it). Deciding a
silence before then made the answer depend on where batches were cut: on sparse, reordered
readings one cut saw the late window that fills a gap before deciding, another after, and
silences were re-raised (602, 651 or 586 dropout rows for the same 580 silences of 600
records, depending on the batch size). So the worker passes `closed_until_ms` (watermark -
size - grace: windows starting at or before it can no longer change, streams/windows.py) and
a window reaches the silence logic only once it is closed; until then it waits in the state
(`pend_*`, at most PENDING per entity). Closed windows reach it in window-start order, batch
after batch, so "some window started after due" is the same question whatever the cuts. The
price: a silence is raised `size + grace` later than the partition's own clock would allow
(traffic: after about 21 min instead of 10). Without `closed_until_ms` (offline runs over final
windows, unit tests) every window counts as closed at once.

State arrays: end, partition and district of the entity's last closed window, the silence
already alerted, its pending windows (start, district) and window size; extras: the latest
closed window start per partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.districts import DISTRICTS
from streams.detectors.base import Alerts, DetectorState, utc_minute

log = logging.getLogger(__name__)

PENDING = 16  # windows an entity may have waiting to close: (size + grace + lateness) / hop, traffic 12
SILENCE_WIDTHS = {"seen_end": 1, "seen_partition": 1, "seen_district": 1, "seen_alerted": 1,
                  "pend_start": PENDING, "pend_district": PENDING, "pend_size": 1}
SILENCE_EXTRAS = "partition_max"
_PART_SHIFT = np.int64(1) << np.int64(44)  # partition * 2**44 + window_start (ms < 2**44 until 2527)
_DISTRICTS = pa.array(DISTRICTS, pa.string())

# raise(entity, district or None, silence start ms, partition)
Raise = Callable[[str, "str | None", float, int], None]


class WaitsForClosedWindows(Protocol):
    """A detector (attribute `waits_for_closed_windows = True`) told, per batch, the newest
    window start that can no longer change (streams.alerts.PartitionAlerts passes it)."""

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None,
               closed_until_ms: float | None = None) -> pa.Table: ...


def silence_alerts(windows: pa.Table, source: str, state: DetectorState, silence_s: float, raise_: Raise,
                   closed_until_ms: float | None = None) -> None:
    """Add this batch's windows of `source` (the window engine's rows, any version) to the
    pending ones, pass those now closed (start <= `closed_until_ms`; None: all) through the
    silence rule in start order and call `raise_` once for each new silence (see module doc)."""
    new = _batch_windows(windows, source, state)
    rows = _merge_pending(state, new)
    closed = np.ones(len(rows[0]), dtype=bool) if closed_until_ms is None else rows[1] <= closed_until_ms
    closed |= _overflow(rows[0], closed)
    _keep_pending(state, rows, ~closed)
    _sweep(state, tuple(a[closed] for a in rows), silence_s * 1000.0, raise_)


def add_silences(alerts: Alerts, windows: pa.Table, source: str, state: DetectorState, silence_s: float,
                 closed_until_ms: float | None, what: str) -> None:
    """`silence_alerts` raising each silence into `alerts`: window_start = the silence's start,
    window_end = when it was due, score = the silence in minutes, no value; evidence
    '<what> since <time> for >= <n> min while partition <p> went on'."""

    def raise_(entity: str, district: str | None, start: float, partition: int) -> None:
        alerts.add(entity, district, int(start), int(start + silence_s * 1000), np.nan, np.nan, silence_s / 60.0,
                   f"{what} since {utc_minute(start)} for >= {silence_s / 60:.0f} min while partition "
                   f"{partition} went on")

    silence_alerts(windows, source, state, silence_s, raise_, closed_until_ms)


def _batch_windows(windows: pa.Table, source: str, state: DetectorState) -> tuple[np.ndarray, ...]:
    """(code, start, end, district code, partition) per window of the batch, newest version
    only, sorted by code and start."""
    if windows.num_rows and "source" in windows.column_names:
        windows = windows.filter(pc.equal(windows.column("source"), source))
    if windows.num_rows == 0:
        return tuple(np.empty(0, np.int64 if k == 0 else np.float64) for k in range(5))
    codes = state.encode(windows.column("entity"))
    ws = windows.column("window_start").to_numpy().astype(np.float64)
    we = windows.column("window_end").to_numpy().astype(np.float64)
    n = len(ws)
    version = (windows.column("version").to_numpy().astype(np.float64) if "version" in windows.column_names
               else np.zeros(n))
    part = (windows.column("kafka_partition").to_numpy(zero_copy_only=False).astype(np.float64)
            if "kafka_partition" in windows.column_names else np.zeros(n))
    dist = np.full(n, np.nan)
    if "district" in windows.column_names:
        idx = pc.index_in(windows.column("district").cast(pa.string()), value_set=_DISTRICTS)
        dist = idx.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    order = np.lexsort((-version, ws, codes))
    codes, ws = codes[order], ws[order]
    first = np.r_[True, (codes[1:] != codes[:-1]) | (ws[1:] != ws[:-1])]
    keep = order[first]
    state["seen_partition"][codes[first], 0] = part[keep]  # an entity stays on its partition
    return codes[first], ws[first], we[keep], dist[keep], part[keep]


def _merge_pending(state: DetectorState, new: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The windows still pending from earlier batches and this batch's, one per (entity,
    start) (the batch's version wins: it is newer), sorted by code and start."""
    n = len(state)
    starts = state["pend_start"][:n]
    ent, slot = np.nonzero(np.isfinite(starts))
    ps = starts[ent, slot]
    pending = (ent.astype(np.int64), ps, ps + state["pend_size"][ent, 0], state["pend_district"][ent, slot],
               state["seen_partition"][ent, 0])
    if not len(ent):
        return new
    if not len(new[0]):
        return pending
    both = tuple(np.concatenate((a, b)) for a, b in zip(new, pending, strict=True))
    newer = np.r_[np.zeros(len(new[0])), np.ones(len(ps))]
    order = np.lexsort((newer, both[1], both[0]))
    c, s = both[0][order], both[1][order]
    first = np.r_[True, (c[1:] != c[:-1]) | (s[1:] != s[:-1])]
    return tuple(a[order][first] for a in both)


def _overflow(codes: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """Pending windows beyond PENDING per entity (the oldest): closed early, with a warning.
    Only a window geometry with (size + grace + lateness) / hop > PENDING gets here; its
    silences then depend on batching again."""
    if not len(codes):
        return closed
    group_end = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True])
    ends = np.repeat(group_end, np.diff(np.r_[-1, group_end]))
    over = ~closed & (ends - np.arange(len(codes)) >= PENDING)
    if over.any():
        log.warning("silence: %d windows of %d entities waited beyond %d per entity; closed early (window hop "
                    "too small for the grace period: silences may depend on batching)",
                    int(over.sum()), len(np.unique(codes[over])), PENDING)
    return over


def _keep_pending(state: DetectorState, rows: tuple[np.ndarray, ...], pending: np.ndarray) -> None:
    n = len(state)
    state["pend_start"][:n] = np.nan
    state["pend_district"][:n] = np.nan
    codes, ws, we, dist, _ = (a[pending] for a in rows)
    if not len(codes):
        return
    group_start = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    pos = np.arange(len(codes)) - np.repeat(group_start, np.diff(np.r_[group_start, len(codes)]))
    state["pend_start"][codes, pos] = ws
    state["pend_district"][codes, pos] = dist
    state["pend_size"][codes, 0] = we - ws


def _sweep(state: DetectorState, rows: tuple[np.ndarray, ...], silence: float, raise_: Raise) -> None:
    """The silence rule over closed windows (sorted by code, start; later than every closed
    window of earlier batches): silences closed by a window in this batch, then those still
    open once the partition's closed windows have passed their due time."""
    codes, ws, we, dist, part = rows
    pmax: dict[str, float] = state.extras.setdefault(SILENCE_EXTRAS, {})
    # a window that is not after the entity's last closed one (re-delivered, or late input
    # without a closing horizon) says nothing new
    seen = state["seen_end"][codes, 0]
    fresh = ~(we <= seen)
    codes, ws, we, dist, part = codes[fresh], ws[fresh], we[fresh], dist[fresh], part[fresh]
    fire = np.zeros(len(codes), dtype=bool)
    prev_end = np.empty(0)
    if len(codes):
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        prior = np.array([pmax.get(str(int(p)), -np.inf) for p in part.tolist()])
        prev_end = np.r_[np.nan, we[:-1]]
        prev_end[starts] = state["seen_end"][codes[starts], 0]
        prev_dist = np.r_[np.nan, dist[:-1]]
        prev_dist[starts] = state["seen_district"][codes[starts], 0]
        due = prev_end + silence
        ipart = part.astype(np.int64)
        key = ipart * _PART_SHIFT + ws.astype(np.int64)
        sorted_keys = np.sort(key)
        lo = np.searchsorted(sorted_keys, ipart * _PART_SHIFT + np.nan_to_num(due, nan=0).astype(np.int64))
        hi = np.searchsorted(sorted_keys, key)  # a window of the partition in [due, this start)
        went_on = (prior >= due) | (hi > lo)
        fire = (ws >= due) & went_on & (state["seen_alerted"][codes, 0] != prev_end)
        for i in np.flatnonzero(fire):
            raise_(state.codes.names[codes[i]], _district(prev_dist[i]), float(prev_end[i]), int(part[i]))
        last = np.r_[starts[1:] - 1, len(codes) - 1]
        c = codes[last]
        state["seen_end"][c, 0] = we[last]
        state["seen_district"][c, 0] = dist[last]
        state["seen_partition"][c, 0] = part[last]
        for p in np.unique(ipart).tolist():
            pmax[str(p)] = max(pmax.get(str(p), -np.inf), float(ws[ipart == p].max()))
        # before the open check below: it must see these as alerted (a later silence of the
        # same entity may be open already)
        last_fire = np.flatnonzero(fire)
        state["seen_alerted"][codes[last_fire], 0] = prev_end[last_fire]
    # silences still open after this batch
    n = len(state)
    end = state["seen_end"][:n, 0]
    p_of = state["seen_partition"][:n, 0]
    clock = np.array([pmax.get(str(int(p)), -np.inf) if np.isfinite(p) else -np.inf for p in p_of.tolist()])
    open_fire = (clock >= end + silence) & (state["seen_alerted"][:n, 0] != end)
    for code in np.flatnonzero(open_fire):
        raise_(state.codes.names[code], _district(state["seen_district"][code, 0]), float(end[code]),
               int(p_of[code]))
        state["seen_alerted"][code, 0] = end[code]


def _district(code: float) -> str | None:
    return DISTRICTS[int(code)] if np.isfinite(code) else None
