"""`cityflow broker`: run the embedded Kafka-compatible broker (Tansu, in memory) with every
cityflow topic created, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import Any

from contracts.settings import load_settings
from streams.broker import (
    BrokerStartError,
    EmbeddedBroker,
    city_topics,
    ensure_topics,
    quiet_kafka_client_logs,
)

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run an embedded Kafka-compatible broker (Tansu, in-memory) for the demo and tests",
        description="Start the embedded broker, create the cityflow topics "
        "(CITYFLOW_PARTITIONS partitions each), print its address and run until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=None, help="listen port (default: a free one)")
    parser.set_defaults(func=run_broker)


class _Stop(Exception):
    """SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def run_broker(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not getattr(args, "verbose", False):
        quiet_kafka_client_logs()
    log_path = settings.datadir / "tansu.log"
    broker = EmbeddedBroker()
    try:
        broker.start(port=args.port, log_path=log_path)
    except BrokerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        topics = city_topics(settings.partitions)
        ensure_topics(broker.bootstrap, topics)
        print(f"Kafka broker (Tansu, in-memory) ready at {broker.bootstrap}, pid {broker.pid}")
        print(f"topics: {', '.join(sorted(topics))} ({settings.partitions} partitions each)")
        print(f"log: {broker.log_path}")
        print(f"use it with:  export CITYFLOW_KAFKA_BOOTSTRAP={broker.bootstrap}")
        print("Ctrl-C to stop; data lives in memory and is gone when the broker stops.", flush=True)
        code = broker.wait()
        print(
            f"error: the broker exited unexpectedly with code {code}; last lines of "
            f"{broker.log_path}:\n{broker.log_tail()}",
            file=sys.stderr,
        )
        return 1
    except (KeyboardInterrupt, _Stop):
        print("stopping the broker", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        broker.stop()
