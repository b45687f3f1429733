"""`cityflow demo`: the whole pipeline on this machine in one command — embedded broker,
simulator with a few labelled incidents, workers with every anomaly detector on, Parquet lake,
DuckDB warehouse, the daily report, and which injected incidents the detectors found and how
fast (from the landed `anomalies` against the labels file).

Which incidents: the demo's city hour holds no time-of-day baseline (the congestion, energy,
auth-burst and latency detectors need two days of an hour before they judge one), and lamps
in daylight need a 62-min stretch at midday; so by default it injects the kinds whose rule
reads only the device's own last minutes (DEMO_KINDS), those whose pattern fits the span.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.lake import Lake
from contracts.settings import SettingsError, load_settings

if TYPE_CHECKING:
    import duckdb

    from streams.incidents import IncidentLabel

DEMO_MARKER = ".cityflow-demo-lake"
# Detectable in the demo's first city hour without warm-up (see module doc).
DEMO_KINDS = ("traffic.stuck", "traffic.dropout", "wifi.ap_down", "logistics.cold_chain",
              "logistics.stalled", "logistics.impossible_jump", "supply.power_outage", "supply.pressure_drop")
LABELS_FILE = "demo-incidents.jsonl"  # under CITYFLOW_DATADIR
# The demo's city: DEMO_RATE events per wall second at DEMO_SPEEDUP x city time, i.e. about
# 22 events per city second (600 traffic detectors, 333 lamps, 120 access points, 53 vehicles).
# The benchmark's 30-day warehouse lake is landed at this rate (bench/warehouse_case.py).
DEMO_RATE = 2000.0
DEMO_SPEEDUP = 90.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run broker + simulator + workers, land Parquet, print a report")
    p.add_argument("--seconds", type=float, default=40, help="simulator wall-clock seconds (default 40)")
    p.add_argument("--rate", type=float, default=DEMO_RATE, help="events per second (default %(default)g)")
    p.add_argument("--speedup", type=float, default=DEMO_SPEEDUP, help="city time per wall time (default %(default)g)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--export-dir", type=Path, default=Path("reports/exports"),
                   help="where the demo's day is exported (default reports/exports)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--incidents", default="auto",
                   help="labelled incidents to inject: auto (the kinds detectable without a baseline "
                   "that fit the run: " + ", ".join(DEMO_KINDS) + "), none, or KIND,KIND")
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


def demo_kinds(spec: str, span_s: float) -> tuple[list[str], list[str]]:
    """The incident kinds to inject into a run of `span_s` city seconds, and the kinds of
    DEMO_KINDS left out because their pattern does not fit it ('auto'); 'none'; or the kinds
    named (an error if one does not fit: the user asked for it)."""
    from streams.incidents import MIN_MS, PATTERNS, parse_kinds

    def fits(kind: str) -> bool:
        return PATTERNS[kind].duration_min * MIN_MS + 2 * MIN_MS <= span_s * 1000

    if spec == "none":
        return [], []
    if spec == "auto":
        return [k for k in DEMO_KINDS if fits(k)], [k for k in DEMO_KINDS if not fits(k)]
    try:
        kinds = parse_kinds(spec)
    except ValueError as exc:
        raise SettingsError(f"--incidents: {exc}") from None
    too_long = [k for k in kinds if not fits(k)]
    if too_long:
        raise SettingsError(f"--incidents: {', '.join(too_long)} do not fit {span_s / 60:.0f} min of city "
                            "time; make --seconds x --speedup longer")
    return kinds, []


def run(args: argparse.Namespace) -> int:
    import duckdb

    from jobs.runner import WorkerProcess, wait_until_landed
    from streams.broker import EmbeddedBroker, city_topics, ensure_topics, kafka_client_config
    from streams.incidents import IncidentPlacementError, IncidentPlan, labels_lines
    from streams.simulator import produce_paced
    from warehouse.db import build_warehouse, configured_window_sizes
    from warehouse.report import daily_report, format_report

    settings = load_settings()
    if "://" in settings.lake:
        raise SettingsError("the demo writes a local lake; unset CITYFLOW_LAKE or give a path")
    lake_dir = Path(settings.lake).resolve()
    state_dir = Path(settings.datadir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    kinds, left_out = demo_kinds(args.incidents, args.seconds * args.speedup)
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
            # every detector on, whatever the environment's default (CITYFLOW_DETECTOR_<KIND> apply)
            w = WorkerProcess(bootstrap, str(lake_dir), state_dir / f"worker-{i}.log", name=f"worker-{i}",
                              env={"CITYFLOW_DETECTORS": "all"})
            workers.append(w.start())
        say(f"started {args.workers} worker(s) with every anomaly detector on; waiting for partition assignment...")
        for w in workers:
            st = w.wait_ready(timeout=90)
            say(f"{w.name} ready with {len(st.get('partitions', []))} partitions (metrics: http://127.0.0.1:{w.web_port}/metrics)")

        say(f"simulating {args.rate:.0f} events/s for {args.seconds:.0f} s "
            f"({args.seconds * args.speedup / 60:.0f} min of city time, seed {args.seed})...")
        labels: list[IncidentLabel] = []
        if kinds:
            say(f"injecting one labelled incident of each of: {', '.join(kinds)}"
                + (f" ({', '.join(left_out)}: pattern longer than the run)" if left_out else ""))
        t0 = time.monotonic()

        def produce(plan: IncidentPlan | None) -> dict[str, int]:
            return produce_paced(args.seed, args.rate, args.seconds, args.speedup, client,
                                 progress=lambda c: print(f"\r[demo] sent {sum(c.values()):>8,}", end="", flush=True),
                                 incidents=plan, labels_out=labels)

        try:  # incidents are placed before the first event is sent
            sent = produce(IncidentPlan(tuple(kinds)) if kinds else None)
        except IncidentPlacementError as exc:
            say(f"no incidents injected: {exc}")
            sent = produce(None)
        print()
        labels_path = state_dir / LABELS_FILE
        labels_path.write_text(labels_lines(labels))
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
        sections = daily_report(con, lake=Lake(settings.lake))
        print(format_report(sections))
        if labels:
            print(injected_incidents_section(con, labels, labels_path, args.speedup))
        report_html = export_demo_day(con, settings, sections, args.export_dir)
        if report_html is not None:
            say(f"the day's export (CSV, Parquet, charts): open {report_html}")
        say(f"done in {time.monotonic() - t_start:.0f} s. Try: cityflow query \"SELECT * FROM traffic_1m LIMIT 5\"")
        return 0
    finally:
        for w in workers:
            w.stop()
        if broker is not None:
            broker.stop()
            say("broker stopped")


def export_demo_day(con: duckdb.DuckDBPyConnection, settings: Any, sections: dict[str, Any], out: Path) -> Path | None:
    """Export the report's day like `cityflow export --period day --allow-partial` (the demo's day
    is still going on, so it is partial and the manifest says so); return the HTML report's path."""
    from contracts.registry import CONTRACTS
    from contracts.windows import window_geometry
    from jobs.export import export_period
    from jobs.periods import period_of
    from warehouse.figures import figures

    day = next((f.attrs.get("day") for f in sections.values() if f.attrs.get("day")), None)
    if day is None:
        return None
    if isinstance(day, str):
        day = date.fromisoformat(day)
    period = period_of("day", day, settings.report_tz)
    lateness = {s: window_geometry(s, settings).allowed_lateness_s for s in CONTRACTS}
    result = export_period(con, Lake(settings.lake), period, figures(), out_dir=out, lateness_s=lateness,
                           allow_partial=True, progress=lambda line: None)
    return (result.path / "report.html").resolve()


def injected_incidents_section(con: duckdb.DuckDBPyConnection, labels: list[IncidentLabel], labels_path: Path,
                               speedup: float) -> str:
    """"Injected incidents": each label of `labels_path` against the landed `anomalies` view
    (jobs.evaluation.incident_findings: found or not, time to detect)."""
    from jobs.evaluation import alert_rows, format_findings, incident_findings

    rows = con.execute(
        "SELECT kind, entity, epoch_ms(window_start) AS window_start, epoch_ms(detected_at) AS detected_at "
        "FROM anomalies").fetchall()
    alerts = alert_rows(dict(zip(("kind", "entity", "window_start", "detected_at"), r, strict=True)) for r in rows)
    findings, unmatched = incident_findings(labels, alerts)
    title = (f"Injected incidents (labels: {labels_path}; found = an alert of that kind on that device in "
             "the anomalies table; time to detect = city time from the incident's start to the alert)")
    return f"\n{title}\n{format_findings(findings, unmatched, speedup)}"
