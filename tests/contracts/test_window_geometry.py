"""One window geometry type, validated when settings load: a malformed CITYFLOW_WINDOW_<SOURCE>
stops every command at start with the variable's name and what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.settings import SettingsError, load_settings
from contracts.windows import WINDOW_DEFAULTS, WindowGeometry, window_geometry

ROOT = Path(__file__).resolve().parents[2]


def test_geometry_validates_when_built() -> None:
    assert WindowGeometry(60, hop_s=30).hop == 30
    assert WindowGeometry(60).hop == 60
    assert WindowGeometry(60, allowed_lateness_s=10, grace_s=20).horizon_ms == 90_000
    for bad, match in [({"size_s": -5}, "size_s must be a positive"), ({"size_s": 60, "hop_s": 25}, "divide"),
                       ({"size_s": 60, "grace_s": -1}, ">= 0"), ({"size_s": 60, "hop_s": 0}, "hop_s")]:
        with pytest.raises(ValueError, match=match):
            WindowGeometry(**bad)


@pytest.mark.parametrize(("value", "problem"), [
    ('{"size_s": -5}', "size_s must be a positive"),
    ('{"size_s": 60, "hop_s": 25}', "divide"),
    ('{"size": 60}', "unknown keys ['size']"),
    ('{"grace_s": -1}', ">= 0"),
    ('{"size_s": "a minute"}', "integer"),
    ("not json", "json"),
])
def test_load_settings_names_the_bad_window_variable(monkeypatch, value: str, problem: str) -> None:
    monkeypatch.setenv("CITYFLOW_WINDOW_TRAFFIC", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert "CITYFLOW_WINDOW_TRAFFIC" in text
    assert problem.lower() in text.lower()


def test_valid_override_is_the_geometry_in_force(monkeypatch) -> None:
    monkeypatch.setenv("CITYFLOW_WINDOW_WIFI", '{"size_s": 600, "hop_s": 300}')
    settings = load_settings()
    assert window_geometry("wifi", settings) == WindowGeometry(
        600, WINDOW_DEFAULTS["wifi"].allowed_lateness_s, WINDOW_DEFAULTS["wifi"].grace_s, 300)
    assert window_geometry("traffic", settings) == WINDOW_DEFAULTS["traffic"]


@pytest.mark.parametrize("command", [["worker"], ["verify", "--counts"], ["validate"], ["report"], ["warehouse", "build"]])
def test_cli_commands_stop_at_start_naming_the_variable(tmp_path: Path, command: list[str]) -> None:
    env = {**os.environ, "CITYFLOW_WINDOW_TRAFFIC": '{"size_s": -5}', "CITYFLOW_LAKE": str(tmp_path / "lake"),
           "CITYFLOW_WAREHOUSE_DB": str(tmp_path / "city.duckdb")}
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *command], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "CITYFLOW_WINDOW_TRAFFIC" in line]
    assert len(lines) == 1 and "size_s must be a positive number of seconds, got -5" in lines[0], proc.stderr
    assert not (tmp_path / "city.duckdb").exists()
