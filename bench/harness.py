"""One benchmark run: an embedded broker, N preloaded events, then every case in turn (each in
its own process, consuming the same topics from the start with its own consumer group), the
latency and warehouse cases, and the optional soak. Returns the raw figures of every case;
bench/report.py derives rates, ratios and targets from them.

The cases come in groups (`--cases`, default all): ceiling, faust (naive and take), cityflow
(1 and 2 workers), peers (Quix Streams, Bytewax and cityflow on the traffic windows alone,
each peer's windows checked against a DuckDB recompute), latency, warehouse.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from bench.cityflow_case import run_cityflow
from bench.latency import run_latency
from bench.peer_check import check_windows, dump_topic, read_windows, recompute_windows
from bench.peer_job import KAFKA_DEFAULT_TOPIC_CONFIGS
from bench.peer_job import SOURCE as PEER_SOURCE
from bench.peer_job import TOPIC as PEER_TOPIC
from bench.procstat import ProcessSample
from bench.soak import run_soak
from bench.warehouse_case import demo_rate_events, run_warehouse
from bench.workload import PreloadPlan, preload
from contracts.settings import load_settings
from streams.broker import EmbeddedBroker, city_topics, ensure_topics

log = logging.getLogger("bench")

CASE_GROUPS = ("ceiling", "faust", "cityflow", "peers", "latency", "warehouse")
BROKER_CASES = ("ceiling", "faust", "cityflow", "peers", "latency")  # they run on one preloaded broker
PEERS = ("quix", "bytewax")  # bench/<name>_case.py, in the 'bench' extra
_PEER_MODULES = {"quix": "quixstreams", "bytewax": "bytewax"}


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run depends on (recorded in the results)."""

    events: int = 2_000_000
    case_seconds: float = 20.0
    partitions: int = 4
    flush_seconds: float | None = None  # None: the worker's default (CITYFLOW_FLUSH_SECONDS)
    latency_rate: float = 2000.0
    latency_seconds: float = 40.0
    latency_flush_seconds: float = 1.0  # issue 17's latency target is for 1 s flushes
    warehouse_events: int | None = None  # None: the demo's rate over warehouse_days (~57.6M for 30)
    warehouse_days: int = 30
    warehouse_lake: str | None = None  # keep the warehouse lake here and reuse it (it takes a while)
    soak_minutes: float = 0.0
    soak_warmup_minutes: float = 2.0
    soak_rate: float = 2000.0
    seed: int = 8
    group_timeout_s: float | None = None  # None: the worker's default session/rebalance timeout
    # CITYFLOW_DETECTORS of the workers: issue 13's target is measured with every detector on,
    # whatever the shell exports (--worker-env CITYFLOW_DETECTORS=none compares without)
    detectors: str = "all"
    worker_env: tuple[tuple[str, str], ...] = ()  # extra CITYFLOW_* settings for the workers
    cases: tuple[str, ...] = CASE_GROUPS  # which groups of cases run (see the module docstring)


_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def machine_facts() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform()}


def run_child(name: str, args: list[str], workdir: Path, broker_pid: int, timeout: float) -> dict:
    """Run `python -m <args> --out <json>` and return what it wrote, plus the broker's CPU
    over the child's whole life (start-up included) and its wall time."""
    out = workdir / f"{name}.json"
    log_path = workdir / f"{name}.log"
    broker0 = ProcessSample.of(broker_pid).cpu_s
    t0 = time.monotonic()
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", *args, "--out", str(out)], stdout=fh, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"case {name} did not finish in {timeout:.0f}s; log: {log_path}") from None
    if code != 0 or not out.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"case {name} failed (exit {code}); log {log_path}:\n" + "\n".join(tail))
    result = json.loads(out.read_text())
    result["broker_cpu_s"] = ProcessSample.of(broker_pid).cpu_s - broker0
    result["wall_s"] = time.monotonic() - t0
    return result


