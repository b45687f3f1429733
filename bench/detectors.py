"""What the anomaly detectors cost the worker per batch (issue 13): the sink's `add` (window
engine + detectors) and `flush` (which now also lands alerts and the detector state) on
50,000-event batches of one partition, with the detectors off and on.

    python -m bench.detectors [--sources traffic,wifi] [--batches 4]

Each source's fleet reports at its nominal interval, so a batch spans several windows of
every entity, as in a worker catching up a backlog (the worst case for the detectors: most
window rows per event). The first batch is left out (engine and baselines warming up).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from bench.warehouse_case import disable_fsync
from contracts.decode import DecodeLimits
from contracts.lake import Lake
from contracts.registry import CONTRACTS
from contracts.windows import window_geometry
from streams.batch import RecordBatch, process_records
from streams.simulator import NOMINAL_INTERVAL_S, encode, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine

BATCH = 50_000


def batches(source: str, n_batches: int, devices: int) -> list[RecordBatch]:
    span_s = BATCH * n_batches * NOMINAL_INTERVAL_S[source] / devices
    speedup = span_s / 60
    start = datetime.now(UTC) - timedelta(seconds=span_s + 3600)
    events = [encode(e) for e in generate(seed=1, rate=BATCH * n_batches / 60, seconds=60, speedup=speedup,
                                           start=start, sources=(source,))]
    topic = CONTRACTS[source].topic
    return [RecordBatch(topic, 0, list(range(i, i + BATCH)), [k for k, _ in events[i:i + BATCH]],
                        [v for _, v in events[i:i + BATCH]]) for i in range(0, len(events) - BATCH + 1, BATCH)]


def run(source: str, records: list[RecordBatch], detectors_on: bool) -> tuple[list[float], list[float], int, int]:
    contract = CONTRACTS[source]
    limits = DecodeLimits(max_future=timedelta(minutes=5), max_age=timedelta(days=7))
    processed = [process_records(contract, rb, limits=limits) for rb in records]
    with tempfile.TemporaryDirectory() as root:
        engine = WindowEngine(window_geometry(source), source, 0)
        sink = PartitionSink(Lake(root), contract, 0, engine, detectors=None if detectors_on else {})
        sink.recover()
        add_s, flush_s, window_rows, alerts = [], [], 0, 0
        for batch in processed:
            t = time.perf_counter()
            out = sink.add(batch)
            add_s.append(time.perf_counter() - t)
            window_rows += out.windows.num_rows
            t = time.perf_counter()
            result = sink.flush()
            flush_s.append(time.perf_counter() - t)
            if result is not None and result.anomalies is not None:
                alerts += result.anomalies.num_rows
    return add_s[1:], flush_s[1:], window_rows, alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=",".join(CONTRACTS))
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--devices", type=int, default=5000, help="entities on the partition")
    args = parser.parse_args()
    disable_fsync()
    print(f"per {BATCH:,}-event batch, one partition, {args.devices} entities; median ms (batches 2..{args.batches})")
    print(f"{'source':<10} {'windows/batch':>13} {'add off':>8} {'add on':>8} {'+add':>7} "
          f"{'flush off':>9} {'flush on':>9} {'alerts':>6}")
    for source in args.sources.split(","):
        records = batches(source, args.batches, args.devices)
        add_off, flush_off, windows, _ = run(source, records, detectors_on=False)
        add_on, flush_on, _, alerts = run(source, records, detectors_on=True)
        ms = [1000 * float(np.median(x)) for x in (add_off, add_on, flush_off, flush_on)]
        print(f"{source:<10} {windows // len(records):>13,} {ms[0]:>8.1f} {ms[1]:>8.1f} {ms[1] - ms[0]:>+7.1f} "
              f"{ms[2]:>9.1f} {ms[3]:>9.1f} {alerts:>6}")


if __name__ == "__main__":
    main()
