"""The benchmark workload: N simulated events preloaded into the city topics before any timing,
and the window aggregates the competitor cases compute (per batch with pyarrow, or per event in
plain Python), so every case does the same job as cityflow's window engine.

    >>> plan = PreloadPlan.for_events(2_000_000)     # one day of city time, ending now
    >>> counts = preload(bootstrap, plan)            # {'traffic': 900000, ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts.aggregates import AGGREGATES, Aggregate
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS
from streams.simulator import SHARE, SOURCES, produce_fast

# Event time covered by the preloaded topics: one day, so fleets and windows look like a city's
# (N = 2M gives ~600 traffic detectors reporting every minute) and nothing is older than the
# contracts' max event age.
SPAN_S = 86_400
_GEN_SECONDS = 100.0  # the simulator's "wall" seconds; rate = N / this, speedup = span / this
# Two producer processes: kafka-python is CPU-bound (~20k msg/s each here).
_PRODUCER_GROUPS: tuple[tuple[str, ...], ...] = (("traffic",), tuple(s for s in SOURCES if s != "traffic"))
TS = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class PreloadPlan:
    """What to preload: about `events` readings spread over `span_s` of city time from `start`."""

    events: int
    start: datetime
    seed: int = 8
    span_s: int = SPAN_S

    @classmethod
    def for_events(cls, events: int, seed: int = 8, span_s: int = SPAN_S) -> PreloadPlan:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=span_s)
        return cls(events, start, seed, span_s)

    @property
    def rate(self) -> float:
        return self.events / _GEN_SECONDS

    @property
    def speedup(self) -> float:
        return self.span_s / _GEN_SECONDS


def _produce_group(args: tuple[str, PreloadPlan, tuple[str, ...]]) -> dict[str, int]:
    bootstrap, plan, sources = args
    share = sum(SHARE[s] for s in sources)
    return produce_fast(
        plan.seed, plan.rate * share, _GEN_SECONDS, plan.speedup,
        producer_config={"bootstrap_servers": bootstrap}, start=plan.start, sources=sources,
    )


def preload(bootstrap: str, plan: PreloadPlan) -> dict[str, int]:
    """Produce the plan's events (kafka-python, lz4, 512 KiB batches) with one producer process
    per source group; return the counts per source as acknowledged by the broker."""
    jobs = [(bootstrap, plan, group) for group in _PRODUCER_GROUPS]
    with ProcessPoolExecutor(len(jobs), mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_produce_group, jobs))
    counts: dict[str, int] = {}
    for r in results:
        counts.update(r)
    return {s: counts[s] for s in SOURCES if counts.get(s)}


# -- the same aggregates, batch-wise (pyarrow) -------------------------------------------------
def decode_schema(source: str) -> pa.Schema:
    """The contract's columns as they arrive in JSON (timestamps still strings)."""
    return pa.schema([pa.field(f.name, pa.string() if f.type == "timestamp" else f.arrow_type)
                      for f in CONTRACTS[source].fields])


_SCHEMAS = {s: decode_schema(s) for s in CONTRACTS}


def decode_values(source: str, values: Sequence[bytes]) -> pa.Table:
    """orjson per value, then one Arrow table for the batch (no validation)."""
    table = pa.Table.from_pylist([orjson.loads(v) for v in values], schema=_SCHEMAS[source])
    return table.set_column(table.schema.get_field_index("ts"), "ts", table.column("ts").cast(TS))


def _input_column(table: pa.Table, agg: Aggregate) -> pa.Array:
    if agg.fn == "count":
        return pa.nulls(table.num_rows, pa.int8()).fill_null(1)
    column = table.column(agg.field)
    if agg.fn == "count_eq":
        return pc.fill_null(pc.equal(column, agg.value), False).cast(pa.int64())
    return column


_HASH_FN = {"count": "sum", "count_eq": "sum", "sum": "sum", "mean": "mean", "max": "max",
            "min": "min", "energy_wh": "mean", "p95": "tdigest"}


