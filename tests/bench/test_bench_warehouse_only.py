"""`python -m bench --cases warehouse` runs the warehouse case alone (no broker) on a tiny lake,
prints the lake's size and the report timings, and a kept lake is reused, not landed again.
No timing is asserted (tests never time things: see STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.warehouse_case import LAKE_FACTS, prepared_lake


def test_warehouse_case_alone_with_a_kept_lake(tmp_path: Path) -> None:
    lake, out = tmp_path / "kept-lake", tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--cases", "warehouse", "--warehouse-events", "3000", "--warehouse-days", "1",
         "--warehouse-lake", str(lake), "--out", str(out), "--workdir", str(tmp_path / "work")],
        check=False, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "the warehouse case alone" in proc.stdout and "figures_month_s" in proc.stdout
    assert "the scheduled job (cityflow compact --older-than 1h) ran first" in proc.stdout
    results = json.loads(out.read_text())
    assert results["cases"] == {} and results["preload"] is None
    wh = results["warehouse"]
    assert wh["reused"] is False and wh["events"] > 0
    size = wh["lake"]
    assert size["rows"] >= wh["events"] and size["files"] > 0 and size["bytes"] > 0
    assert size["tables"]["raw"]["rows"] == wh["events"]  # every landed event is a raw row
    assert (lake / LAKE_FACTS).exists()
    export, job = wh["export"], wh["export"]["job"]
    for name in export["targets_s"]:  # timed with day files and on the hour files alone
        assert export[name] > 0 and export["hour_files"][name] > 0
    # a day file per closed (table, source, day); the lake's last day is still open
    assert job["day_files"] == job["day_files_written"] + job["day_files_current"]
    assert job["day_files_rows"] <= size["rows"] and job["day_files_failed"] == 0
    again = prepared_lake(lake, 3000, 1, 4)  # same events, days, partitions, seed: reused
    assert again["reused"] is True and again["lake"] == size
