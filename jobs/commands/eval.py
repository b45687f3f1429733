"""`cityflow eval`: measure the anomaly detectors through the real embedded broker and real
worker processes — injected incidents (per kind P/R/F1, median time-to-detect, false alerts
per 1,000 device-hours on an incident-free run) and NAB-style labelled series (window-level
P/R/F1 per file and overall, mean delay). Prints tables and writes JSON; `--check FILE`
recomputes every score in a report from its counts.

Every run gets a fresh embedded broker and a fresh lake (the worker reads its topics from the
beginning, so runs must not share topics; CITYFLOW_KAFKA_BOOTSTRAP is therefore not used).

Injected incidents: the simulated run starts on a Thursday 00:00 city time (the latest one that
lets the run end before now; the worker's CITYFLOW_MAX_EVENT_AGE_DAYS is raised to cover it),
so results do not depend on the weekday eval is run on, and the default warm-up of 96 h (Thu,
Fri, Sat, Sun) gives every time-of-day bucket of both day types the two days of history the
baseline detectors need before they give a verdict (`warmup_s` 7200: two days of that hour).

NAB replay: each series is moved forward by whole weeks of local time (`shift_local_weeks`:
same weekday and wall-clock time, so the same time-of-day buckets) to end within a week before
now, and the worker runs with CITYFLOW_DETECTORS_TZ = the data's zone (`series_timezone`:
metadata.json, else America/Chicago), CITYFLOW_MAX_EVENT_AGE_DAYS raised to cover the span (no
chunking: the baselines need the weeks of history), and traffic windows of the series'
reporting interval (one worker per interval; `--nab-window-s` forces one size). A NAB row
becomes a traffic v4 record of detector `nab-<file stem>` with the series' value in its field
(`avg_speed_kmh`, `occupancy_pct` or `travel_time_s`), null for the other two (v4: a sensor
without a loop has no occupancy), and constants for the rest: district Mitte, road "NAB <stem>",
lane 1, vehicle_count 20.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import numpy as np

NAB_ENTITY_PREFIX = "nab-"
NAB_DISTRICT = "Mitte"
NAB_VEHICLE_COUNT = 20
NAB_KIND = "traffic.congestion"
DEFAULT_OUT = "reports/eval/latest.json"
WORKER_ENV = {"CITYFLOW_FLUSH_SECONDS": "1", "CITYFLOW_DETECTORS": "all", "CITYFLOW_DISTRICT_STAGE_INTERVAL_S": "1",
              "CITYFLOW_SESSION_TIMEOUT_S": "6", "CITYFLOW_REBALANCE_TIMEOUT_S": "4",
              "CITYFLOW_HEARTBEAT_INTERVAL_S": "0.5"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score the anomaly detectors (injected incidents, NAB series) "
                       "through the broker and a worker")
    p.add_argument("--days", type=float, default=7.0,
                   help="simulated city days per run, from a Thursday 00:00 (7: incidents Mon-Wed)")
    p.add_argument("--rate", type=float, default=2.0,
                   help="simulated events per city second, sizes the fleets (2)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--kinds", default="all", help="incident kinds: all or KIND,KIND (all)")
    p.add_argument("--warmup-h", type=float, default=96.0,
                   help="city hours before the first incident: 96 from the Thursday start gives every "
                   "time-of-day bucket, weekday and weekend, two days of history (96)")
    p.add_argument("--skip-clean", action="store_true", help="no incident-free run")
    p.add_argument("--skip-incidents", action="store_true", help="no injected-incident runs")
    p.add_argument("--data", default=None,
                   help="NAB-style directory (CSV + combined_windows.json); default "
                   "../shared/data/nab beside the repo if present; 'none' to skip")
    p.add_argument("--nab-window-s", type=int, default=None,
                   help="traffic window size for the NAB replay (default: each series' reporting "
                   "interval, one worker per interval)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON report ({DEFAULT_OUT})")
    p.add_argument("--workdir", default=None, help="keep lakes and logs here (default: a temp dir)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for landing (600)")
    p.add_argument("--check", metavar="FILE", default=None,
                   help="only recompute the scores in a JSON report and compare; exit 1 on mismatch")
    p.set_defaults(func=run)


def say(msg: str) -> None:
    print(f"[eval] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Arithmetic: the scores from the counts (also what --check recomputes)


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    from streams.detectors.nab import f1

    return {"precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0, "f1": f1(tp, fp, fn)}


def check_report(report: dict[str, Any], tol: float = 1e-9) -> list[str]:
    """Mismatches between every reported P/R/F1 (and totals, delays, false-alert rate) and
    the same figures recomputed from the report's counts; empty when consistent."""
    errors: list[str] = []

    def compare(where: str, row: dict[str, Any]) -> None:
        for name, value in prf(row["tp"], row["fp"], row["fn"]).items():
            if not math.isclose(row[name], value, abs_tol=tol):
                errors.append(f"{where}: {name} {row[name]} != {value} from tp/fp/fn")

    def delay(where: str, row: dict[str, Any], key: str, fn: Any) -> None:
        want = float(fn(row["delays_min"])) if row["delays_min"] else None
        got = row[key]
        if (want is None) != (got is None) or (want is not None and not math.isclose(got, want, abs_tol=1e-6)):
            errors.append(f"{where}: {key} {got} != {want} from delays_min")

    inc = report.get("incidents")
    if inc:
        for row in inc["kinds"]:
            compare(f"incidents/{row['kind']}", row)
            delay(f"incidents/{row['kind']}", row, "median_ttd_min", np.median)
            if row["tp"] + row["fn"] != row["labels"]:
                errors.append(f"incidents/{row['kind']}: tp + fn != labels")
        clean = inc.get("clean")
        if clean:
            want = clean["alerts"] / clean["device_hours"] * 1000.0
            if not math.isclose(clean["false_alerts_per_1000_device_hours"], want, rel_tol=1e-9):
                errors.append(f"clean: rate {clean['false_alerts_per_1000_device_hours']} != {want}")
    nab = report.get("nab")
    if nab:
        for row in nab["files"]:
            compare(f"nab/{row['file']}", row)
            delay(f"nab/{row['file']}", row, "mean_delay_min", np.mean)
        total = nab["overall"]
        for key in ("tp", "fp", "fn"):
            if total[key] != sum(r[key] for r in nab["files"]):
                errors.append(f"nab/overall: {key} is not the sum over files")
        compare("nab/overall", total)
    return errors


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


