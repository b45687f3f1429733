"""docker/: the compose file is valid for docker-compose (which needs no Docker engine to check
it), every cityflow service runs a real `cityflow` command with valid options and sets only real
settings, and the Dockerfile follows the rules we promise (pinned multi-stage base, non-root,
`cityflow` entry point, health check on /health). No engine runs here, so nothing is built."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.settings import CONFIG_ENV, DETECTOR_ENV_PREFIX, Settings
from jobs.cli import build_parser

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = DOCKER / "compose.yaml"


def compose_config(*profiles: str) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors, merges, profiles) when it is
    installed; else as YAML resolves it (anchors and merge keys too)."""
    exe = shutil.which("docker-compose")
    if exe is None:
        return yaml.safe_load(COMPOSE.read_text())
    args = [exe, "-f", str(COMPOSE)] + [a for p in profiles for a in ("--profile", p)] + ["config"]
    result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def cityflow_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in config["services"].items() if str(s.get("image", "")).startswith("cityflow")}


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose not installed (make test installs Debian's package when it can)")
@pytest.mark.parametrize("profiles", [(), ("minio",), ("monitoring",)])
def test_docker_compose_accepts_the_file(profiles: tuple[str, ...]) -> None:
    services = compose_config(*profiles)["services"]
    assert {"kafka", "topics-init", "worker", "simulator"} <= set(services)
    if profiles == ("minio",):
        assert {"minio", "minio-init"} <= set(services)
    if profiles == ("monitoring",):
        volumes = " ".join(str(v) for v in services["prometheus"]["volumes"])
        assert "prometheus.yml" in volumes and "cityflow-alerts.yml" in volumes


def test_every_cityflow_service_runs_a_real_command_with_valid_options() -> None:
    parser = build_parser()
    services = cityflow_services(compose_config())
    assert {"topics-init", "worker", "simulator", "scheduler"} <= set(services)
    for name, service in services.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: use the exec form"
        try:
            args = parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"service {name}: `cityflow {' '.join(command)}` is not a valid cityflow command")
        assert getattr(args, "func", None) is not None, f"service {name}: {command} names no command"


def test_every_cityflow_variable_set_is_a_real_setting() -> None:
    known = {f"CITYFLOW_{f.upper()}" for f in Settings.model_fields} | {CONFIG_ENV}
    for name, service in cityflow_services(compose_config()).items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        for var in env:
            if var.startswith(DETECTOR_ENV_PREFIX):
                continue
            assert not var.startswith("CITYFLOW_") or var in known, f"service {name}: {var} is not a setting"
    dockerfile_env = re.findall(r"\b(CITYFLOW_[A-Z_]+)=", (DOCKER / "Dockerfile").read_text())
    assert dockerfile_env and set(dockerfile_env) <= known, set(dockerfile_env) - known


def test_workers_scale_and_share_one_lake() -> None:
    worker = compose_config()["services"]["worker"]
    assert "container_name" not in worker  # --scale needs generated names
    assert not worker.get("ports"), "a fixed host port would clash at --scale worker=2"
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in worker["volumes"]]
    assert any(v.split(":")[:2] == ["lake", "/lake"] for v in volumes), volumes
    env = worker["environment"]
    assert env["CITYFLOW_LAKE"] == "/lake" and env["CITYFLOW_WEB_HOST"] == "0.0.0.0"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_rules() -> None:
    steps = _instructions((DOCKER / "Dockerfile").read_text())
    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: build and runtime"
    for base in froms:
        image = base.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), f"pin the base image's version: {image}"
    runtime = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    tail = steps[runtime:]
    users = [args for op, args in tail if op == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "the runtime stage runs as a non-root user"
    entry = [args for op, args in tail if op == "ENTRYPOINT"]
    assert entry == ['["cityflow"]']
    health = [args for op, args in tail if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/health" in health[0]
    code = re.search(r'"-c", "(.*)"\]$', health[0])
    assert code, health[0]
    ast.parse(code.group(1))  # the health check's Python is valid
    assert not any(op == "ADD" for op, _ in steps), "COPY, not ADD (no remote URLs, no tar magic)"
    for op, args in steps:
        if op == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args or "PIP_NO_CACHE_DIR" in (DOCKER / "Dockerfile").read_text()


def _metric_names() -> set[str]:
    """Every series name the worker exposes (counters with _total, histograms with _bucket...)."""
    from streams import metrics

    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        kind = family.type
        if kind == "counter":
            names.add(family.name + "_total")
        if kind == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


def _names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(cityflow_[a-z_]+)\b", expr))


def test_dashboard_and_alert_rules_use_only_metrics_the_worker_exposes() -> None:
    import json

    exposed = _metric_names()
    dashboard = json.loads((DOCKER / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DOCKER / "cityflow-alerts.yml").read_text())["groups"][0]["rules"]
    exprs += [r["expr"] for r in rules]
    used = set().union(*(_names_in(e) for e in exprs))
    assert used and used <= exposed, used - exposed
    # what an operator dashboards (issue 15): each of these is on the dashboard
    for metric in ("cityflow_consumed_total", "cityflow_landed_rows_total", "cityflow_dlq_total",
                   "cityflow_windows_emitted_total", "cityflow_late_events_total", "cityflow_anomalies_total",
                   "cityflow_partition_lag_records", "cityflow_flush_seconds_bucket",
                   "cityflow_last_landed_event_timestamp_seconds"):
        assert any(metric in e for e in exprs[:len(dashboard["panels"])]), metric
    assert {r["alert"] for r in rules} >= {"CityflowWorkerDown", "CityflowLagGrowing", "CityflowDlqRate",
                                           "CityflowStaleSource"}
    assert all(r.get("annotations", {}).get("summary") for r in rules)
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/cityflow-alerts.yml"]
