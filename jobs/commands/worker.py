"""`cityflow worker`: run one stream worker (a Faust app) against CITYFLOW_KAFKA_BOOTSTRAP."""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from contracts.registry import CONTRACTS
from contracts.settings import SettingsError, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a stream worker (consume, validate, window, land Parquet)")
    p.add_argument("--sources", default=",".join(CONTRACTS),
                   help="comma-separated sources to consume (default: all four)")
    p.add_argument("--web-port", type=int, default=None, help="metrics/health port (0 = no web server)")
    p.add_argument("--bootstrap", default=None, help="Kafka host:port (default CITYFLOW_KAFKA_BOOTSTRAP)")
    p.set_defaults(func=run)


def check_web_port(host: str, port: int) -> None:
    """Stop with one line naming CITYFLOW_WEB_PORT when the web server's port is taken (most
    often: a second worker on this host), instead of Faust dying later with a traceback."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SettingsError(f"CITYFLOW_WEB_HOST={host}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SettingsError(
                    f"CITYFLOW_WEB_PORT={port}: {host}:{port} is already in use, probably by another cityflow "
                    f"worker on this host; give each worker its own port (CITYFLOW_WEB_PORT={port + 1} or "
                    f"--web-port {port + 1}; 0 = no web server)") from None
            raise SettingsError(f"CITYFLOW_WEB_HOST={host}, CITYFLOW_WEB_PORT={port}: cannot listen there "
                                f"({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    from streams.alerts import selected_detectors
    from streams.app import WorkerFailed, run_worker
    from streams.broker import city_topics, ensure_topics, kafka_client_config

    overrides: dict[str, object] = {}
    if args.web_port is not None:
        overrides["web_port"] = args.web_port
    settings = load_settings(**overrides)
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    if not bootstrap:
        raise SettingsError(
            "CITYFLOW_KAFKA_BOOTSTRAP is not set: point it at your Kafka (host:port), "
            "or start the embedded broker with `cityflow broker` and export the address it prints"
        )
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    unknown = [s for s in sources if s not in CONTRACTS]
    if unknown:
        raise SettingsError(f"--sources: unknown {unknown}; known: {list(CONTRACTS)}")
    # unknown kinds or bad overrides: SettingsError naming CITYFLOW_DETECTORS / _DETECTOR_<KIND>
    selected_detectors(settings.detectors, settings.detector_overrides, settings.detectors_tz)
    check_web_port(settings.web_host, settings.web_port)
    ensure_topics(kafka_client_config(settings, bootstrap), city_topics(settings.partitions))
    try:
        run_worker(settings, bootstrap, sources, loglevel="debug" if args.verbose else "info",
                   log_format=getattr(args, "log_format", None) or settings.log_format)
    except WorkerFailed as exc:
        print(f"cityflow worker: stopped: {exc}", file=sys.stderr)
        return 1
    return 0
