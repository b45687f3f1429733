"""Silence of an entity while its Kafka partition goes on: shared by traffic dropout and Wi-Fi
AP down. Vectorised over the batch (no steps needed) and independent of batching.

A silence starts at the end of an entity's last window; it is *due* `silence_s` later; it is
raised once a window of the same partition starts at or after the due time (the partition went
on, so the feed is alive and the entity is not). Windows of one partition reach the detectors
in window order across batches (a window is final when the watermark passes it), so "some
window started after due" is the same question whether it is asked inside one batch or across
several: the answer and the alert row do not depend on batching. One alert per silence.

State arrays (prefixed `seen_`): end of the last window, partition, district code, and the
silence already alerted; extras: the latest window start per partition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from contracts.districts import DISTRICTS
from streams.detectors.base import DetectorState, Rows

SILENCE_WIDTHS = {"seen_end": 1, "seen_partition": 1, "seen_district": 1, "seen_alerted": 1}
_PART_SHIFT = np.int64(1) << np.int64(44)  # partition * 2**44 + window_start (ms < 2**44 until 2527)

# raise(entity, district, silence start ms, partition, back at ms or None)
Raise = Callable[[str, "str | None", float, int, "float | None"], None]


def silence_alerts(rows: Rows, state: DetectorState, silence_s: float, raise_: Raise) -> None:
    """Find the silences of this batch's rows (closed ones and those still open) and call
    `raise_` for each new one; update the state. Call before anything else that moves the
    entity's state forward."""
    silence = silence_s * 1000.0
    pmax: dict[str, float] = state.extras.setdefault("partition_max", {})
    fire = np.zeros(len(rows), dtype=bool)
    prev_end = np.empty(0)
    if len(rows):
        prior = np.array([pmax.get(str(p), -np.inf) for p in rows.partition.tolist()])
        # silences closed inside this batch: previous window of the entity -> this one
        prev_end = np.r_[np.nan, rows.window_end[:-1].astype(np.float64)]
        prev_end[rows.starts] = state["seen_end"][rows.codes[rows.starts], 0]
        due = prev_end + silence
        key = rows.partition * _PART_SHIFT + rows.window_start
        sorted_keys = np.sort(key)
        lo = np.searchsorted(sorted_keys, rows.partition * _PART_SHIFT + np.nan_to_num(due, nan=0).astype(np.int64))
        hi = np.searchsorted(sorted_keys, key)
        went_on = (prior >= due) | (hi > lo)
        fire = (rows.window_start >= due) & went_on & (state["seen_alerted"][rows.codes, 0] != prev_end)
        for i in np.flatnonzero(fire):
            raise_(rows.entity[i], rows.district[i], prev_end[i], int(rows.partition[i]), float(rows.window_start[i]))
        last = rows.starts + rows.counts - 1
        c = rows.codes[last]
        state["seen_end"][c, 0] = rows.window_end[last]
        state["seen_partition"][c, 0] = rows.partition[last]
        state["seen_district"][c, 0] = [_district_code(rows.district[i]) for i in last]
        for p in np.unique(rows.partition).tolist():
            pmax[str(p)] = max(pmax.get(str(p), -np.inf), float(rows.window_start[rows.partition == p].max()))
    # silences still open after this batch
    n = len(state)
    end = state["seen_end"][:n, 0]
    part = state["seen_partition"][:n, 0]
    clock = np.array([pmax.get(str(int(p)), -np.inf) if np.isfinite(p) else -np.inf for p in part.tolist()])
    open_fire = (clock >= end + silence) & (state["seen_alerted"][:n, 0] != end)
    for code in np.flatnonzero(open_fire):
        d = state["seen_district"][code, 0]
        raise_(state.codes.names[code], DISTRICTS[int(d)] if np.isfinite(d) else None, end[code], int(part[code]), None)
        state["seen_alerted"][code, 0] = end[code]
    if len(rows):
        state["seen_alerted"][rows.codes[fire], 0] = prev_end[fire]


def _district_code(d: str | None) -> float:
    return float(DISTRICTS.index(d)) if d in DISTRICTS else np.nan
