"""`cityflow demo`: the whole pipeline on this machine in one command — embedded broker,
simulator, workers, Parquet lake, DuckDB warehouse and the daily report."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from contracts.lake import Lake
from contracts.settings import SettingsError, load_settings

DEMO_MARKER = ".cityflow-demo-lake"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run broker + simulator + workers, land Parquet, print a report")
    p.add_argument("--seconds", type=float, default=40, help="simulator wall-clock seconds (default 40)")
    p.add_argument("--rate", type=float, default=2000, help="events per second (default 2000)")
    p.add_argument("--speedup", type=float, default=90, help="city time per wall time (default 90)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.set_defaults(func=run)


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def prepare_lake(lake_dir: Path) -> None:
    """Start from an empty demo lake; never delete a lake the demo did not create."""
    if lake_dir.exists() and any(lake_dir.iterdir()):
        if not (lake_dir / DEMO_MARKER).exists():
            raise SettingsError(
                f"CITYFLOW_LAKE={lake_dir} holds data not written by the demo; point CITYFLOW_LAKE "
                "at an empty directory for the demo (it replaces its own lake on every run)"
            )
        shutil.rmtree(lake_dir)
    lake_dir.mkdir(parents=True, exist_ok=True)
    (lake_dir / DEMO_MARKER).write_text("written by `cityflow demo`; replaced on the next run\n")


def run(args: argparse.Namespace) -> int:
    import duckdb

    from jobs.runner import WorkerProcess, wait_until_landed
    from streams.broker import EmbeddedBroker, city_topics, ensure_topics, kafka_client_config
    from streams.simulator import produce_paced
    from warehouse.db import build_warehouse, configured_window_sizes
    from warehouse.report import daily_report, format_report

    settings = load_settings()
    if "://" in settings.lake:
        raise SettingsError("the demo writes a local lake; unset CITYFLOW_LAKE or give a path")
    lake_dir = Path(settings.lake).resolve()
    state_dir = Path(settings.datadir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    prepare_lake(lake_dir)
    t_start = time.monotonic()

    broker = None
    bootstrap = settings.kafka_bootstrap
    workers: list[WorkerProcess] = []
    try:
        if bootstrap:
            say(f"using Kafka at {bootstrap} (CITYFLOW_KAFKA_BOOTSTRAP)")
        else:
            say("starting the embedded Kafka-compatible broker (Tansu)...")
            broker = EmbeddedBroker()
            broker.start(log_path=state_dir / "broker.log")
            bootstrap = broker.bootstrap
            say(f"broker up at {bootstrap} (log: {state_dir / 'broker.log'})")
        client = kafka_client_config(settings, bootstrap)
        ensure_topics(client, city_topics(settings.partitions))

        for i in range(args.workers):
            w = WorkerProcess(bootstrap, str(lake_dir), state_dir / f"worker-{i}.log", name=f"worker-{i}")
            workers.append(w.start())
        say(f"started {args.workers} worker(s); waiting for partition assignment...")
        for w in workers:
            st = w.wait_ready(timeout=90)
            say(f"{w.name} ready with {len(st.get('partitions', []))} partitions (metrics: http://127.0.0.1:{w.web_port}/metrics)")

        say(f"simulating {args.rate:.0f} events/s for {args.seconds:.0f} s "
            f"({args.seconds * args.speedup / 60:.0f} min of city time, seed {args.seed})...")
        t0 = time.monotonic()
        sent = produce_paced(args.seed, args.rate, args.seconds, args.speedup, client,
                             progress=lambda c: print(f"\r[demo] sent {sum(c.values()):>8,}", end="", flush=True))
        print()
        total = sum(sent.values())
        say(f"sent {total:,} events in {time.monotonic() - t0:.1f} s: {sent}")

        last = [0.0]

        def progress(landed: dict[str, int]) -> None:
            if time.monotonic() - last[0] > 1:
                last[0] = time.monotonic()
                print(f"\r[demo] landed {sum(landed.values()):>8,} / {total:,}", end="", flush=True)

        landed = wait_until_landed(str(lake_dir), sent, timeout=180, workers=workers, progress=progress)
        print()
        say(f"all {sum(landed.values()):,} events landed (raw + quarantine) in {lake_dir}")
        for w in workers:
            w.stop()
        workers.clear()

        try:
            views = build_warehouse(str(lake_dir), Path(settings.warehouse_db), configured_window_sizes(settings))
        except duckdb.IOException as exc:
            print(f"error: cannot write the warehouse {settings.warehouse_db} (is a duckdb session "
                  f"holding it open? close it and run again): {exc}", file=sys.stderr)
            return 1
        say(f"warehouse {settings.warehouse_db} built with {len(views)} views")
        from warehouse.db import connect

        con = connect(settings)
        print(format_report(daily_report(con, lake=Lake(settings.lake))))
        say(f"done in {time.monotonic() - t_start:.0f} s. Try: cityflow query \"SELECT * FROM traffic_1m LIMIT 5\"")
        return 0
    finally:
        for w in workers:
            w.stop()
        if broker is not None:
            broker.stop()
            say("broker stopped")
