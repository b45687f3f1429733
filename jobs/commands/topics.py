"""`cityflow topics create|describe|lag`: create every cityflow topic as configured (idempotent,
mismatched partition counts reported), show what the cluster has, and show per partition the
group's committed offset, the lake's landed offset and the end offset (streams/topics.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobs.commands import help_when_bare
from jobs.commands.verify import format_rows


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create, describe and show the lag of cityflow's Kafka topics")
    actions = p.add_subparsers(dest="topics_action", metavar="ACTION")
    c = actions.add_parser(
        "create", help="create every cityflow topic (sources, DLQ, anomalies) as configured; safe to re-run",
        description="Create the missing topics with CITYFLOW_PARTITIONS partitions, "
        "CITYFLOW_TOPIC_REPLICATION_FACTOR replicas and CITYFLOW_TOPIC_RETENTION_HOURS retention. Existing "
        "topics are left alone; one with another partition count is reported and the exit code is 1.")
    c.set_defaults(func=run_create)
    d = actions.add_parser("describe", help="partitions, replication, leaders and configs of every cityflow topic")
    d.set_defaults(func=run_describe)
    lag = actions.add_parser(
        "lag", help="per partition: committed offset, lake's landed offset, end offset",
        description="The lake's landed offset (from the landing checkpoints) is what cityflow has durably "
        "written; lag = end offset - landed. On the embedded broker the end offset under-reports, so the "
        "lag there is approximate.")
    lag.add_argument("--group", default=None, help="consumer group (default: the workers', <CITYFLOW_GROUP_ID>-ingest)")
    lag.set_defaults(func=run_lag)
    help_when_bare(p)


def _config(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from contracts.settings import SettingsError, load_settings
    from streams.broker import kafka_client_config

    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise SettingsError("CITYFLOW_KAFKA_BOOTSTRAP is not set: point it at your Kafka (host:port)")
    return settings, kafka_client_config(settings)


def run_create(args: argparse.Namespace) -> int:
    from streams.topics import create_topics, topic_specs

    settings, config = _config(args)
    results = create_topics(config, topic_specs(settings))  # BrokerUnreachable: one line, exit 1 (jobs/cli.py)
    print(format_rows(["topic", "status", "detail"], [[r.name, r.status, r.detail] for r in results]))
    bad = [r for r in results if r.status in ("mismatch", "failed")]
    if bad:
        print(f"error: {len(bad)} topic(s) not as configured: {', '.join(r.name for r in bad)}", file=sys.stderr)
        return 1
    return 0


def run_describe(args: argparse.Namespace) -> int:
    from streams.topics import describe_topics, topic_specs

    settings, config = _config(args)
    topics = describe_topics(config, list(topic_specs(settings)))
    rows: list[list[object]] = []
    for t in topics:
        if not t.exists:
            rows.append([t.name, "-", "-", "missing (cityflow topics create)", "-"])
            continue
        configs = ", ".join(f"{k}={v}" for k, v in sorted(t.configs.items()) if k in ("retention.ms", "cleanup.policy",
                                                                                     "min.insync.replicas")) or "-"
        rows.append([t.name, t.partitions, t.replication, "ok" if t.leaders_ok else "partition without leader", configs])
    print(format_rows(["topic", "partitions", "replication", "leaders", "configs"], rows))
    return 0 if all(t.exists and t.leaders_ok for t in topics) else 1


def run_lag(args: argparse.Namespace) -> int:
    from contracts import lake as L
    from streams.topics import consumer_lag, topic_specs

    settings, config = _config(args)
    group = args.group or f"{settings.group_id}-ingest"
    rows = consumer_lag(config, L.Lake(settings.lake), group, topic_specs(settings))

    def show(v: int | None) -> object:
        return "-" if v is None else v

    print(format_rows(["group", "topic", "partition", "committed", "landed", "end", "lag"],
                      [[r.group, r.topic, r.partition, show(r.committed), show(r.landed), show(r.end), show(r.lag)]
                       for r in rows]))
    total = sum(r.lag or 0 for r in rows)
    print(f"total lag (end - landed): {total:,} records over {len(rows)} partitions; landed = the lake's "
          "checkpoints (exact), end = the broker's (approximate on the embedded broker)")
    return 0
