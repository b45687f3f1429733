"""Micro-benchmarks of the hot path on the benchmark's own workload (issue #8, Part 2).

    python -m bench.micro                 # decode paths, batch size
    python -m bench.micro --fetch         # also: per-partition batch sizes getmany delivers

- decode:   the batch fast path (contracts/fastpath.py, what decode_batch uses when a batch is
            plainly valid) vs the record-by-record decoder it falls back to; same output checked
- batch:    events/s of the whole hot path (bench.profile_worker) by records per partition batch
- fetch:    what `getmany(max_records=N)` hands the ingest service per partition on Tansu
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from bench.profile_worker import Workload, build_workload, run_pipeline
from bench.warehouse_case import disable_fsync
from contracts.decode import DecodedBatch, DecodeLimits, _decode_checked, decode_batch
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


def _checked(contract, values, now):  # type: ignore[no-untyped-def]
    """The record-by-record decoder alone (the fallback of decode_batch)."""
    table, positions, rejects = _decode_checked(contract, values, now, DecodeLimits())
    return DecodedBatch(table, positions, rejects)


def bench_decode(w: Workload, batch: int = 5000) -> None:
    print(f"decode, {batch} records per batch (us/record; same output checked):")
    now = datetime.now(UTC)
    for source, contract in CONTRACTS.items():
        busiest = max((tp for tp in w.records if tp[0] == source), key=lambda tp: len(w.records[tp]))
        values = [v for _, v in w.records[busiest][:batch]]
        a, b = _checked(contract, values, now), decode_batch(contract, values, now)
        assert a.good.equals(b.good) and np.array_equal(a.good_positions, b.good_positions) and a.rejects == b.rejects
        bad = [*values[:-1], b'{"not": "in the contract"}']  # one bad record: the fallback path
        c, d = _checked(contract, bad, now), decode_batch(contract, bad, now)
        assert c.good.equals(d.good) and c.rejects == d.rejects and len(d.rejects) == 1
        t_old = best_of(lambda c=contract, v=values: _checked(c, v, now))
        t_new = best_of(lambda c=contract, v=values: decode_batch(c, v, now))
        t_bad = best_of(lambda c=contract, v=bad: decode_batch(c, v, now), 3)
        n = len(values)
        print(f"  {source:<10} record-by-record {t_old / n * 1e6:6.2f}  fast path {t_new / n * 1e6:6.2f}  "
              f"x{t_old / t_new:4.1f}   (batch with a bad record: {t_bad / n * 1e6:6.2f}, falls back)")


def bench_batch_size(w: Workload, sizes: tuple[int, ...] = (300, 1000, 2500, 5000, 20000)) -> None:
    print("whole hot path (process_records + windows + landing, no fsync) by records per partition batch:")
    for size in sizes:
        t = time.perf_counter()
        spent = run_pipeline(w, size, Lake(tempfile.mkdtemp(prefix="cityflow-micro-")))
        wall = time.perf_counter() - t
        per = "  ".join(f"{k.split()[0]} {v / w.events * 1e6:5.1f}" for k, v in spent.items())
        print(f"  batch {size:>6}: {w.events / wall:8,.0f} events/s   us/event: {per}")


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
    bench_batch_size(w)
    if args.fetch:
        bench_fetch()


if __name__ == "__main__":
    main()