# --------------------------------------------------------------------------------------------
# Running the pipeline


@dataclass
class Pipeline:
    """A fresh embedded broker, its topics and one worker with detectors on, on a new lake."""

    workdir: Path
    name: str
    env: dict[str, str]

    def __enter__(self) -> Self:
        from contracts.settings import load_settings
        from streams.broker import EmbeddedBroker, city_topics, ensure_topics, kafka_client_config

        self.settings = load_settings()
        self.dir = self.workdir / self.name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.lake = str(self.dir / "lake")
        self.broker = EmbeddedBroker()
        self.broker.start(log_path=self.dir / "broker.log")
        self.client = kafka_client_config(self.settings, self.broker.bootstrap)
        ensure_topics(self.client, city_topics(self.settings.partitions))
        self.worker: Any = None
        return self

    def land(self, sent: dict[str, int], timeout: float) -> None:
        from jobs.runner import WorkerProcess, wait_for_district_stage, wait_until_landed
        from streams.district_stage import KIND_SOURCES

        self.worker = WorkerProcess(self.broker.bootstrap, self.lake, self.dir / "worker.log",
                                    env={**WORKER_ENV, "CITYFLOW_GROUP_ID": f"eval-{self.name}", **self.env},
                                    name=f"eval-{self.name}").start()
        total = sum(sent.values())
        last = [0.0]

        def progress(landed: dict[str, int]) -> None:
            if time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                say(f"{self.name}: landed {sum(landed.get(s, 0) for s in sent):,} / {total:,}")

        wait_until_landed(self.lake, sent, timeout=timeout, workers=[self.worker], progress=progress)
        kinds = [k for k, (_, sources) in KIND_SOURCES.items() if all(s in sent for s in sources)]
        if kinds:
            say(f"{self.name}: all {total:,} events landed; waiting for the district stage ({', '.join(kinds)})")
            wait_for_district_stage(self.lake, kinds, self.settings.partitions, timeout, [self.worker])
        say(f"{self.name}: all {total:,} events landed; stopping the worker (final flush)")
        code = self.worker.stop()
        if code != 0:
            raise RuntimeError(f"worker exited {code}:\n{self.worker.log_tail()}")

    def anomalies(self) -> list[dict[str, Any]]:
        import duckdb

        from warehouse.db import build_warehouse

        db = self.dir / "eval.duckdb"
        build_warehouse(self.lake, db)
        con = duckdb.connect(str(db), read_only=True)
        try:
            rows = con.execute("SELECT kind, entity, epoch_ms(window_start) AS window_start "
                               "FROM anomalies ORDER BY window_start, kind, entity").fetchall()
        finally:
            con.close()
        return [{"kind": k, "entity": e, "window_start": int(w)} for k, e, w in rows]

    def __exit__(self, *exc: object) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.broker.stop()


