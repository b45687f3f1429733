"""`cityflow eval` on a small slice through the real broker and workers: half a simulated day
with two incident kinds (and its incident-free twin) and a trimmed NAB series; the JSON report
must agree with scores recomputed from its own counts, the incident run must find at least
one labelled incident (a smoke check, not a target score), and the NAB series must score
through the worker exactly what the offline scorer (streams/detectors/nab.py) scores."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from jobs.commands.eval import check_report, prf
from streams.detectors.nab import congestion_detector, evaluate, load_series
from streams.detectors.traffic import CongestionConfig
from tests.jobs.test_demo import ENV, run_cli

pytestmark = pytest.mark.e2e
NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
NAB_FILE = "speed_t4013.csv"


def trimmed_nab(target: Path) -> Path:
    """The last ~1,600 readings of one NAB series (about 5.5 days, holding both its labelled
    windows) with its windows file."""
    target.mkdir()
    lines = (NAB / NAB_FILE).read_text().splitlines()
    (target / NAB_FILE).write_text("\n".join([lines[0], *lines[-1600:]]) + "\n")
    windows = json.loads((NAB / "combined_windows.json").read_text())
    (target / "combined_windows.json").write_text(json.dumps({NAB_FILE: windows[NAB_FILE]}))
    return target


@pytest.mark.slow  # ~40 s: a real broker and worker through both evaluations (make test neared 15 min)
@pytest.mark.skipif(not NAB.exists(), reason="needs ../shared/data/nab")
def test_eval_on_a_small_slice_checks_its_own_arithmetic(tmp_path):
    out = tmp_path / "eval.json"
    # a detector setting through the environment reaches the worker eval runs (its log) and the report
    env = {**ENV, "CITYFLOW_DETECTOR_WIFI_LATENCY": '{"severity": "critical"}'}
    proc = run_cli(["eval", "--days", "0.5", "--rate", "0.5", "--warmup-h", "3", "--workdir", str(tmp_path / "work"),
                    "--kinds", "logistics.cold_chain,wifi.latency", "--data", str(trimmed_nab(tmp_path / "nab")),
                    "--out", str(out)], tmp_path, env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())

    assert check_report(report) == [] and report["consistent"]
    inc = report["incidents"]
    assert {r["kind"] for r in inc["kinds"]} == {"logistics.cold_chain", "wifi.latency"}
    assert sum(r["tp"] for r in inc["kinds"]) >= 1, inc["kinds"]
    assert inc["clean"]["device_hours"] > 0
    (nab_row,) = report["nab"]["files"]
    assert nab_row["file"] == NAB_FILE and nab_row["windows"] == 2
    assert report["nab"]["sent"]["traffic"] == 1600
    assert report["nab"]["timezone"] == "America/Chicago"
    # worker == offline: same contract (speed only, occupancy null), same zone, same buckets
    # (whole-week local shift), same window size; the offline scorer finds both windows here
    offline = evaluate(load_series(tmp_path / "nab"), congestion_detector(CongestionConfig()))[0]
    assert offline.tp == 2
    assert (nab_row["tp"], nab_row["fp"], nab_row["fn"]) == (offline.tp, offline.fp, offline.fn)
    assert nab_row["delays_min"] == pytest.approx(list(offline.delays_min), abs=5.0)  # aligned windows
    assert "logistics.cold_chain" in proc.stdout and NAB_FILE in proc.stdout  # the tables
    assert report["detector_configs"]["wifi.latency"]["severity"] == "critical"
    assert report["detector_configs"]["logistics.cold_chain"]["severity"] == "critical"  # its default
    assert report["detector_configs"]["wifi.auth_burst"]["z_threshold"] == 6.0
    assert 'detector settings: wifi.latency {"severity": "critical"}' in proc.stdout
    worker_logs = "".join(p.read_text() for p in (tmp_path / "work").rglob("worker.log"))
    assert worker_logs.count('settings={"wifi.latency": {"severity": "critical"}}') >= 2, worker_logs[-2000:]

    # the check is not vacuous: a tampered score is caught
    bad = copy.deepcopy(report)
    bad["incidents"]["kinds"][0]["f1"] += 0.1
    bad["nab"]["overall"]["tp"] += 1
    assert len(check_report(bad)) >= 2


def test_prf_from_counts():
    assert prf(3, 1, 1) == {"precision": 0.75, "recall": 0.75, "f1": 0.75}
    assert prf(0, 0, 2) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
