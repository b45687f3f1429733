"""Wi-Fi detectors on the simulator's access points (shopping hours, zoo and school days,
trams out of service at night, spontaneous short outages) through the real window engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from streams.detectors.base import DetectorState
from streams.detectors.wifi import ApDownConfig, AuthBurstConfig, LatencyConfig
from tests.support.simulated_city import (
    MIN,
    ap_readings,
    daily_batches,
    local_ms,
    run,
    wifi_windows,
)

ZOO = "ap-zoo-002"


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    return ap_readings(9)


def test_auth_and_latency_silent_on_ordinary_days(week):
    windows = wifi_windows(week)
    assert week["auth_failures"].max() >= 3 and (week["status"] == "down").any()
    for config in (AuthBurstConfig(), LatencyConfig()):
        alerts = run(config.build(), windows, daily_batches(windows))
        assert alerts.num_rows == 0, alerts.column("evidence").to_pylist()


def _down_runs_oracle(windows: pa.Table, min_windows: int) -> list[tuple[str, int]]:
    """Independent recompute: runs of consecutive all-down 5-min windows, >= min_windows long."""
    f = windows.to_pandas().sort_values(["entity", "window_start"])
    f["down"] = (f["down_count"] > 0) & (f["down_count"] >= f["n_events"])
    out = []
    for entity, g in f.groupby("entity"):
        run_start, length, prev_end = None, 0, None
        for ws, we, down in zip(g["window_start"], g["window_end"], g["down"], strict=True):
            if down and run_start is not None and prev_end is not None and ws - prev_end <= 600_000:
                length += 1
            elif down:
                run_start, length = ws, 1
            else:
                run_start, length = None, 0
            if down and length == min_windows:
                out.append((entity, int(run_start)))
            prev_end = we
    return sorted(out)


def test_ap_down_reports_exactly_the_long_outages(week):
    windows = wifi_windows(week)
    alerts = run(ApDownConfig().build(), windows, daily_batches(windows))
    got = sorted(zip(alerts.column("entity").to_pylist(), alerts.column("window_start").to_pylist(), strict=True))
    expected = _down_runs_oracle(windows, 3)
    assert got == expected  # the simulator's own outages of 15 min and more; short ones are silent
    assert all("every report 'down'" in e for e in alerts.column("evidence").to_pylist())


def test_ap_down_reports_an_ap_gone_silent(week):
    start = local_ms(7, 13.0)
    frame = week[~((week["ap_id"] == "ap-bus-004") & (week["ts"] >= start) & (week["ts"] < start + 40 * MIN))]
    alerts = run(ApDownConfig(min_down_s=1e9).build(), wifi_windows(frame)).to_pylist()
    assert [(a["entity"], a["window_start"]) for a in alerts] == [("ap-bus-004", start)]
    assert "silent since" in alerts[0]["evidence"]


def test_auth_burst_fires_once_on_a_brute_force(week):
    frame = week.copy()
    start = local_ms(8, 15.0)  # Tuesday afternoon, the zoo is busy
    sel = (frame["ap_id"] == ZOO) & (frame["ts"] >= start) & (frame["ts"] < start + 30 * MIN)
    frame.loc[sel, "auth_failures"] += 40  # 200 a window on top of the normal failures
    alerts = run(AuthBurstConfig().build(), wifi_windows(frame)).to_pylist()
    assert [(a["entity"], a["window_start"]) for a in alerts] == [(ZOO, start)]
    assert "failed logins in 5 min vs baseline" in alerts[0]["evidence"]


def test_auth_burst_on_a_new_ap_needs_the_absolute_threshold():
    ws = np.array([local_ms(0, 10.0) + k * 5 * MIN for k in range(4)])
    table = pa.table({"source": ["wifi"] * 4, "window_start": ws, "entity": ["ap-new"] * 4,
                      "auth_failures": [3, 150, 250, 260], "district": ["Mitte"] * 4, "version": [0] * 4,
                      "window_end": ws + 5 * MIN, "kafka_partition": [0] * 4})
    alerts = run(AuthBurstConfig().build(), table).to_pylist()
    assert [(a["window_start"], a["evidence"]) for a in alerts] == [
        (int(ws[2]), "250 failed logins in 5 min vs no baseline yet")]


def test_latency_fires_on_a_sustained_degradation_not_a_single_slow_window(week):
    start = local_ms(8, 11.0)
    frame = week.copy()
    sel = (frame["ap_id"] == "ap-street-001") & (frame["ts"] >= start) & (frame["ts"] < start + 30 * MIN)
    frame.loc[sel, "latency_ms"] += 400
    alerts = run(LatencyConfig().build(), wifi_windows(frame)).to_pylist()
    assert [(a["entity"], a["window_start"]) for a in alerts] == [("ap-street-001", start + 5 * MIN)]
    one = week.copy()
    sel = (one["ap_id"] == "ap-street-001") & (one["ts"] >= start) & (one["ts"] < start + 5 * MIN)
    one.loc[sel, "latency_ms"] += 400
    assert run(LatencyConfig().build(), wifi_windows(one)).num_rows == 0


@pytest.mark.parametrize("config", [AuthBurstConfig(), ApDownConfig(), LatencyConfig()],
                         ids=lambda c: type(c).__name__)
def test_alerts_and_state_do_not_depend_on_batching(week, config):
    frame = week.copy()
    start = local_ms(8, 15.0)
    sel = (frame["ap_id"] == ZOO) & (frame["ts"] >= start) & (frame["ts"] < start + 30 * MIN)
    frame.loc[sel, "auth_failures"] += 40
    frame.loc[sel, "latency_ms"] += 400
    frame = frame[~((frame["ap_id"] == "ap-bus-004") & (frame["ts"] >= start) & (frame["ts"] < start + 40 * MIN))]
    windows = wifi_windows(frame).sort_by([("window_start", "ascending"), ("entity", "ascending")])
    one = run(config.build(), windows)
    assert one.num_rows >= 1
    n = windows.num_rows
    assert run(config.build(), windows, [n // 5, n // 2, n // 2 + 1, 4 * n // 5]).equals(one)
    detector = config.build()
    state = detector.new_state()
    cut = int(np.searchsorted(windows.column("window_start").to_numpy(), start + 10 * MIN))
    first = detector.detect(windows.slice(0, cut), state)
    second = detector.detect(windows.slice(cut), DetectorState.from_table(state.to_table()))
    assert pa.concat_tables([first, second]).equals(one)