class _DeviceSpan:
    """Passes events through, remembering each device's first and last reading time."""

    def __init__(self) -> None:
        self.first_last: dict[str, tuple[int, int]] = {}

    def tap(self, events: Any) -> Iterator[Any]:
        for e in events:
            key = f"{e.source}:{e.key}"
            a, _ = self.first_last.get(key, (e.ts_ms, e.ts_ms))
            self.first_last[key] = (a, e.ts_ms)
            yield e


def _simulated_run(args: argparse.Namespace, workdir: Path, name: str, kinds: Sequence[str],
                   sources: Sequence[str], inject: bool) -> tuple[list, list[dict], dict[str, int], float]:
    from jobs.evaluation import device_hours
    from streams.incidents import IncidentPlan
    from streams.simulator import generate, produce

    seconds = args.days * 86_400
    plan = IncidentPlan(tuple(kinds), 1.0, args.warmup_h * 3600.0) if inject else None
    labels: list = []
    span = _DeviceSpan()
    start = run_start(seconds)
    age_days = math.ceil((time.time() - start.timestamp()) / 86_400) + 1
    with Pipeline(workdir, name, {"CITYFLOW_MAX_EVENT_AGE_DAYS": str(age_days)}) as pipe:
        say(f"{name}: producing {args.days:g} city days from {start:%a %Y-%m-%d %H:%M} UTC at "
            f"{args.rate:g} events/s ({', '.join(sources)}){' with incidents' if inject else ', no incidents'}...")
        t0 = time.monotonic()
        events = span.tap(generate(args.seed, args.rate, seconds, 1.0, start, sources, plan, labels))
        sent = produce(events, pipe.client,
                       progress=lambda c: say(f"{name}: sent {sum(c.values()):,}"), progress_every=100_000)
        say(f"{name}: sent {sum(sent.values()):,} events in {time.monotonic() - t0:.0f} s; "
            f"{len(labels)} labelled incidents; waiting for the worker to land them...")
        pipe.land(sent, args.timeout)
        alerts = pipe.anomalies()
    return labels, alerts, sent, device_hours(span.first_last)


def run_start(seconds: float, now: datetime | None = None) -> datetime:
    """The latest Thursday 00:00 city time (Europe/Berlin, the simulator's clock) from which a
    run of `seconds` ends at least a minute before `now` (see the module doc: fixed weekdays).

        >>> run_start(7 * 86400, datetime(2026, 11, 30, 6, 0, tzinfo=UTC))
        datetime.datetime(2026, 11, 18, 23, 0, tzinfo=datetime.timezone.utc)
    """
    from streams.simulator import TZ

    now = now or datetime.now(UTC)
    latest = (now - timedelta(seconds=seconds + 60)).astimezone(TZ)
    day = latest.date() - timedelta(days=(latest.weekday() - 3) % 7)
    return datetime.combine(day, datetime.min.time(), TZ).astimezone(UTC)


