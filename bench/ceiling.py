"""The ceiling case (a child process): a raw aiokafka consumer, `getmany` batches, orjson into
pyarrow tables and the window aggregates (pyarrow group_by), then discarded. No validation, no
landing: the least any implementation of cityflow's job must spend per event.

It gets the two process-level settings the cityflow worker uses (aiokafka's raw records,
streams/fetch.py; the raised young GC threshold), so that it stays a ceiling: without them
it spends more per event on the client and the collector than the worker does.

    python -m bench.ceiling --bootstrap H:P --events N --min-seconds 20 --out result.json

It reads the preloaded topics from the start, again and again (seeking back after each complete
pass of N events) until `--min-seconds` have passed, so the run is long enough to be stable.
Timing starts at the first record and ends after the last batch is processed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bench.procstat import SelfUsage
from bench.workload import decode_values, window_aggregates
from contracts.registry import CONTRACTS
from contracts.settings import load_settings
from streams.fetch import install as install_raw_fetch
from streams.fetch import raise_gc_threshold, raw_value

FETCH_RECORDS = 5000


async def consume(bootstrap: str, events: int, min_seconds: float, group: str, group_timeout_s: float) -> dict:
    source_of = {c.topic: s for s, c in CONTRACTS.items()}
    install_raw_fetch()
    raise_gc_threshold(load_settings().gc_young_threshold)
    consumer = AIOKafkaConsumer(
        *source_of, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=FETCH_RECORDS,
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
        session_timeout_ms=int(group_timeout_s * 1000), rebalance_timeout_ms=int(group_timeout_s * 1000),
        heartbeat_interval_ms=1_000, value_deserializer=raw_value,
    )
    await consumer.start()
    try:
        done = in_pass = passes = 0
        t0 = 0.0
        usage0 = SelfUsage.now()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=FETCH_RECORDS)
            for tp, records in batches.items():
                if not done:
                    t0, usage0 = time.perf_counter(), SelfUsage.now()
                values = [r.value for r in records]
                window_aggregates(source_of[tp.topic], decode_values(source_of[tp.topic], values))
                done += len(records)
                in_pass += len(records)
            if in_pass >= events:  # a complete pass (end offsets are unreliable on Tansu)
                passes += 1
                if time.perf_counter() - t0 >= min_seconds:
                    break
                in_pass = 0
                await consumer.seek_to_beginning()
        seconds = time.perf_counter() - t0
        usage = SelfUsage.now()
        return {"events": done, "seconds": seconds, "cpu_s": usage.cpu_s - usage0.cpu_s,
                "peak_rss_mb": usage.peak_rss_mb, "passes": passes}
    finally:
        await consumer.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--events", type=int, required=True, help="records preloaded over all topics")
    p.add_argument("--min-seconds", type=float, default=20.0)
    p.add_argument("--group", default=f"bench-ceiling-{uuid.uuid4().hex[:8]}")
    p.add_argument("--group-timeout", type=float, default=10.0, help="session and rebalance timeout, s")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    result = asyncio.run(consume(args.bootstrap, args.events, args.min_seconds, args.group, args.group_timeout))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
