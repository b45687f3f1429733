"""The job the peer cases (Quix Streams, Bytewax) run, declared once: cityflow's traffic windows,
i.e. 60 s tumbling windows per detector by the event time `ts`, closed once the event time has
passed their end by the allowed lateness, carrying the aggregates contracts/aggregates.py
declares for traffic, one Parquet row per closed window.

    >>> acc = WindowAccumulator()
    >>> for r in ({"vehicle_count": 3, "avg_speed_kmh": 50.0}, {"vehicle_count": 0, "avg_speed_kmh": None}):
    ...     acc.add(r)
    >>> acc.result()["n_events"], acc.result()["avg_speed_kmh"], acc.result()["vehicle_count"]
    (2, 50.0, 3)

The peers only window: they do not validate or land raw rows, which cityflow does on the same
events (its `traffic_only` case).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from contracts.aggregates import AGGREGATES, Aggregate
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS

SOURCE = "traffic"
TOPIC = CONTRACTS[SOURCE].topic
KEY = CONTRACTS[SOURCE].key  # the Kafka key, one detector per key
SIZE_MS = WINDOW_DEFAULTS[SOURCE].size_s * 1000
GRACE_MS = WINDOW_DEFAULTS[SOURCE].allowed_lateness_s * 1000  # cityflow's watermark lag
AGGS: tuple[Aggregate, ...] = AGGREGATES[SOURCE]
# the functions traffic uses; the peers' mappings cover exactly these (checked at import)
SUPPORTED_FNS = frozenset({"count", "sum", "mean", "max", "min", "p95"})
if unsupported := {a.fn for a in AGGS} - SUPPORTED_FNS:
    raise ImportError(f"bench.peer_job: no peer mapping for aggregate functions {sorted(unsupported)}")
WINDOW_COLUMNS: tuple[str, ...] = ("entity", "window_start_ms", *(a.name for a in AGGS))

# Kafka's own defaults for a topic, set explicitly at creation: Tansu describes only the configs
# a topic was created with, and Quix Streams reads `retention.ms`/`retention.bytes` of its input
# topics (to configure its changelog topics) and fails without them.
KAFKA_DEFAULT_TOPIC_CONFIGS = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
}


def event_ms(record: dict[str, Any]) -> int:
    """The record's event time `ts` (ISO 8601, UTC) in epoch milliseconds."""
    return round(datetime.fromisoformat(record["ts"]).timestamp() * 1000)


def quantile_linear(values: list[float], q: float = 0.95) -> float | None:
    """Quantile with linear interpolation (DuckDB's quantile_cont, cityflow's p95); None if empty."""
    vals = sorted(values)
    if not vals:
        return None
    pos = q * (len(vals) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


class WindowAccumulator:
    """One window's aggregates, one event at a time (what a per-event windowing operator folds):
    null inputs are skipped, an aggregate without any valid input is None."""

    __slots__ = ("counts", "lists", "maxs", "mins", "n", "sums")

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.maxs: dict[str, float] = {}
        self.mins: dict[str, float] = {}
        self.lists: dict[str, list[float]] = {}

    def add(self, record: dict[str, Any]) -> WindowAccumulator:
        self.n += 1
        for a in AGGS:
            if a.fn == "count" or a.field is None:
                continue
            v = record.get(a.field)
            if v is None:
                continue
            if a.fn in ("sum", "mean"):
                self.sums[a.name] = self.sums.get(a.name, 0) + v
                self.counts[a.name] = self.counts.get(a.name, 0) + 1
            elif a.fn == "max":
                self.maxs[a.name] = max(self.maxs.get(a.name, v), v)
            elif a.fn == "min":
                self.mins[a.name] = min(self.mins.get(a.name, v), v)
            elif a.fn == "p95":
                self.lists.setdefault(a.name, []).append(v)
        return self

    def merge(self, other: WindowAccumulator) -> WindowAccumulator:
        """Combine two accumulators of one window (Bytewax merges when windows combine)."""
        self.n += other.n
        for k, v in other.sums.items():
            self.sums[k] = self.sums.get(k, 0) + v
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        for k, v in other.maxs.items():
            self.maxs[k] = max(self.maxs.get(k, v), v)
        for k, v in other.mins.items():
            self.mins[k] = min(self.mins.get(k, v), v)
        for k, vs in other.lists.items():
            self.lists.setdefault(k, []).extend(vs)
        return self

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in AGGS:
            if a.fn == "count":
                out[a.name] = self.n
            elif a.fn == "sum":
                out[a.name] = self.sums.get(a.name)
            elif a.fn == "mean":
                c = self.counts.get(a.name, 0)
                out[a.name] = self.sums[a.name] / c if c else None
            elif a.fn == "max":
                out[a.name] = self.maxs.get(a.name)
            elif a.fn == "min":
                out[a.name] = self.mins.get(a.name)
            elif a.fn == "p95":
                out[a.name] = quantile_linear(self.lists.get(a.name, []))
        return out