def incidents_report(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from jobs.evaluation import alert_rows, false_alerts_per_1000_device_hours, score_incidents
    from streams.incidents import PATTERNS, parse_kinds

    kinds = parse_kinds(args.kinds)
    sources = sorted({s for k in kinds for s in PATTERNS[k].sources})
    labels, alerts, sent, hours = _simulated_run(args, workdir, "incidents", kinds, sources, True)
    scores = score_incidents(labels, alert_rows(alerts), kinds=kinds)
    out: dict[str, Any] = {
        "days": args.days, "rate": args.rate, "seed": args.seed, "sources": sources, "sent": sent,
        "device_hours": hours, "labels": [lb.to_json() for lb in labels],
        "kinds": [{"kind": s.kind, "labels": s.labels, "alerts": s.alerts, "tp": s.tp, "fp": s.fp,
                   "fn": s.fn, "duplicates": s.duplicates, "collateral": s.collateral,
                   "precision": s.precision, "recall": s.recall, "f1": s.f1,
                   "median_ttd_min": _nan_to_none(s.median_ttd_min), "delays_min": list(s.delays_min)}
                  for s in scores],
        "clean": None,
    }
    if not args.skip_clean:
        _, clean_alerts, clean_sent, clean_hours = _simulated_run(args, workdir, "clean", kinds, sources, False)
        mine = [a for a in clean_alerts if a["kind"] in kinds]
        out["clean"] = {"sent": clean_sent, "device_hours": clean_hours, "alerts": len(mine),
                        "alerts_by_kind": {k: sum(a["kind"] == k for a in mine) for k in kinds},
                        "false_alerts_per_1000_device_hours":
                            false_alerts_per_1000_device_hours(len(mine), clean_hours)}
    return out


def nab_records(series: Any, shifted_ms: np.ndarray) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(event ms, key, traffic v4 record) for every reading of a NAB series at its shifted
    times (see the module doc for the constants; speeds are km/h already: load_series
    converts mph). The series' value goes to its field; the other signals are null."""
    from streams.detectors.nab import SIGNALS

    entity = NAB_ENTITY_PREFIX + Path(series.name).stem
    field = SIGNALS[series.signal]
    for ms, value in zip(shifted_ms.tolist(), series.values, strict=True):
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
        values: dict[str, float | None] = {"avg_speed_kmh": None, "occupancy_pct": None, "travel_time_s": None}
        values[field] = float(value)
        if values["avg_speed_kmh"] is not None:
            values["avg_speed_kmh"] = round(min(values["avg_speed_kmh"], 250.0), 2)
        if values["occupancy_pct"] is not None:
            values["occupancy_pct"] = min(max(values["occupancy_pct"], 0.0), 100.0)
        yield ms, entity, {
            "detector_id": entity, "ts": iso, "district": NAB_DISTRICT, "road": f"NAB {Path(series.name).stem}",
            "lane": 1, "vehicle_count": NAB_VEHICLE_COUNT, **values,
        }


def nab_weeks(series: Any, now_ms: int) -> int:
    """Whole weeks that move a series to end within the week before now (an hour's margin
    for a daylight-saving difference)."""
    from streams.detectors.nab import WEEK_MS

    return int((now_ms - 3_600_000 - int(series.ts_ms.max())) // WEEK_MS)


def nab_report(data_dir: Path, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from streams.detectors.nab import (
        Totals,
        load_series,
        score_file,
        series_timezone,
        shift_local_weeks,
    )
    from streams.simulator import SimEvent, produce

    series = load_series(data_dir)
    zone = series_timezone(data_dir)
    now_ms = int(time.time() * 1000) - 60_000
    weeks = {s.name: nab_weeks(s, now_ms) for s in series}
    shifted = {s.name: shift_local_weeks(s.ts_ms, weeks[s.name], zone) for s in series}
    oldest = min(int(t.min()) for t in shifted.values())
    age_days = math.ceil((now_ms - oldest) / 86_400_000) + 2
    groups: dict[int, list[Any]] = {}
    for s in series:
        groups.setdefault(args.nab_window_s or s.window_s, []).append(s)
    alerts: list[dict[str, Any]] = []
    sent: dict[str, int] = {}
    for window_s, members in sorted(groups.items()):
        env = {"CITYFLOW_MAX_EVENT_AGE_DAYS": str(age_days), "CITYFLOW_DETECTORS_TZ": zone,
               "CITYFLOW_WINDOW_TRAFFIC": json.dumps({"size_s": window_s})}
        merged = sorted((rec for s in members for rec in nab_records(s, shifted[s.name])), key=lambda r: r[0])
        with Pipeline(workdir, f"nab-{window_s}s", env) as pipe:
            say(f"nab: replaying {len(merged):,} readings of {len(members)} series from {data_dir} in "
                f"{window_s}-s windows (moved by whole weeks to end before now; zone {zone}; max event "
                f"age {age_days} days)...")
            got = produce((SimEvent("traffic", key, ms, rec) for ms, key, rec in merged), pipe.client)
            pipe.land(got, args.timeout)
            alerts += pipe.anomalies()
        for topic, n in got.items():
            sent[topic] = sent.get(topic, 0) + n
    files = []
    for s in series:
        entity = NAB_ENTITY_PREFIX + Path(s.name).stem
        starts = np.array([a["window_start"] for a in alerts if a["entity"] == entity and a["kind"] == NAB_KIND],
                          dtype=np.int64)
        mine = shift_local_weeks(starts, -weeks[s.name], zone) if len(starts) else starts
        files.append((score_file(s, mine), sum(a["entity"] == entity and a["kind"] != NAB_KIND
                                                 for a in alerts)))
    total = Totals.of([f for f, _ in files])
    return {
        "data": str(data_dir), "kind": NAB_KIND, "sent": sent, "timezone": zone,
        "max_event_age_days": float(age_days),
        "window_s": {s.name: args.nab_window_s or s.window_s for s in series},
        "files": [{"file": f.file, "windows": f.windows, "alerts": f.alerts, "other_kind_alerts": other,
                   "tp": f.tp, "fp": f.fp, "fn": f.fn, "precision": f.precision, "recall": f.recall,
                   "f1": f.f1, "mean_delay_min": _nan_to_none(f.mean_delay_min),
                   "delays_min": list(f.delays_min)} for f, other in files],
        "overall": {"tp": total.tp, "fp": total.fp, "fn": total.fn, "precision": total.precision,
                    "recall": total.recall, "f1": total.f1,
                    "mean_delay_min": _nan_to_none(total.mean_delay_min)},
    }


# --------------------------------------------------------------------------------------------
# Output


def format_incidents(inc: dict[str, Any]) -> str:
    head = (f"{'kind':28s} {'labels':>6s} {'alerts':>6s} {'TP':>3s} {'FP':>3s} {'FN':>3s} {'dup':>3s} "
            f"{'coll':>4s} {'P':>5s} {'R':>5s} {'F1':>5s} {'TTD min':>8s}")
    lines = [(f"Injected incidents: {inc['days']:g} days, rate {inc['rate']:g}/s, seed {inc['seed']}, "
             f"{sum(inc['sent'].values()):,} events, {inc['device_hours']:,.0f} device-hours"), head, "-" * len(head)]
    for r in inc["kinds"]:
        ttd = f"{r['median_ttd_min']:8.1f}" if r["median_ttd_min"] is not None else f"{'-':>8s}"
        lines.append(f"{r['kind']:28s} {r['labels']:6d} {r['alerts']:6d} {r['tp']:3d} {r['fp']:3d} {r['fn']:3d} "
                     f"{r['duplicates']:3d} {r['collateral']:4d} {r['precision']:5.2f} {r['recall']:5.2f} "
                     f"{r['f1']:5.2f} {ttd}")
    clean = inc.get("clean")
    if clean:
        lines.append(f"incident-free run: {clean['alerts']} alerts in {clean['device_hours']:,.0f} device-hours = "
                     f"{clean['false_alerts_per_1000_device_hours']:.2f} false alerts per 1,000 device-hours "
                     f"{ {k: n for k, n in clean['alerts_by_kind'].items() if n} }")
    return "\n".join(lines)


def format_nab(nab: dict[str, Any]) -> str:
    head = (f"{'file':<22}{'win':>4}{'alerts':>7}{'TP':>4}{'FP':>4}{'FN':>4}{'P':>7}{'R':>7}{'F1':>7}"
            f"{'delay min':>11}")
    lines = [f"NAB series from {nab['data']} ({nab['kind']} alerts, replayed through the worker)",
             head, "-" * len(head)]

    def delay(x: float | None) -> str:
        return f"{x:11.1f}" if x is not None else f"{'-':>11s}"

    for r in nab["files"]:
        lines.append(f"{r['file']:<22}{r['windows']:4d}{r['alerts']:7d}{r['tp']:4d}{r['fp']:4d}{r['fn']:4d}"
                     f"{r['precision']:7.2f}{r['recall']:7.2f}{r['f1']:7.2f}{delay(r['mean_delay_min'])}")
    t = nab["overall"]
    windows = sum(r["windows"] for r in nab["files"])
    alerts = sum(r["alerts"] for r in nab["files"])
    lines.append(f"{'overall':<22}{windows:4d}{alerts:7d}{t['tp']:4d}{t['fp']:4d}{t['fn']:4d}"
                 f"{t['precision']:7.2f}{t['recall']:7.2f}{t['f1']:7.2f}{delay(t['mean_delay_min'])}")
    return "\n".join(lines)


def default_data_dir() -> Path | None:
    repo = Path(__file__).resolve().parents[2]
    candidate = repo.parent / "shared" / "data" / "nab"
    return candidate if (candidate / "combined_windows.json").exists() else None


def run(args: argparse.Namespace) -> int:
    from contracts.settings import load_settings
    from streams.broker import quiet_kafka_client_logs

    if args.check:
        errors = check_report(json.loads(Path(args.check).read_text()))
        for e in errors:
            print(f"mismatch: {e}", file=sys.stderr)
        print(f"{args.check}: {'consistent' if not errors else f'{len(errors)} mismatches'}")
        return 1 if errors else 0
    if not args.verbose:
        quiet_kafka_client_logs()
    data_dir = None if args.data == "none" else Path(args.data) if args.data else default_data_dir()
    if data_dir is not None and not (data_dir / "combined_windows.json").exists():
        print(f"error: {data_dir} has no combined_windows.json (see --data)", file=sys.stderr)
        return 2
    if load_settings().kafka_bootstrap:
        say("CITYFLOW_KAFKA_BOOTSTRAP is ignored: every run needs empty topics, so eval starts "
            "its own embedded broker per run")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cityflow-eval-"))
    from streams.detectors.overrides import changed_fields, config_json, detector_configs

    # the workers inherit this environment, CITYFLOW_DETECTOR_<KIND> overrides included: record
    # the configuration scored (every field of every kind) and say what differs from the defaults
    configs = detector_configs(load_settings().detector_overrides)
    changed = changed_fields(configs)
    say("detector settings: " + ("defaults" if not changed else "; ".join(
        f"{kind} {json.dumps(fields, default=str)}" for kind, fields in changed.items())))
    report: dict[str, Any] = {"incidents": None, "nab": None,
                              "detector_configs": {kind: config_json(c) for kind, c in configs.items()}}
    t0 = time.monotonic()
    try:
        if not args.skip_incidents:
            report["incidents"] = incidents_report(args, workdir)
        if data_dir is not None:
            report["nab"] = nab_report(data_dir, args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    report["consistent"] = not check_report(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if report["incidents"]:
        print(format_incidents(report["incidents"]))
    if report["nab"]:
        print(format_nab(report["nab"]))
    say(f"report written to {out} in {report['elapsed_s']:.0f} s (arithmetic "
        f"{'consistent' if report['consistent'] else 'INCONSISTENT'})")
    return 0 if report["consistent"] else 1
