"""Logistics detectors on the simulator's trucks (hub shuttles, overnight parking, reefers
whose cargo warms at the dock) through the real window engine, with incidents painted in."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from streams.detectors.base import DetectorState
from streams.detectors.logistics import (
    ColdChainConfig,
    ImpossibleJumpConfig,
    StalledConfig,
    haversine_km,
)
from tests.support.simulated_city import MIN, T0, logistics_windows, raw_table, run, truck_fixes

REEFER = "truck-0001"  # index 0: every fifth truck is a reefer


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return truck_fixes(36)


def _jumps(frame: pd.DataFrame, cuts=()) -> pa.Table:
    detector = ImpossibleJumpConfig().build()
    state = detector.new_state()
    raw = raw_table(frame.sort_values(["ts", "vehicle_id"], kind="stable"))
    bounds = [0, *cuts, raw.num_rows]
    return pa.concat_tables([detector.detect(pa.table({}), state, raw.slice(a, b - a))
                             for a, b in itertools.pairwise(bounds)])


def test_silent_on_a_day_and_a_half_of_ordinary_port_traffic(fleet):
    windows = logistics_windows(fleet)
    assert set(fleet["status"]) == {"moving", "idle", "loading", "unloading"}
    assert fleet.loc[fleet["vehicle_id"] == REEFER, "cargo_temp_c"].notna().all()
    for config in (ColdChainConfig(), StalledConfig()):
        assert run(config.build(), windows).num_rows == 0
    assert _jumps(fleet).num_rows == 0


def _warm(frame: pd.DataFrame, start: int, minutes: int, temp: float = 11.5) -> pd.DataFrame:
    out = frame.copy()
    sel = (out["vehicle_id"] == REEFER) & (out["ts"] >= start) & (out["ts"] < start + minutes * MIN)
    out.loc[sel, "cargo_temp_c"] = temp
    return out


def test_cold_chain_fires_once_on_a_long_excursion_not_on_a_short_one(fleet):
    start = T0 + 10 * 60 * MIN
    alerts = run(ColdChainConfig().build(), logistics_windows(_warm(fleet, start, 40))).to_pylist()
    assert [(a["entity"], a["window_start"], a["window_end"]) for a in alerts] == [
        (REEFER, start, start + 15 * MIN)]
    assert "11.5 °C above 8 °C for 15 min" in alerts[0]["evidence"]
    assert run(ColdChainConfig().build(), logistics_windows(_warm(fleet, start, 10))).num_rows == 0


def _stall(frame: pd.DataFrame, truck: str, start: int, minutes: int) -> pd.DataFrame:
    out = frame.copy()
    sel = (out["vehicle_id"] == truck) & (out["ts"] >= start) & (out["ts"] < start + minutes * MIN)
    out.loc[sel, ["status", "speed_kmh"]] = ["moving", 0.4]
    out.loc[sel, ["lat", "lon"]] = [51.45, 6.75]
    return out


def test_stalled_fires_once_on_a_truck_standing_on_a_trip(fleet):
    start = T0 + 14 * 60 * MIN
    frame = _stall(fleet, "truck-0004", start, 60)
    alerts = run(StalledConfig().build(), logistics_windows(frame)).to_pylist()
    assert [(a["entity"], a["window_start"]) for a in alerts] == [("truck-0004", start)]
    assert run(StalledConfig().build(), logistics_windows(_stall(fleet, "truck-0004", start, 20))).num_rows == 0


def test_impossible_jump_one_alert_for_a_bad_fix_and_its_way_back(fleet):
    frame = fleet.copy()
    when = T0 + 5 * 60 * MIN
    sel = (frame["vehicle_id"] == "truck-0007") & (frame["ts"] == when)
    frame.loc[sel, ["lat", "lon"]] = [51.33, 6.62]  # ~15 km away, for one fix 30 s apart
    alerts = _jumps(frame).to_pylist()
    assert [(a["entity"], a["window_end"]) for a in alerts] == [("truck-0007", when)]
    assert alerts[0]["observed"] > 1000 and "km in 30 s" in alerts[0]["evidence"]
    n = len(frame)
    assert _jumps(frame, cuts=[n // 3, n // 3 + 1, 2 * n // 3]).equals(_jumps(frame))


def test_haversine_is_right_on_a_known_distance():
    # Duisburg Hbf -> Düsseldorf Hbf: 0.21° of latitude, about 23.4 km as the crow flies
    assert haversine_km(np.array([51.4297]), np.array([6.7757]), np.array([51.2198]), np.array([6.7944]))[0] \
        == pytest.approx(23.4, abs=0.6)


@pytest.mark.parametrize("config", [ColdChainConfig(), StalledConfig()], ids=lambda c: type(c).__name__)
def test_alerts_and_state_do_not_depend_on_batching(fleet, config):
    frame = _stall(_warm(fleet, T0 + 10 * 60 * MIN, 40), "truck-0004", T0 + 14 * 60 * MIN, 60)
    windows = logistics_windows(frame).sort_by([("window_start", "ascending"), ("entity", "ascending")])
    one = run(config.build(), windows)
    assert one.num_rows == 1
    n = windows.num_rows
    assert run(config.build(), windows, [n // 4, n // 2, n // 2 + 3, 3 * n // 4]).equals(one)
    detector = config.build()
    state = detector.new_state()
    first = detector.detect(windows.slice(0, n // 2), state)
    second = detector.detect(windows.slice(n // 2), DetectorState.from_table(state.to_table()))
    assert pa.concat_tables([first, second]).equals(one)


@pytest.mark.parametrize("bad", [
    lambda: ColdChainConfig(min_duration_s=0),
    lambda: StalledConfig(max_speed_kmh=-1),
    lambda: ImpossibleJumpConfig(max_speed_kmh=0),
])
def test_configs_are_validated_when_built(bad):
    with pytest.raises(ValueError):
        bad()
