"""`cityflow demo` end to end as a user runs it (the path `make demo` takes), so it cannot rot:
its report, its own lake through `cityflow verify` and `cityflow validate`, and a second run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from contracts.registry import CONTRACTS
from jobs.commands.demo import DEMO_KINDS

pytestmark = pytest.mark.e2e


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CITYFLOW_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One reduced demo (6 s at 800 events/s, 2 workers) in a fresh directory, as `make demo`
    runs it there: lake, warehouse and state under that directory. An hour of city time, so
    every source has final windows (lighting's are 15 min) and every demo incident kind fits."""
    cwd = tmp_path_factory.mktemp("demo")
    proc = run_cli(["demo", "--seconds", "6", "--rate", "800", "--speedup", "600", "--workers", "2"],
                   cwd, ENV)
    return cwd, proc


def test_demo_runs_the_whole_pipeline(demo_run):
    tmp_path, proc = demo_run
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for section in ("Busiest roads", "Lamp faults and energy", "Wi-Fi load by site type",
                    "Fleet status", "Data quality"):
        assert section in proc.stdout, proc.stdout[-3000:]
    assert "broker stopped" in proc.stdout
    sent = int(proc.stdout.split("[demo] sent ")[-1].split(" events")[0].replace(",", ""))
    con = duckdb.connect(str(tmp_path / "warehouse" / "city.duckdb"), read_only=True)
    landed = sum(con.sql(f"SELECT count(*) FROM raw_{s}").fetchall()[0][0]
                 for s in CONTRACTS)
    quarantined = con.sql("SELECT count(*) FROM quarantine").fetchall()[0][0]
    assert landed + quarantined == sent > 3000
    assert con.sql("SELECT count(*) FROM traffic_1m").fetchall()[0][0] > 0
    con.close()


def test_the_demo_ends_by_exporting_its_day(demo_run):
    tmp_path, proc = demo_run
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    line = [x for x in proc.stdout.splitlines() if "the day's export" in x]
    assert line, proc.stdout[-2000:]
    html = Path(line[-1].rsplit("open ", 1)[1])
    assert html.is_file() and html.name == "report.html" and html.is_relative_to(tmp_path / "reports" / "exports")
    manifest = json.loads((html.parent / "manifest.json").read_text())
    assert manifest["partial"] is True  # the demo's day is still going on
    assert {f["path"].rsplit(".", 1)[-1] for f in manifest["files"]} >= {"csv", "parquet", "html"}


def test_the_demo_lake_passes_verify_and_validate(demo_run):
    """What a new user does after `make demo`: both checks exit 0 on the demo's own lake, for
    every source (verify compares every final window of each with a DuckDB recompute)."""
    cwd, demo = demo_run
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-3000:]
    verify = run_cli(["verify"], cwd, ENV)
    validate = run_cli(["validate"], cwd, ENV)
    out = verify.stdout + verify.stderr
    assert "Traceback" not in out, out[-4000:]
    assert verify.returncode == 0, out[-4000:]
    windows = {}  # source -> windows checked, from verify's table
    for line in verify.stdout.splitlines():
        cells = line.split()
        if cells[:1] and cells[0] in CONTRACTS:
            windows[cells[0]] = (int(cells[1].replace(",", "")), cells[-1])
    assert {s: ok for s, (_, ok) in windows.items()} == dict.fromkeys(
        CONTRACTS, "ok"), verify.stdout
    assert all(n > 0 for n, _ in windows.values()), windows
    assert "0 mismatches" in verify.stdout and "UNBALANCED" not in verify.stdout

    assert validate.returncode == 0, (validate.stdout + validate.stderr)[-4000:]
    assert (cwd / "reports" / "validation" / "index.html").exists()


def test_the_demo_reports_which_injected_incidents_were_found(demo_run):
    """The "Injected incidents" section after the report: one row per label in the labels file,
    and its found / not found agrees with the landed anomalies table queried here directly
    (an alert of the label's kind on its entity whose window starts in [start - 15 min, end])."""
    cwd, demo = demo_run
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-3000:]
    out = demo.stdout
    assert "[demo] injecting one labelled incident of each of: " in out
    section = out.split("Injected incidents (labels: ", 1)[1].split("\n[demo] ", 1)[0].splitlines()
    rows = [line.split() for line in section[3:] if line and not line.startswith(("-", "kind"))][:-1]
    labels = [json.loads(line) for line in (cwd / ".cityflow" / "demo-incidents.jsonl").read_text().splitlines()]
    assert sorted(lb["kind"] for lb in labels) == sorted(DEMO_KINDS)
    assert [(r[0], r[1]) for r in rows] == [(lb["kind"], lb["entity"]) for lb in labels]
    con = duckdb.connect(str(cwd / "warehouse" / "city.duckdb"), read_only=True)
    found = {}
    for lb in labels:
        (n,) = con.execute(
            "SELECT count(*) FROM anomalies WHERE kind = ? AND entity = ? "
            "AND epoch_ms(window_start) BETWEEN ? - 900000 AND ?",
            [lb["kind"], lb["entity"], lb["start_ms"], lb["end_ms"]]).fetchone()
        found[lb["kind"]] = n > 0
    con.close()
    assert {r[0]: r[3] == "yes" for r in rows} == found
    assert sum(found.values()) >= 1, out[-3000:]  # the detectors work in the first minute (a smoke check)
    summary = section[-1] if section[-1].strip() else section[-2]
    assert summary.startswith(f"{sum(found.values())} of {len(labels)} injected incidents found")


def test_demo_run_again_replaces_its_own_lake(demo_run, tmp_path):
    """Running it again replaces its own lake rather than appending to it."""
    cwd, demo = demo_run
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-3000:]
    shutil.copytree(cwd / "lake", tmp_path / "lake")  # leave the shared run untouched
    proc = run_cli(["demo", "--seconds", "3", "--rate", "500", "--workers", "1"], tmp_path, ENV)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    sent = int(proc.stdout.split("[demo] sent ")[-1].split(" events")[0].replace(",", ""))
    con = duckdb.connect(str(tmp_path / "warehouse" / "city.duckdb"), read_only=True)
    landed = sum(con.sql(f"SELECT count(*) FROM raw_{s}").fetchall()[0][0]
                 for s in CONTRACTS)
    quarantined = con.sql("SELECT count(*) FROM quarantine").fetchall()[0][0]
    con.close()
    assert landed + quarantined == sent  # nothing of the first run's lake is left


def test_demo_refuses_a_lake_it_did_not_create(tmp_path):
    lake = tmp_path / "precious"
    (lake / "raw").mkdir(parents=True)
    (lake / "raw" / "keep.parquet").write_bytes(b"x")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "CITYFLOW_LAKE": str(lake)}
    proc = run_cli(["demo", "--seconds", "2"], tmp_path, env, timeout=60)
    assert proc.returncode == 2
    assert "CITYFLOW_LAKE" in proc.stderr and "not written by the demo" in proc.stderr
    assert (lake / "raw" / "keep.parquet").exists()
