"""Supply detectors on hand-made 15-min windows: outage and out-of-band voltage on feeders,
pressure drop, hot return with flow, and the water leak's nightly judgement (baseline of the
point's own nights, one alert per leak, leak nights not learned, any batching)."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from streams.detectors.base import DetectorState
from streams.detectors.supply import (
    PowerOutageConfig,
    PressureDropConfig,
    ReturnTooHotConfig,
    WaterLeakConfig,
)

Q = 900_000  # a 15-min window in ms
BERLIN = ZoneInfo("Europe/Berlin")
DAY0 = int(datetime(2026, 11, 2, tzinfo=BERLIN).timestamp() * 1000)  # a Monday, local midnight


def windows(entity: str, starts: list[int], **columns: list[float | None]) -> pa.Table:
    n = len(starts)
    cols = {"source": ["supply"] * n, "entity": [entity] * n, "district": ["Mitte"] * n,
            "window_start": starts, "window_end": [s + Q for s in starts], "version": [0] * n}
    cols.update({k: pa.array(v, pa.float64()) for k, v in columns.items()})
    return pa.table(cols)


def detect(config, table: pa.Table, cuts=()) -> list[dict]:
    detector = config.build()
    state = detector.new_state()
    bounds = [0, *cuts, table.num_rows]
    out = []
    for a, b in itertools.pairwise(bounds):
        state = DetectorState.from_table(state.to_table())  # landed and restored between batches
        out += detector.detect(table.slice(a, b - a), state).to_pylist()
    return out


def test_outage_fires_once_on_a_dead_feeder_or_a_voltage_out_of_band_not_on_a_quiet_night():
    starts = [DAY0 + i * Q for i in range(12)]
    load = [300.0, 120.0, 0.0, 0.0, 0.0, 250.0, 240.0, 230.0, 220.0, 210.0, 40.0, 35.0]
    lo = [226.0, 229.0, 0.0, 0.0, 0.0, 228.0, 228.0, 196.0, 228.0, 228.0, 233.0, 234.0]
    hi = [231.0, 233.0, 0.0, 0.0, 0.0, 232.0, 232.0, 231.0, 232.0, 232.0, 236.0, 236.0]
    alerts = detect(PowerOutageConfig(), windows("feeder-0001", starts, max_load_kw=load, min_voltage_v=lo,
                                                 max_voltage_v=hi))
    assert [(a["kind"], a["window_start"], a["window_end"]) for a in alerts] == [
        ("supply.power_outage", starts[2], starts[3]), ("supply.power_outage", starts[7], starts[8])]
    assert "voltage down to 196 V" in alerts[1]["evidence"]


def test_other_asset_types_never_count_as_outages():
    starts = [DAY0 + i * Q for i in range(4)]
    none = [None] * 4
    table = windows("water-0001", starts, max_load_kw=none, min_voltage_v=none, max_voltage_v=none)
    assert detect(PowerOutageConfig(), table) == []


def test_pressure_drop_and_hot_return_need_their_condition_for_their_duration():
    starts = [DAY0 + i * Q for i in range(8)]
    pressure = [4.2, 4.0, 1.2, 1.3, 4.1, 1.9, 4.3, 4.4]
    alerts = detect(PressureDropConfig(), windows("water-0002", starts, avg_pressure_bar=pressure))
    assert [a["window_start"] for a in alerts] == [starts[2], starts[5]]
    ret = [42.0, 60.0, 61.0, 44.0, 62.0, 63.0, 64.0, 41.0]
    flow = [2.0, 2.0, 2.0, 2.0, 0.0, 2.0, 2.0, 2.0]  # no flow in window 4: no verdict, the run restarts
    alerts = detect(ReturnTooHotConfig(), windows("heat-0003", starts, avg_return_temp_c=ret, avg_heat_flow_m3h=flow))
    assert [(a["window_start"], a["window_end"]) for a in alerts] == [(starts[1], starts[3]), (starts[5], starts[7])]


def _nights(mnf: list[float], entity: str = "water-0004") -> pa.Table:
    """Per day, the night windows 02:00-04:00 local (min flow = that night's MNF + a little)
    and one daytime window (12:00) that closes the night."""
    starts, flows = [], []
    for d, m in enumerate(mnf):
        for q in range(8):
            starts.append(DAY0 + d * 86_400_000 + 2 * 3_600_000 + q * Q)
            flows.append(m + (0.0 if q == 4 else 1.5))
        starts.append(DAY0 + d * 86_400_000 + 12 * 3_600_000)
        flows.append(m * 3)
    return windows(entity, starts, min_water_flow_m3h=flows)


@pytest.mark.parametrize("cuts", [(), (5,), (9, 18, 30), tuple(range(1, 60, 4))])
def test_leak_alerts_once_when_the_night_minimum_rises_and_never_learns_the_leak(cuts):
    mnf = [20.0, 21.0, 19.5, 20.5, 30.0, 31.0, 30.5, 20.2, 20.4, 29.0]
    alerts = detect(WaterLeakConfig(), _nights(mnf), cuts)
    night = lambda d: DAY0 + d * 86_400_000 + 2 * 3_600_000
    assert [(a["window_start"], a["window_end"]) for a in alerts] == [
        (night(4), night(4) + 2 * 3_600_000), (night(9), night(9) + 2 * 3_600_000)]
    assert alerts[0]["observed"] == 30.0 and alerts[0]["expected"] == 20.25  # median of nights 0-3
    assert "minimum night flow 30.0 m³/h" in alerts[0]["evidence"]


def test_leak_needs_history_and_a_rise_beyond_both_thresholds():
    assert detect(WaterLeakConfig(), _nights([20.0, 40.0])) == []  # one night of history: no verdict
    assert detect(WaterLeakConfig(), _nights([20.0, 20.0, 20.0, 23.5])) == []  # +17 %: within the nights' spread
    assert detect(WaterLeakConfig(), _nights([5.0, 5.0, 5.0, 6.8])) == []  # +36 % but 1.8 m³/h
    assert len(detect(WaterLeakConfig(), _nights([5.0, 5.0, 5.0, 7.5]))) == 1


def test_leak_ignores_feeders_and_heating_windows():
    starts = [DAY0 + i * Q for i in range(200)]
    table = windows("feeder-0005", starts, min_water_flow_m3h=[None] * 200)
    assert detect(WaterLeakConfig(), table) == []
