"""Profile cityflow's hot path without Kafka: the benchmark's workload (one day of city time,
four partitions per source) cut into per-partition record batches, run through
streams.batch.process_records, PartitionSink.add (the window engine) and PartitionSink.flush,
timed per stage and optionally under cProfile.

    python -m bench.profile_worker --events 400000 --batch 5000 --cprofile 30
    python -m bench.profile_worker --batch 50000 --detectors 'none;all' --repeat 3   # detector cost
    python -m bench.profile_worker --cpu   # stages in process CPU seconds (a loaded machine)

`--detectors` takes CITYFLOW_DETECTORS specs separated by ';': each is run in turn, `--repeat`
times alternating, and the median events/s of each spec and its ratio to the first are printed
(ratios from one run, so they are fair on a noisy, shared machine).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import statistics
import tempfile
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.warehouse_case import disable_fsync
from bench.workload import SPAN_S
from contracts.lake import Lake
from contracts.registry import CONTRACTS
from contracts.windows import window_geometry
from streams.alerts import selected_detectors
from streams.batch import RecordBatch, process_records
from streams.simulator import encode, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine

_GEN_SECONDS = 100.0


@dataclass
class Workload:
    """Per (source, partition): keys and values in offset order."""

    start: datetime
    records: dict[tuple[str, int], list[tuple[bytes, bytes]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def events(self) -> int:
        return sum(len(r) for r in self.records.values())


def build_workload(events: int, partitions: int = 4, seed: int = 8, span_s: int = SPAN_S) -> Workload:
    """The preload's events (same simulator parameters), partitioned by key like the producer."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=span_s)
    w = Workload(start)
    for e in generate(seed, events / _GEN_SECONDS, _GEN_SECONDS, span_s / _GEN_SECONDS, start):
        key, value = encode(e)
        w.records[(e.source, zlib.crc32(key) % partitions)].append((key, value))
    return w


def batches(w: Workload, batch: int):
    """Record batches of `batch` per partition, interleaved round-robin like a consumer's fetches."""
    cursors = {tp: 0 for tp in w.records}
    while cursors:
        for tp in list(cursors):
            i = cursors[tp]
            recs = w.records[tp][i:i + batch]
            if not recs:
                del cursors[tp]
                continue
            cursors[tp] = i + len(recs)
            contract = CONTRACTS[tp[0]]
            yield tp, RecordBatch(contract.topic, tp[1], range(i, i + len(recs)),
                                  [k for k, _ in recs], [v for _, v in recs])


def run_pipeline(w: Workload, batch: int, lake: Lake, flush_rows: int = 50_000,
                 detectors: str = "all", clock=time.perf_counter) -> dict[str, float]:
    """Seconds spent per stage over the whole workload, with the detectors `detectors` names
    (a CITYFLOW_DETECTORS spec), by `clock` (time.process_time: the process's CPU seconds,
    which a loaded machine inflates far less than wall time)."""
    sinks: dict[tuple[str, int], PartitionSink] = {}
    spent = {"process_records": 0.0, "sink.add (windows)": 0.0, "sink.flush (landing)": 0.0}
    for tp, rb in batches(w, batch):
        sink = sinks.get(tp)
        if sink is None:
            src = tp[0]
            sink = sinks[tp] = PartitionSink(lake, CONTRACTS[src], tp[1], WindowEngine(window_geometry(src), src, tp[1]),
                                             detectors=selected_detectors(detectors))
        t0 = clock()
        pb = process_records(sink.contract, rb)  # checks keys, as the worker does
        t1 = clock()
        sink.add(pb)
        t2 = clock()
        if sink.buffered_rows >= flush_rows:
            sink.flush()
        t3 = clock()
        spent["process_records"] += t1 - t0
        spent["sink.add (windows)"] += t2 - t1
        spent["sink.flush (landing)"] += t3 - t2
    t = clock()
    for sink in sinks.values():
        sink.flush()
    spent["sink.flush (landing)"] += clock() - t
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=400_000)
    p.add_argument("--batch", type=int, default=5000, help="records per partition batch")
    p.add_argument("--fsync", action="store_true", help="keep fsync (default: off, to profile CPU work)")
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print the top N functions")
    p.add_argument("--detectors", default="all",
                   help="CITYFLOW_DETECTORS spec(s) to compare, separated by ';'")
    p.add_argument("--repeat", type=int, default=1, help="runs per spec, alternating")
    p.add_argument("--cpu", action="store_true",
                   help="time the stages in process CPU seconds, not wall seconds (fairer on a loaded machine)")
    args = p.parse_args()
    specs = args.detectors.split(";")
    w = build_workload(args.events)
    if not args.fsync:
        disable_fsync()
    rates: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeat):
        for spec in specs:
            root = tempfile.mkdtemp(prefix="cityflow-profile-")
            prof = cProfile.Profile() if args.cprofile else None
            t, cpu = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            spent = run_pipeline(w, args.batch, Lake(root), detectors=spec,
                                 clock=time.process_time if args.cpu else time.perf_counter)
            if prof:
                prof.disable()
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            rates[spec].append(w.events / wall)
            print(f"detectors={spec}: {w.events:,} events in batches of {args.batch} per partition: {wall:.2f}s, "
                  f"{w.events / wall:,.0f} events/s, {cpu / w.events * 1e6:.1f} CPU s per M events"
                  f"{' (under cProfile)' if prof else ''}")
            total = cpu if args.cpu else wall
            for stage, s in spent.items():
                print(f"  {stage:<24} {s:7.2f}s  {s / w.events * 1e6:6.1f} us/event  {s / total * 100:5.1f} %"
                      f"{' CPU' if args.cpu else ''}")
            if prof:
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)
            if len(specs) * args.repeat == 1:
                print(f"lake: {Path(root)}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    if len(specs) > 1:
        first = statistics.median(rates[specs[0]])
        for spec in specs:
            med = statistics.median(rates[spec])
            print(f"detectors={spec}: median {med:,.0f} events/s over {len(rates[spec])} run(s), "
                  f"{med / first:.2f} x detectors={specs[0]}")


if __name__ == "__main__":
    main()
