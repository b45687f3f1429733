"""Micro-benchmarks behind the optimisation proposals of issue #8 (Part 2): each one checks a
prototype against the code it would replace on the benchmark's own workload, then times both.

    python -m bench.micro                 # decode, window aggregates, batch size
    python -m bench.micro --fetch         # also: per-partition batch sizes getmany delivers

- decode:   contracts.decode.decode_batch vs bench.prototypes.decode_batch_fast
- windows:  streams.windows.aggregate_groups vs bench.prototypes.aggregate_groups_np, on the
            exact frames the window engine passes it while processing the workload
- batch:    events/s of the whole hot path (bench.profile_worker) by records per partition batch
- combined: the whole hot path with both prototypes patched in, at 5000 and 16000 per batch
- fetch:    what `getmany(max_records=5000)` hands the ingest service per partition on Tansu
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd

import streams.windows as W
from bench.profile_worker import Workload, build_workload, run_pipeline
from bench.prototypes import aggregate_groups_np, decode_batch_fast
from bench.warehouse_case import disable_fsync
from contracts.decode import decode_batch
from contracts.lake import Lake
from contracts.registry import CONTRACTS


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Best wall seconds of `repeat` runs (micro-benchmarks: the least disturbed run)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_decode(w: Workload, batch: int = 5000) -> None:
    print(f"decode_batch, {batch} records per batch (us/record; same output checked):")
    now = datetime.now(UTC)
    for source, contract in CONTRACTS.items():
        busiest = max((tp for tp in w.records if tp[0] == source), key=lambda tp: len(w.records[tp]))
        values = [v for _, v in w.records[busiest][:batch]]
        a, b = decode_batch(contract, values, now), decode_batch_fast(contract, values, now)
        assert a.good.equals(b.good) and np.array_equal(a.good_positions, b.good_positions) and a.rejects == b.rejects
        bad = [*values[:-1], b'{"not": "in the contract"}']  # one bad record: the fallback path
        c, d = decode_batch(contract, bad, now), decode_batch_fast(contract, bad, now)
        assert c.good.equals(d.good) and c.rejects == d.rejects and len(d.rejects) == 1
        t_old = best_of(lambda c=contract, v=values: decode_batch(c, v, now))
        t_new = best_of(lambda c=contract, v=values: decode_batch_fast(c, v, now))
        t_bad = best_of(lambda c=contract, v=bad: decode_batch_fast(c, v, now), 3)
        n = len(values)
        print(f"  {source:<10} current {t_old / n * 1e6:6.2f}  fast {t_new / n * 1e6:6.2f}  "
              f"x{t_old / t_new:4.1f}   (batch with a bad record: {t_bad / n * 1e6:6.2f}, falls back)")


def capture_aggregate_calls(w: Workload, batch: int) -> list[tuple]:
    """The (rows, keys, aggregates, size_s) arguments the window engine passes to
    aggregate_groups while the workload runs through the hot path."""
    calls: list[tuple] = []
    original = W.aggregate_groups

    def recording(rows, keys, aggregates, size_s):  # type: ignore[no-untyped-def]
        calls.append((rows.copy(), list(keys), aggregates, size_s))
        return original(rows, keys, aggregates, size_s)

    W.aggregate_groups = recording
    try:
        run_pipeline(w, batch, Lake(tempfile.mkdtemp(prefix="cityflow-micro-")))
    finally:
        W.aggregate_groups = original
    return calls


def bench_window_aggregates(w: Workload, batch: int = 5000) -> None:
    calls = capture_aggregate_calls(w, batch)
    print(f"window aggregates per emitted batch ({len(calls)} calls captured at {batch} records per "
          "partition batch; same output checked):")
    for rows, keys, aggs, size_s in calls:
        expect = W.aggregate_groups(rows, keys, aggs, size_s)
        got = aggregate_groups_np(rows, keys, aggs, size_s)
        pd.testing.assert_frame_equal(got, expect, check_dtype=False, check_index_type=False, rtol=1e-9)
    by_source: dict[str, list[tuple]] = {}
    for call in calls:
        by_source.setdefault(_source_of(call[2]), []).append(call)
    for source, group in by_source.items():
        rows_n = statistics.median(len(c[0]) for c in group)
        t_old = sum(best_of(lambda c=c: W.aggregate_groups(*c), 3) for c in group)
        t_new = sum(best_of(lambda c=c: aggregate_groups_np(*c), 3) for c in group)
        print(f"  {source:<10} {len(group):4d} calls, median {rows_n:6.0f} rows: pandas {t_old / len(group) * 1e3:6.2f} ms/call  "
              f"numpy {t_new / len(group) * 1e3:6.2f} ms/call  x{t_old / t_new:4.1f}")


def _source_of(aggregates) -> str:  # type: ignore[no-untyped-def]
    for source, aggs in W.AGGREGATES.items():
        if aggs is aggregates or tuple(aggs) == tuple(aggregates):
            return source
    return "?"


def bench_batch_size(w: Workload, sizes: tuple[int, ...] = (300, 1000, 2500, 5000, 20000)) -> None:
    print("whole hot path (process_records + windows + landing, no fsync) by records per partition batch:")
    for size in sizes:
        t = time.perf_counter()
        spent = run_pipeline(w, size, Lake(tempfile.mkdtemp(prefix="cityflow-micro-")))
        wall = time.perf_counter() - t
        per = "  ".join(f"{k.split()[0]} {v / w.events * 1e6:5.1f}" for k, v in spent.items())
        print(f"  batch {size:>6}: {w.events / wall:8,.0f} events/s   us/event: {per}")


def bench_combined(w: Workload, sizes: tuple[int, ...] = (5000, 16000)) -> None:
    """The whole hot path with both prototypes patched in (decode fast path, numpy window
    aggregates), at today's batch size and at getmany(max_records=50000)'s median."""
    import streams.batch as B

    print("whole hot path, current code vs both prototypes patched in:")
    for size in sizes:
        rates = []
        for patched in (False, True):
            saved = B.decode_batch, W.aggregate_groups
            if patched:
                B.decode_batch, W.aggregate_groups = decode_batch_fast, aggregate_groups_np
            try:
                t = time.perf_counter()
                run_pipeline(w, size, Lake(tempfile.mkdtemp(prefix="cityflow-micro-")))
                rates.append(w.events / (time.perf_counter() - t))
            finally:
                B.decode_batch, W.aggregate_groups = saved
        print(f"  batch {size:>6}: current {rates[0]:8,.0f} events/s   prototypes {rates[1]:8,.0f} events/s   "
              f"x{rates[1] / rates[0]:4.2f}")


def bench_fetch(events: int = 400_000, partitions: int = 4) -> None:
    """Preload a fresh broker and record the per-partition batch sizes getmany returns with the
    ingest service's consumer settings, and with a larger max_records."""
    from aiokafka import AIOKafkaConsumer

    from bench.workload import PreloadPlan, preload
    from streams.broker import EmbeddedBroker, city_topics, ensure_topics

    async def sizes(bootstrap: str, total: int, max_records: int) -> list[int]:
        c = AIOKafkaConsumer(*(x.topic for x in CONTRACTS.values()), bootstrap_servers=bootstrap,
                             group_id=f"micro-{max_records}-{time.time_ns()}", enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=max_records,
                             fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
                             session_timeout_ms=10_000, rebalance_timeout_ms=10_000, heartbeat_interval_ms=1_000)
        await c.start()
        out: list[int] = []
        try:
            while sum(out) < total:
                for records in (await c.getmany(timeout_ms=200, max_records=max_records)).values():
                    out.append(len(records))
        finally:
            await c.stop()
        return out

    with EmbeddedBroker().start() as broker:
        ensure_topics(broker.bootstrap, city_topics(partitions))
        total = sum(preload(broker.bootstrap, PreloadPlan.for_events(events)).values())
        print(f"per-partition batch sizes from getmany on {total:,} preloaded events ({partitions} partitions/topic):")
        for max_records in (5000, 50_000):
            s = np.array(asyncio.run(sizes(broker.bootstrap, total, max_records)))
            print(f"  max_records={max_records:>6}: {len(s)} batches, median {np.median(s):.0f}, "
                  f"p10 {np.percentile(s, 10):.0f}, p90 {np.percentile(s, 90):.0f}, "
                  f"share of events in batches < 1000: {s[s < 1000].sum() / s.sum():.0%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000, help="workload size (default %(default)s)")
    p.add_argument("--fetch", action="store_true", help="also measure getmany batch sizes on a broker")
    args = p.parse_args()
    disable_fsync()
    w = build_workload(args.events)
    bench_decode(w)
    bench_window_aggregates(w)
    bench_batch_size(w)
    bench_combined(w)
    if args.fetch:
        bench_fetch()


if __name__ == "__main__":
    main()
