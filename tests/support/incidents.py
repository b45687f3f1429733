"""A simulated logistics partition with one clear, labelled incident (a reefer warming up),
fed through PartitionSinks without a broker, and the anomalies a lake holds, normalised for
comparing runs. Shared by the sink and the end-to-end anomaly tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
import pyarrow as pa

from contracts import lake as L
from contracts.decode import DecodeLimits
from contracts.registry import CONTRACTS
from contracts.tables import ANOMALIES
from contracts.windows import window_geometry
from streams.batch import ProcessedBatch, RecordBatch, process_records
from streams.simulator import SimEvent, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine

CONTRACT = CONTRACTS["logistics"]
LIMITS = DecodeLimits(max_future=timedelta(minutes=5), max_age=timedelta(days=7))
REEFER = "truck-0001"  # every fifth simulated truck is a reefer, starting with the first
COLD_CHAIN = "logistics.cold_chain"
# columns that depend on the wall clock or on how records were batched, not on what was detected
UNSTABLE = ["emitted_at", "detected_at"]


@dataclass(frozen=True)
class ColdChainIncident:
    vehicle: str
    start_ms: int
    end_ms: int
    temp_c: float = 12.0

    def apply(self, events: list[SimEvent]) -> list[SimEvent]:
        """The events with the vehicle's cargo at temp_c from start to end (a refrigeration
        unit failing: the simulator keeps reefers at 2-8 °C otherwise)."""
        return [SimEvent(e.source, e.key, e.ts_ms, {**e.record, "cargo_temp_c": self.temp_c})
                if e.key == self.vehicle and self.start_ms <= e.ts_ms < self.end_ms else e for e in events]


def logistics_city(start: datetime, incident: bool = True, seed: int = 4,
                   hours: float = 3.0) -> tuple[list[SimEvent], ColdChainIncident]:
    """Ten trucks reporting every ~20 s for `hours` from `start`; with `incident`, the reefer
    REEFER is at 12 °C for 40 minutes from one hour in."""
    span_s = hours * 3600
    events = list(generate(seed=seed, rate=span_s / 60, seconds=30, speedup=span_s / 30, start=start,
                           sources=("logistics",)))
    t0 = int(start.timestamp() * 1000) + 3_600_000
    label = ColdChainIncident(REEFER, t0, t0 + 40 * 60_000)
    return (label.apply(events) if incident else events), label


class Partition:
    """Simulated events as one Kafka partition's records, delivered to sinks in batches."""

    def __init__(self, events: list[SimEvent], now: datetime | None = None, partition: int = 0):
        self.keys = [e.key.encode() for e in events]
        self.values = [orjson.dumps(e.record) for e in events]
        self.n = len(events)
        self.partition = partition
        self.now = now or datetime.fromtimestamp(max(e.ts_ms for e in events) / 1000 + 600, UTC)

    def batch(self, start: int, stop: int) -> ProcessedBatch:
        rb = RecordBatch(CONTRACT.topic, self.partition, list(range(start, stop)),
                         self.keys[start:stop], self.values[start:stop])
        return process_records(CONTRACT, rb, now=self.now, limits=LIMITS)

    def sink(self, lake: L.Lake, writer: str = "w") -> PartitionSink:
        engine = WindowEngine(window_geometry(CONTRACT.source), CONTRACT.source, self.partition)
        return PartitionSink(lake, CONTRACT, self.partition, engine, writer=writer)

    def feed(self, sink: PartitionSink, start: int, batch_size: int, flush_every: int = 1,
             stop: int | None = None) -> None:
        """Deliver records[start:stop] in batches, flushing every `flush_every` batches and at the end."""
        stop = self.n if stop is None else stop
        for k, i in enumerate(range(start, stop, batch_size), 1):
            sink.add(self.batch(i, min(i + batch_size, stop)))
            if k % flush_every == 0:
                sink.flush()
        sink.flush()


def landed_anomalies(root: str | L.Lake, with_unstable: bool = False) -> pd.DataFrame:
    """Every anomalies row in the lake files (duplicates kept), by anomaly_id; without the
    wall-clock and batching-dependent columns unless `with_unstable`."""
    lake = root if isinstance(root, L.Lake) else L.Lake(str(root))
    files = list(lake.list_files(L.ANOMALIES))
    tables = [lake.read_table(f) for f in files] or [ANOMALIES.schema.empty_table()]  # none landed: no rows, same columns
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame = frame.drop(columns=[c for c in ("date", "hour") if c in frame.columns])
    if not with_unstable:
        frame = frame.drop(columns=UNSTABLE)
    return frame.sort_values(["anomaly_id"]).reset_index(drop=True)


def states_frame(sink: PartitionSink) -> dict[str, pd.DataFrame]:
    """Each detector's state as a frame, one row per entity, sorted by entity (entity codes
    follow arrival order, which batching changes; the state per entity may not)."""
    out = {}
    for kind, state in sink.alerts.states.items():
        frame = state.to_table().to_pandas()
        for c in frame.columns:
            if c != "entity":
                frame[c] = frame[c].map(lambda v: tuple(None if math.isnan(x) else float(x) for x in v))
        out[kind] = frame.sort_values("entity").reset_index(drop=True)
    return out
