"""`python -m bench` (`make bench`): the benchmark harness of issue #8. Prints the table and
writes bench/results/latest.json. See bench/harness.py for what is run and how it is timed.

    make bench                                   # the defaults: ~2M events, >= 20 s per case
    make bench BENCH_ARGS="--events 500000 --soak-minutes 10"
    make bench BENCH_ARGS="--worker-env CITYFLOW_FETCH_MAX_RECORDS=50000"   # try a setting
    python -m bench --cases peers                # Quix, Bytewax and cityflow on the traffic windows only
    python -m bench --cases warehouse --warehouse-lake /var/tmp/bench-lake  # report timings alone
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from bench.harness import CASE_GROUPS, BenchConfig, run_all, say
from bench.report import format_table, summarise, write_json
from streams.broker import quiet_kafka_client_logs

DEFAULT_OUT = Path(__file__).parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> tuple[BenchConfig, argparse.Namespace]:
    d = BenchConfig()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=d.events, help=f"events to preload (default {d.events:,})")
    p.add_argument("--case-seconds", type=float, default=d.case_seconds,
                   help="minimum run of the ceiling, time budget of the Faust agents (default %(default)s)")
    p.add_argument("--partitions", type=int, default=d.partitions, help="partitions per source topic (default %(default)s)")
    p.add_argument("--flush-seconds", type=float, default=d.flush_seconds,
                   help="CITYFLOW_FLUSH_SECONDS for the cityflow workers (default: the worker's own)")
    p.add_argument("--latency-rate", type=float, default=d.latency_rate, help="events/s of the latency case")
    p.add_argument("--latency-seconds", type=float, default=d.latency_seconds)
    p.add_argument("--latency-flush-seconds", type=float, default=d.latency_flush_seconds,
                   help="CITYFLOW_FLUSH_SECONDS of the latency case (default %(default)s)")
    p.add_argument("--warehouse-events", type=int, default=d.warehouse_events,
                   help="events in the warehouse lake (default: the demo's rate over --warehouse-days, ~57.6M for 30)")
    p.add_argument("--warehouse-days", type=int, default=d.warehouse_days)
    p.add_argument("--warehouse-lake", type=Path, default=None, metavar="DIR",
                   help="keep the warehouse lake in DIR and reuse it on the next run with the same "
                        "events/days/partitions (landing it at the demo rate takes a while)")
    p.add_argument("--soak-minutes", type=float, default=d.soak_minutes,
                   help="run the memory soak for this many minutes after warm-up (default: off)")
    p.add_argument("--soak-warmup-minutes", type=float, default=d.soak_warmup_minutes)
    p.add_argument("--soak-rate", type=float, default=d.soak_rate)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--group-timeout", type=float, default=d.group_timeout_s,
                   help="consumer session/rebalance timeout in s for every case (default: the worker's; "
                        "Tansu joins take about half of it)")
    p.add_argument("--worker-env", action="append", default=[], metavar="CITYFLOW_NAME=VALUE",
                   help="a setting for every cityflow worker of the run (repeatable)")
    p.add_argument("--cases", default=",".join(CASE_GROUPS),
                   help="comma-separated groups of cases to run (default: all of %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default bench/results/latest.json)")
    p.add_argument("--workdir", type=Path, default=None, help="keep logs and lakes here (default: a temp dir, removed)")
    args = p.parse_args(argv)
    worker_env = []
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("CITYFLOW_"):
            p.error(f"--worker-env expects CITYFLOW_NAME=VALUE, got {item!r}")
        worker_env.append((name, value))
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    if unknown := [c for c in cases if c not in CASE_GROUPS] or (not cases and ["(none)"]):
        p.error(f"--cases: unknown {unknown}; choose from {','.join(CASE_GROUPS)}")
    cfg = BenchConfig(
        events=args.events, case_seconds=args.case_seconds, partitions=args.partitions,
        flush_seconds=args.flush_seconds, latency_rate=args.latency_rate, latency_seconds=args.latency_seconds,
        latency_flush_seconds=args.latency_flush_seconds,
        warehouse_events=args.warehouse_events, warehouse_days=args.warehouse_days,
        warehouse_lake=str(args.warehouse_lake) if args.warehouse_lake else None,
        soak_minutes=args.soak_minutes, soak_warmup_minutes=args.soak_warmup_minutes,
        soak_rate=args.soak_rate, seed=args.seed, group_timeout_s=args.group_timeout,
        worker_env=tuple(worker_env), cases=cases,
    )
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet_kafka_client_logs()  # connection errors while a broker stops are expected
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cityflow-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"work directory (logs, lakes): {workdir}")
    try:
        results = summarise(run_all(cfg, workdir))
    except BaseException:
        say(f"failed; logs kept in {workdir}")
        raise
    write_json(results, args.out)
    print(format_table(results))
    print(f"\nresults: {args.out}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
