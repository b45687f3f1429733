"""`cityflow demo` end to end as a user runs it (the path `make demo` takes), so it cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.e2e


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CITYFLOW_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_demo_runs_the_whole_pipeline(tmp_path):
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = run_cli(["demo", "--seconds", "6", "--rate", "800", "--workers", "2"], tmp_path, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for section in ("Busiest roads", "Lamp faults and energy", "Wi-Fi load by site type",
                    "Fleet status", "Data quality"):
        assert section in proc.stdout, proc.stdout[-3000:]
    assert "broker stopped" in proc.stdout
    sent = int(proc.stdout.split("[demo] sent ")[-1].split(" events")[0].replace(",", ""))
    con = duckdb.connect(str(tmp_path / "warehouse" / "city.duckdb"), read_only=True)
    landed = sum(con.sql(f"SELECT count(*) FROM raw_{s}").fetchall()[0][0]
                 for s in ("traffic", "lighting", "wifi", "logistics"))
    quarantined = con.sql("SELECT count(*) FROM quarantine").fetchall()[0][0]
    assert landed + quarantined == sent > 3000
    assert con.sql("SELECT count(*) FROM traffic_1m").fetchall()[0][0] > 0
    con.close()

    # running it again replaces its own lake rather than appending to it
    proc = run_cli(["demo", "--seconds", "3", "--rate", "500", "--workers", "1"], tmp_path, env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_demo_refuses_a_lake_it_did_not_create(tmp_path):
    lake = tmp_path / "precious"
    (lake / "raw").mkdir(parents=True)
    (lake / "raw" / "keep.parquet").write_bytes(b"x")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "CITYFLOW_LAKE": str(lake)}
    proc = run_cli(["demo", "--seconds", "2"], tmp_path, env, timeout=60)
    assert proc.returncode == 2
    assert "CITYFLOW_LAKE" in proc.stderr and "not written by the demo" in proc.stderr
    assert (lake / "raw" / "keep.parquet").exists()
