"""The cityflow worker process: a Faust app hosting the batch ingest service, with metrics,
health and readiness pages on the Faust web server. A partition the ingest service cannot
recover stops the worker with WorkerFailed (`cityflow worker` exits 1 naming it)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contracts.registry import DLQ_TOPIC
from contracts.settings import Settings
from streams import metrics
from streams.dlq_monitor import SUMMARY_INTERVAL_S, DlqTally
from streams.ingest import IngestService, RecoveryFailed

log = logging.getLogger(__name__)


class WorkerFailed(RuntimeError):
    """The worker stopped because it could not do its work (a partition failed recovery)."""


def ingest_service(app: faust.App) -> IngestService | None:
    """The app's ingest service, once Faust has created it."""
    for s in app._extra_service_instances or ():
        if isinstance(s, IngestService):
            return s
    return None


def _stop_worker(failure: RecoveryFailed) -> None:
    """Stop the worker the way SIGTERM does (flush and commit what is owned, close clients),
    without waiting: this runs inside the consumer's rebalance listener, which the stop awaits.
    run_worker then turns the stop into WorkerFailed."""
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings, bootstrap: str, sources: tuple[str, ...], log_format: str = "text",
               loglevel: str = "info") -> faust.App:
    """Build the worker's Faust app (short group timeouts: see docs/architecture.md, broker quirk 2).
    With log_format 'json' Faust logs through our JSON formatter instead of its own format."""
    logging_config = None
    if log_format == "json":
        from jobs.logs import logging_dict

        logging_config = logging_dict("json", loglevel.upper())
    app = faust.App(
        f"{settings.group_id}-worker",
        broker=",".join(f"kafka://{b}" for b in bootstrap.split(",")),
        datadir=str(settings.datadir),
        web_port=settings.web_port,
        web_host=settings.web_host,
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        logging_config=logging_config,
    )

    service_cls = type(
        "Ingest", (IngestService,), {"settings": settings, "bootstrap": bootstrap, "sources": sources, "owner": app,
                                     "on_failure": staticmethod(_stop_worker)}
    )
    app.service(service_cls)

    # The DLQ monitor: a thin agent on city.dlq.v1 (low rate) that counts rejects by source
    # topic and reason across all workers and logs a summary. Quarantine Parquet is landed by
    # the ingest sink itself, in the same flush as the good rows (see streams/ingest.py).
    dlq_topic = app.topic(DLQ_TOPIC, key_serializer="raw", value_serializer="raw")
    tally = DlqTally()

    @app.agent(dlq_topic, name="dlq-monitor")
    async def dlq_monitor(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            tally.add(event.headers)

    @app.timer(interval=SUMMARY_INTERVAL_S)
    async def dlq_summary() -> None:
        line = tally.drain()
        if line:
            log.warning("dlq rejected records since last summary: %s", line)

    @app.page("/metrics")
    async def metrics_page(self, request):  # type: ignore[no-untyped-def]
        body = generate_latest(metrics.REGISTRY)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(self, request):  # type: ignore[no-untyped-def]
        svc = ingest_service(app)
        problem = svc.health_problem if svc is not None else None
        if problem is not None:
            return self.json({"status": "failing", "error": problem}, status=503)
        ok = svc is not None and not svc.should_stop
        return self.json({"status": "ok" if ok else "starting"}, status=200 if ok else 503)

    @app.page("/ready")
    async def ready_page(self, request):  # type: ignore[no-untyped-def]
        svc = ingest_service(app)
        ready = svc is not None and svc.assignments_seen > 0 and svc.health_problem is None
        body = {"ready": ready, "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in (svc.sinks if svc else {}))}
        return self.json(body, status=200 if ready else 503)

    return app


def run_worker(settings: Settings, bootstrap: str, sources: tuple[str, ...], loglevel: str = "info",
               log_format: str = "text") -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM; raise WorkerFailed if it
    stopped because a partition could not be recovered."""
    app = create_app(settings, bootstrap, sources, log_format, loglevel)
    # Faust installs its signal handlers part-way through start-up. A SIGTERM that arrives
    # before then is held and sent again once they are in, so it takes the graceful path too.
    held: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: held.append(signum))

    @app.task
    async def _deliver_held_signal() -> None:
        if held:
            log.info("SIGTERM arrived during start-up; stopping now")
            os.kill(os.getpid(), held[0])

    sys.argv = [
        "cityflow-worker", "--datadir", str(settings.datadir), *(["--quiet"] if log_format == "json" else []), "worker",
        "--web-port", str(settings.web_port), "--web-host", settings.web_host, "--loglevel", loglevel,
        "--without-web" if settings.web_port == 0 else "--with-web",
    ]
    try:
        app.main()
    finally:  # Faust ends with SystemExit(0) after any stop, also the one a failure asked for
        svc = ingest_service(app)
        if svc is not None and svc.failure is not None:
            raise WorkerFailed(str(svc.failure)) from None
