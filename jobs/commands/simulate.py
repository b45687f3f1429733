"""`cityflow simulate`: send simulated Duisburg device readings to Kafka, paced at a rate in
real time or as fast as possible (to preload topics for a benchmark), optionally with labelled
incidents (`--incidents`, labels to `--labels`)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from kafka.errors import KafkaError

from contracts.settings import load_settings
from streams.broker import (
    BrokerUnreachable,
    city_topics,
    ensure_topics,
    kafka_client_config,
    quiet_kafka_client_logs,
)
from streams.incidents import (
    SUPPORTED_KINDS,
    IncidentLabel,
    IncidentPlacementError,
    IncidentPlan,
    UnsupportedIncident,
    labels_lines,
    parse_kinds,
)
from streams.simulator import (
    SOURCES,
    Disorder,
    DisorderLog,
    ProduceError,
    generate,
    produce_fast,
    produce_paced,
)

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="send simulated traffic, lighting, Wi-Fi, logistics and supply readings to Kafka",
        description="Generate deterministic city readings (same --seed, same events) and send "
        "them to the city.<source>.v1 topics. Paced at --rate events per second unless --fast.",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second (1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="run length in seconds (60)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (42)")
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="city seconds per wall second, e.g. 60 = an hour per minute (1)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="send rate*seconds events as fast as possible, event times ending now",
    )
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        default=None,
        help="Kafka bootstrap (default: CITYFLOW_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help=f"comma-separated sources ({','.join(SOURCES)})",
    )
    parser.add_argument("--jitter-s", type=float, default=0.0,
                        help="delay every event by up to this many city seconds (out of order, on time)")
    parser.add_argument("--correction-fraction", type=float, default=0.0,
                        help="share of events held back into their window's grace period (corrections)")
    parser.add_argument("--late-fraction", type=float, default=0.0,
                        help="share of events held back beyond grace (land in late_events)")
    parser.add_argument(
        "--incidents",
        metavar="KIND[,KIND...]",
        default=None,
        help="inject labelled incidents of these kinds, or 'all' "
        f"({','.join(SUPPORTED_KINDS)})",
    )
    parser.add_argument(
        "--labels",
        metavar="FILE",
        default=None,
        help="write the incidents' labels here (JSON lines; a JSON list if FILE ends in .json)",
    )
    parser.add_argument(
        "--incident-rate",
        type=float,
        default=1.0,
        help="incidents of each kind per simulated day, at least one per run (1)",
    )
    parser.add_argument(
        "--incident-warmup-h",
        type=float,
        default=0.0,
        help="city hours before the first incident, so detector baselines are warm (0)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="generate (and inject, and write --labels) but send nothing; no Kafka needed",
    )
    parser.set_defaults(func=run_simulate)


def incident_plan(args: argparse.Namespace) -> IncidentPlan | None:
    """The --incidents options as a plan (None without --incidents); raises
    UnsupportedIncident or ValueError with a message for the user."""
    if not getattr(args, "incidents", None):
        if getattr(args, "labels", None):
            raise ValueError("--labels needs --incidents")
        return None
    kinds = tuple(parse_kinds(args.incidents))
    return IncidentPlan(kinds, args.incident_rate, args.incident_warmup_h * 3600.0)


def write_labels(path: str, labels: list[IncidentLabel]) -> None:
    """Labels as a JSON list (FILE.json) or JSON lines (anything else)."""
    target = Path(path)
    if target.suffix == ".json":
        target.write_bytes(orjson.dumps([lb.to_json() for lb in labels], option=orjson.OPT_INDENT_2))
    else:
        target.write_text(labels_lines(labels))


def run_simulate(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not getattr(args, "verbose", False):
        quiet_kafka_client_logs()
    try:
        plan = incident_plan(args)
    except ValueError as exc:  # UnsupportedIncident is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    labels: list[IncidentLabel] = []
    if getattr(args, "dry_run", False):
        return _dry_run(args, plan, labels)
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    if not bootstrap:
        print(
            "error: no Kafka to send to: pass --bootstrap HOST:PORT or set "
            "CITYFLOW_KAFKA_BOOTSTRAP (`cityflow broker` starts one)",
            file=sys.stderr,
        )
        return 2
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        print(
            f"error: unknown --sources {unknown}; choose from {','.join(SOURCES)}", file=sys.stderr
        )
        return 2
    if args.rate <= 0 or args.seconds <= 0 or args.speedup <= 0:
        print("error: --rate, --seconds and --speedup must be > 0", file=sys.stderr)
        return 2
    config = kafka_client_config(settings, bootstrap=bootstrap)
    disorder = None
    disorder_log = DisorderLog()
    if args.jitter_s or args.correction_fraction or args.late_fraction:
        disorder = Disorder(args.jitter_s, args.correction_fraction, args.late_fraction, seed=args.seed)

    def progress(counts: dict[str, int]) -> None:
        log.info("sent events=%d", sum(counts.values()))

    started = time.monotonic()
    try:
        ensure_topics(config, city_topics(settings.partitions))
        produce = produce_fast if args.fast else produce_paced
        counts = produce(
            args.seed,
            args.rate,
            args.seconds,
            args.speedup,
            producer_config=config,
            progress=progress,
            sources=sources,
            disorder=disorder,
            disorder_log=disorder_log,
            settings=settings,  # hold events back by the CITYFLOW_WINDOW_* geometry in force
            incidents=plan,
            labels_out=labels,
        )
    except (BrokerUnreachable, ProduceError, TimeoutError, KafkaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (IncidentPlacementError, UnsupportedIncident) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report_labels(args, labels)
    elapsed = time.monotonic() - started
    total = sum(counts.values())
    for source, n in counts.items():
        print(f"{source:10s} {n:>10,d}")
    print(
        f"{'total':10s} {total:>10,d} events in {elapsed:.1f}s = {total / elapsed:,.0f} events/s "
        f"to {bootstrap}"
    )
    if disorder is not None:
        print(f"held back: {len(disorder_log.corrections):,} into grace (corrections), "
              f"{len(disorder_log.late):,} beyond grace (late events)")
    return 0


def _report_labels(args: argparse.Namespace, labels: list[IncidentLabel]) -> None:
    if args.labels:
        write_labels(args.labels, labels)
    if labels:
        kinds = len({lb.kind for lb in labels})
        where = f" -> {args.labels}" if args.labels else ""
        print(f"injected {len(labels)} incidents of {kinds} kinds{where}")


def _dry_run(args: argparse.Namespace, plan: IncidentPlan | None, labels: list[IncidentLabel]) -> int:
    """Generate and inject without sending: counts per source, and the labels file."""
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    counts: dict[str, int] = {}
    try:
        for event in generate(args.seed, args.rate, args.seconds, args.speedup, None, sources,
                              plan, labels):
            counts[event.source] = counts.get(event.source, 0) + 1
    except ValueError as exc:  # unknown sources, bad numbers, incidents that do not fit
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for source, n in counts.items():
        print(f"{source:10s} {n:>10,d}")
    print(f"{'total':10s} {sum(counts.values()):>10,d} events generated (dry run, nothing sent)")
    _report_labels(args, labels)
    return 0