def window_aggregates(source: str, table: pa.Table) -> pa.Table:
    """Per-entity tumbling-window aggregates of one batch (pyarrow group_by): the declared
    aggregates of contracts/aggregates.py; a window spanning batches gives one partial per batch."""
    contract, size_s = CONTRACTS[source], WINDOW_DEFAULTS[source].size_s
    ws = pc.floor_temporal(table.column("ts"), multiple=size_s, unit="second")
    cols: dict[str, Any] = {"entity": table.column(contract.key), "window_start": ws}
    spec = []
    for agg in AGGREGATES[source]:
        cols[agg.name] = _input_column(table, agg)
        fn = _HASH_FN[agg.fn]
        opts = pc.TDigestOptions(q=0.95) if fn == "tdigest" else None
        spec.append((agg.name, fn, opts) if opts else (agg.name, fn))
    out = pa.table(cols).group_by(["entity", "window_start"], use_threads=False).aggregate(spec)
    names = []
    for name in out.column_names:
        base = name.rsplit("_", 1)[0] if name not in ("entity", "window_start") else name
        names.append(base)
    out = out.rename_columns(names)
    for agg in AGGREGATES[source]:
        i = out.schema.get_field_index(agg.name)
        if agg.fn == "energy_wh":
            out = out.set_column(i, agg.name, pc.multiply(out.column(i), size_s / 3600.0))
        elif agg.fn == "p95":
            out = out.set_column(i, agg.name, pc.list_element(out.column(i), 0))
    return out


# -- the same aggregates, per event (plain Python) ---------------------------------------------
class PerEventWindows:
    """What a plain Faust agent does: update per-window Python accumulators one event at a time;
    closed windows (behind the max event time by size + lateness) are finished on `drain`."""

    def __init__(self, source: str):
        self.source = source
        self.key = CONTRACTS[source].key
        self.size_ms = WINDOW_DEFAULTS[source].size_s * 1000
        self.lateness_ms = WINDOW_DEFAULTS[source].allowed_lateness_s * 1000
        self.aggs = AGGREGATES[source]
        self.open: dict[tuple[str, int], list[Any]] = {}
        self.max_ts = 0

    def add(self, record: dict[str, Any]) -> None:
        ts = int(datetime.fromisoformat(record["ts"]).timestamp() * 1000)
        self.max_ts = max(self.max_ts, ts)
        wkey = (record[self.key], ts - ts % self.size_ms)
        acc = self.open.get(wkey)
        if acc is None:
            acc = self.open[wkey] = [[] if a.fn == "p95" else [0, 0, None] for a in self.aggs]
        for a, slot in zip(self.aggs, acc):
            if a.fn == "count":
                slot[0] += 1
            elif a.fn == "count_eq":
                slot[0] += record.get(a.field) == a.value
            elif a.fn == "p95":
                if record.get(a.field) is not None:  # optional fields (travel_time_s) may be absent
                    slot.append(record[a.field])
            else:
                v = record.get(a.field)
                if v is None:
                    continue
                slot[0] += v
                slot[1] += 1
                if a.fn == "max":
                    slot[2] = v if slot[2] is None else max(slot[2], v)
                elif a.fn == "min":
                    slot[2] = v if slot[2] is None else min(slot[2], v)

    def drain(self) -> list[dict[str, Any]]:
        """Finish and forget the windows the max event time has closed."""
        closed_before = self.max_ts - self.lateness_ms - self.size_ms
        rows = []
        for wkey in [k for k in self.open if k[1] <= closed_before]:
            acc = self.open.pop(wkey)
            row: dict[str, Any] = {"entity": wkey[0], "window_start": wkey[1]}
            for a, slot in zip(self.aggs, acc):
                row[a.name] = self._finish(a, slot)
            rows.append(row)
        return rows

    def _finish(self, a: Aggregate, slot: list[Any]) -> Any:
        if a.fn == "p95":
            vals = sorted(v for v in slot if v is not None)
            if not vals:
                return None
            pos = 0.95 * (len(vals) - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, len(vals) - 1)
            return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)
        if a.fn in ("count", "count_eq", "sum"):
            return slot[0]
        if a.fn in ("max", "min"):
            return slot[2]
        mean = slot[0] / slot[1] if slot[1] else None
        if a.fn == "energy_wh" and mean is not None:
            return mean * self.size_ms / 3_600_000
        return mean


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write one Parquet file (zstd, like the lake)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