def run_all(cfg: BenchConfig, workdir: Path) -> dict:
    """Run every case; return the raw results (see bench/report.py for the derived figures)."""
    started, started_at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    cases: dict[str, dict] = {}
    env = {"CITYFLOW_PARTITIONS": str(cfg.partitions), "CITYFLOW_DETECTORS": cfg.detectors, **dict(cfg.worker_env)}
    if cfg.flush_seconds:
        env["CITYFLOW_FLUSH_SECONDS"] = str(cfg.flush_seconds)
    group_timeout = cfg.group_timeout_s or load_settings().rebalance_timeout_s
    if cfg.group_timeout_s:
        env["CITYFLOW_SESSION_TIMEOUT_S"] = env["CITYFLOW_REBALANCE_TIMEOUT_S"] = str(cfg.group_timeout_s)
    preload_info: dict | None = None
    latency: dict | None = None
    if set(cfg.cases) & set(BROKER_CASES):
        preload_info, latency = _broker_cases(cfg, workdir, cases, env, group_timeout)
    warehouse = None
    if "warehouse" in cfg.cases:
        events = cfg.warehouse_events or demo_rate_events(cfg.warehouse_days)
        lake_dir = Path(cfg.warehouse_lake) if cfg.warehouse_lake else None
        say(f"warehouse: {cfg.warehouse_days}-day lake of {events:,} events"
            f"{' (the demo rate)' if cfg.warehouse_events is None else ''}"
            f"{f', kept in {lake_dir}' if lake_dir else ''}, then the report queries ...")
        warehouse = run_warehouse(workdir, events, cfg.warehouse_days, cfg.partitions, lake_dir)
    soak = None
    if cfg.soak_minutes > 0:
        say(f"soak: {cfg.soak_warmup_minutes:g} min warm-up + {cfg.soak_minutes:g} min at {cfg.soak_rate:g} events/s ...")
        soak = run_soak(workdir, cfg.soak_minutes, cfg.soak_warmup_minutes, cfg.soak_rate, env=env)
    return {
        "started_at": started_at,
        "wall_s": time.monotonic() - started,
        "machine": machine_facts(),
        "config": asdict(cfg),
        "preload": preload_info,
        "cases": cases,
        "latency": latency,
        "warehouse": warehouse,
        "soak": soak,
    }


def _broker_cases(cfg: BenchConfig, workdir: Path, cases: dict, env: dict, group_timeout: float) -> tuple[dict, dict]:
    """The cases that need the broker: preload, ceiling, Faust agents, cityflow workers, latency."""
    with EmbeddedBroker().start(log_path=workdir / "tansu.log") as broker:
        assert broker.pid is not None
        # Kafka's default topic configs, explicitly: Tansu describes only what a topic was
        # created with, and Quix Streams needs retention.ms of its input topic
        ensure_topics(broker.bootstrap, city_topics(cfg.partitions), configs=KAFKA_DEFAULT_TOPIC_CONFIGS)
        plan = PreloadPlan.for_events(cfg.events, seed=cfg.seed)
        say(f"preloading {cfg.events:,} events into {cfg.partitions} partitions per source topic ...")
        t = time.monotonic()
        counts = preload(broker.bootstrap, plan)
        total = sum(counts.values())
        preload_info = {"events": total, "per_source": counts, "seconds": time.monotonic() - t,
                        "event_time_start": plan.start.isoformat(), "event_time_span_s": plan.span_s}
        say(f"preloaded {total:,} events in {preload_info['seconds']:.1f}s")
        common = ["--bootstrap", broker.bootstrap, "--group-timeout", str(group_timeout)]
        child_timeout = cfg.case_seconds * 3 + 180
        if "ceiling" in cfg.cases:
            say(f"ceiling: raw aiokafka getmany + orjson + pyarrow (>= {cfg.case_seconds:g}s) ...")
            cases["ceiling"] = run_child("ceiling", ["bench.ceiling", *common, "--events", str(total),
                                                     "--min-seconds", str(cfg.case_seconds)],
                                         workdir, broker.pid, child_timeout)
        for mode in ("naive", "take") if "faust" in cfg.cases else ():
            say(f"{mode}: Faust agent (budget {cfg.case_seconds:g}s or all {total:,} events) ...")
            cases[mode] = run_child(mode, ["bench.faust_agents", mode, *common, "--max-events", str(total),
                                           "--seconds", str(cfg.case_seconds), "--workdir", str(workdir / mode)],
                                    workdir, broker.pid, child_timeout)
        for workers in (1, 2) if "cityflow" in cfg.cases else ():
            say(f"cityflow with {workers} worker(s): all {total:,} events to the lake ...")
            cases[f"cityflow_{workers}w"] = run_cityflow(broker.bootstrap, counts, workers, workdir, broker.pid, env)
        if "peers" in cfg.cases:
            cases.update(run_peer_cases(broker.bootstrap, counts[PEER_SOURCE], workdir, broker.pid, common, env))
    latency = None
    if "latency" in cfg.cases:
        say(f"latency: {cfg.latency_rate:g} events/s for {cfg.latency_seconds:g}s into a live worker "
            f"flushing every {cfg.latency_flush_seconds:g}s ...")
        latency = run_latency(workdir, cfg.latency_rate, cfg.latency_seconds,
                              {**env, "CITYFLOW_FLUSH_SECONDS": str(cfg.latency_flush_seconds)})
    return preload_info, latency


