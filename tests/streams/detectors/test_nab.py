"""NAB realTraffic offline scoring: the arithmetic on hand-made alerts, and a run on the real
files (skipped when ../shared/data/nab is absent) that checks its own sums. No score target is
asserted: that is a measurement, reported by the evaluation, not a test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streams.detectors import CongestionConfig
from streams.detectors.nab import (
    Series,
    Totals,
    f1,
    load_series,
    report,
    score_file,
    signal_of,
    window_rows,
)

NAB_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "nab"
H = 3_600_000


def test_window_level_scoring_rule():
    series = Series("speed_x.csv", "avg_speed_kmh", np.arange(0, 100 * H, H // 12), np.ones(1200),
                    ((10 * H, 20 * H), (50 * H, 60 * H), (80 * H, 90 * H)))
    alerts = np.array([12 * H, 13 * H, 55 * H, 30 * H, 70 * H, 95 * H])
    s = score_file(series, alerts)
    assert (s.tp, s.fp, s.fn, s.alerts) == (2, 3, 1, 6)  # two alerts in one window count once
    assert s.delays_min == (120.0, 300.0)
    assert s.precision == pytest.approx(2 / 5) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 2 / (2 * 2 + 3 + 1))
    empty = score_file(series, np.empty(0, np.int64))
    assert (empty.tp, empty.fp, empty.fn, empty.f1) == (0, 0, 3, 0.0)


def test_series_become_window_rows_of_the_right_field():
    assert signal_of("speed_6005.csv")[0] == "avg_speed_kmh"
    assert signal_of("occupancy_t4013.csv")[0] == "avg_occupancy_pct"
    assert signal_of("TravelTime_451.csv")[0] == "avg_travel_time_s"
    with pytest.raises(ValueError, match="cannot tell the signal"):
        signal_of("flow_1.csv")
    series = Series("speed_1.csv", "avg_speed_kmh", np.array([600_000, 0, 300_000]), np.array([3.0, 1.0, 2.0]), ())
    rows = window_rows(series).to_pylist()
    assert [r["window_start"] for r in rows] == [0, 300_000, 600_000]
    assert [r["avg_speed_kmh"] for r in rows] == [1.0, 2.0, 3.0]
    assert rows[0]["window_end"] == 300_000 and rows[0]["vehicle_count"] is None
    assert rows[0]["avg_occupancy_pct"] is None and rows[0]["avg_travel_time_s"] is None


def test_any_directory_in_the_nab_layout_is_scored(tmp_path):
    ts = np.datetime64("2015-09-01T00:00") + np.arange(12 * 24 * 14) * np.timedelta64(5, "m")
    rng = np.random.default_rng(0)
    hours = (np.arange(len(ts)) % 288) / 12
    speed = 60 - 15 * np.exp(-((hours - 8) ** 2)) + rng.normal(0, 2, len(ts))
    speed[12 * 24 * 12 + 96: 12 * 24 * 12 + 108] = 12  # a collapse on day 12, 08:00-09:00
    lines = ["timestamp,value", *(f"{str(t).replace('T', ' ')}:00,{v:.0f}" for t, v in zip(ts, speed, strict=True))]
    (tmp_path / "speed_demo.csv").write_text("\n".join(lines))
    (tmp_path / "combined_windows.json").write_text(json.dumps(
        {"speed_demo.csv": [["2015-09-13 06:00:00.000000", "2015-09-13 12:00:00.000000"]]}))
    out = report(tmp_path, CongestionConfig(), lofo=False)
    assert out["files"][0]["tp"] == 1 and out["files"][0]["fp"] == 0
    assert 0 < out["files"][0]["mean_delay_min"] <= 130


@pytest.mark.skipif(not NAB_DIR.is_dir(), reason=f"NAB data not found at {NAB_DIR}")
def test_real_nab_files_score_and_the_sums_add_up():
    series = load_series(NAB_DIR)
    assert {s.name for s in series} >= {"speed_6005.csv", "occupancy_6005.csv", "speed_t4013.csv",
                                         "TravelTime_387.csv"}
    out = report(NAB_DIR, CongestionConfig(), lofo=False)
    files = out["files"]
    windows = json.loads((NAB_DIR / "combined_windows.json").read_text())
    for f in files:
        assert f["tp"] + f["fn"] == f["windows"] == len(windows[f["file"]])
        assert f["tp"] + f["fp"] <= f["alerts"]  # a found window holds >= 1 alert; the rest are FP
        assert f["precision"] == pytest.approx(f["tp"] / (f["tp"] + f["fp"]) if f["tp"] + f["fp"] else 0.0)
        assert f["recall"] == pytest.approx(f["tp"] / f["windows"])
        assert f["f1"] == pytest.approx(f1(f["tp"], f["fp"], f["fn"]))
    tp, fp, fn = (sum(f[k] for f in files) for k in ("tp", "fp", "fn"))
    overall = out["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (tp, fp, fn)
    p, r = tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn)
    assert overall["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
    assert overall["f1"] == pytest.approx(Totals(tp, fp, fn, ()).f1)
