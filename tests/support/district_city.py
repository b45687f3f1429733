"""A small simulated city for the district kinds, with one labelled incident of each: 7 traffic
detectors (one per district) over 3.2 days from a Monday (two weekdays warm the congestion
baselines), and, over the last 1.2 days, 28 lamps and 5 trucks; then a lamp fault cluster in
the evening and a congestion corroborated by crawling trucks in the day (streams.incidents).
Also lands such events through real PartitionSinks (no broker) for the stage tests."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from contracts import lake as L
from contracts.decode import DecodeLimits
from contracts.registry import CONTRACTS
from contracts.windows import window_geometry
from streams.batch import RecordBatch, process_records
from streams.incidents import CORROBORATED, FAULT_CLUSTER, IncidentLabel, inject
from streams.simulator import SimEvent, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine

DAYS = 3.2
LATE_DAYS = 1.2  # lamps and trucks only report in the last LATE_DAYS (fewer events)
MAX_AGE_DAYS = 16  # the run lies 8-14 days back (a whole weekday run), older than the default 7
LIMITS = DecodeLimits(max_future=timedelta(minutes=5), max_age=timedelta(days=MAX_AGE_DAYS))


def monday_start(now: datetime | None = None) -> datetime:
    """Local midnight of the Monday 8-14 days before `now`, in UTC."""
    berlin = ZoneInfo("Europe/Berlin")
    local = (now or datetime.now(UTC)).astimezone(berlin) - timedelta(days=8)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return monday.astimezone(UTC)


def _source(source: str, devices: int, start: datetime, days: float, seed: int) -> list[SimEvent]:
    """`devices` devices of one source at its nominal interval for `days` from `start`."""
    span_s = days * 86_400
    interval = {"traffic": 60, "lighting": 60, "logistics": 20}[source]
    seconds = 60.0
    rate = devices * span_s / interval / seconds
    return list(generate(seed, rate, seconds, span_s / seconds, start, (source,)))


def district_city(start: datetime, kinds: Sequence[str] = (FAULT_CLUSTER, CORROBORATED),
                  seed: int = 5) -> tuple[list[SimEvent], list[IncidentLabel]]:
    """The events (event-time order) and labels; `kinds=()` gives the incident-free city."""
    late = start + timedelta(days=DAYS - LATE_DAYS)
    traffic = _source("traffic", 7, start, DAYS, seed)
    lamps = _source("lighting", 28, late, LATE_DAYS, seed)
    trucks = _source("logistics", 5, late, LATE_DAYS, seed)
    labels: list[IncidentLabel] = []
    warmup = (DAYS - LATE_DAYS) * 86_400 + 3600
    if FAULT_CLUSTER in kinds:
        lamps, found = inject(lamps, [FAULT_CLUSTER], seed, rate_per_day=1 / LATE_DAYS, warmup_s=3600)
        labels += found
    cross = sorted(traffic + trucks, key=lambda e: e.ts_ms)
    if CORROBORATED in kinds:
        cross, found = inject(cross, [CORROBORATED], seed, rate_per_day=1 / LATE_DAYS, warmup_s=warmup)
        labels += found
    events = sorted(cross + lamps, key=lambda e: e.ts_ms)
    return events, sorted(labels, key=lambda lb: (lb.start_ms, lb.kind, lb.entity))


def lamp_events(start: datetime, hours: float = 12.0, seed: int = 5) -> list[SimEvent]:
    """Only the 28 lamps for `hours` from `start`, no incident."""
    return _source("lighting", 28, start, hours / 24, seed)


def lamp_city(start: datetime, hours: float = 12.0, seed: int = 5) -> tuple[list[SimEvent], list[IncidentLabel]]:
    """`lamp_events` with one fault cluster (in the local evening when `start` is a local
    noon): the quick case."""
    return inject(lamp_events(start, hours, seed), [FAULT_CLUSTER], seed, rate_per_day=24 / hours, warmup_s=3600)


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def land_city(lake: L.Lake, events: Sequence[SimEvent], partitions: int = 2, batch: int = 5000) -> None:
    """Land the events as `partitions` partitions per source through real PartitionSinks (window
    engine, every default per-partition detector, exactly-once flushes), a flush per batch."""
    now = datetime.fromtimestamp(max(e.ts_ms for e in events) / 1000 + 120, UTC)
    by_tp: dict[tuple[str, int], list[SimEvent]] = {}
    for e in events:
        by_tp.setdefault((e.source, partition_of(e.key, partitions)), []).append(e)
    for source in sorted({e.source for e in events}):
        contract = CONTRACTS[source]
        for p in range(partitions):
            mine = by_tp.get((source, p), [])
            engine = WindowEngine(window_geometry(source), source, p)
            sink = PartitionSink(lake, contract, p, engine)
            for a in range(0, len(mine), batch):
                chunk = mine[a:a + batch]
                rb = RecordBatch(contract.topic, p, list(range(a, a + len(chunk))), [e.key.encode() for e in chunk],
                                 [orjson.dumps(e.record) for e in chunk])
                sink.add(process_records(contract, rb, now=now, limits=LIMITS))
                sink.flush()