def peer_installed(name: str) -> bool:
    """Is the peer's library importable here (the 'bench' extra)?"""
    return importlib.util.find_spec(_PEER_MODULES[name]) is not None


def run_peer_cases(bootstrap: str, events: int, workdir: Path, broker_pid: int, common: list[str],
                   env: dict[str, str]) -> dict[str, dict]:
    """The traffic window job (bench/peer_job.py) by each peer, then by one cityflow worker
    consuming traffic alone, on the same preloaded events. A peer that fails or whose windows
    differ from the DuckDB recompute is reported with `failed` (the reason) and not counted."""
    cases: dict[str, dict] = {}
    expected = None
    if any(peer_installed(name) for name in PEERS):  # else nothing to check against the recompute
        say(f"peers: {events:,} traffic events read back for the DuckDB recompute of their windows ...")
        events_dir = workdir / "peer-events"
        dumped = dump_topic(bootstrap, PEER_TOPIC, events, events_dir)
        expected = recompute_windows(events_dir)
        shutil.rmtree(events_dir, ignore_errors=True)
        say(f"peers: {expected.num_rows:,} windows recomputed from {dumped:,} events")
    timeout = max(900.0, events / 500)  # Quix measured ~2.5-5k events/s here, under load
    for name in PEERS:
        if expected is None or not peer_installed(name):
            cases[name] = {"failed": f"{_PEER_MODULES[name]} is not installed (pip install -e '.[bench]')"}
            say(f"{name}: skipped, {cases[name]['failed']}")
            continue
        say(f"{name}: the traffic windows of all {events:,} traffic events ...")
        try:
            result = run_child(name, [f"bench.{name}_case", *common, "--events", str(events),
                                      "--workdir", str(workdir / name)], workdir, broker_pid, timeout)
        except RuntimeError as exc:
            cases[name] = {"failed": str(exc)}
            say(f"{name}: FAILED {exc}")
            continue
        try:
            emitted = read_windows(result["output"], result["key_column"])
        except duckdb.Error as exc:  # no files, or files DuckDB cannot read
            cases[name] = {**result, "failed": f"no readable windows in {result['output']}: {exc}"}
            say(f"{name}: FAILED {cases[name]['failed']}")
            continue
        check = check_windows(emitted, expected)
        result["check"] = check
        if not check["ok"]:
            result["failed"] = f"wrong windows: {check['reason']}"
        say(f"{name}: {check['emitted']:,} windows, " + ("match the recompute" if check["ok"] else result["failed"]))
        cases[name] = result
    # The same job: validate, window, land the raw rows exactly-once; no anomaly detectors (the
    # peers run none). Then, unless the run turned them off, the worker as deployed (every
    # detector on: traffic's are the costliest) beside it, for the price of the detectors.
    say(f"cityflow with 1 worker, traffic only, no detectors: all {events:,} traffic events to the lake ...")
    cases["cityflow_traffic_1w"] = run_cityflow(bootstrap, {PEER_SOURCE: events}, 1, workdir, broker_pid,
                                                {**env, "CITYFLOW_DETECTORS": "none"},
                                                sources=(PEER_SOURCE,), tag="cityflow-traffic-1w")
    if env.get("CITYFLOW_DETECTORS", "none") != "none":
        say(f"cityflow with 1 worker, traffic only, detectors {env['CITYFLOW_DETECTORS']}: all {events:,} traffic events ...")
        cases["cityflow_traffic_1w_detectors"] = run_cityflow(bootstrap, {PEER_SOURCE: events}, 1, workdir, broker_pid,
                                                              env, sources=(PEER_SOURCE,),
                                                              tag="cityflow-traffic-1w-detectors")
    return cases
