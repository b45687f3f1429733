"""The detectors score a batch at once (baselines learned per (entity, time-of-day bucket) and
looked back at, runs and incidents as segments: streams/detectors/base.py) instead of window
step by window step. Against the step loops they replaced (tests/support/step_reference.py,
verbatim), on a simulated city with injected incidents of every kind, on traffic with jams and
a travel-time signal, and on the NAB series, under several batch cuts: the alerts are equal
and the state is equal bit for bit (NaN where NaN)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from contracts.windows import WINDOW_DEFAULTS
from streams.detectors import (
    ApDownConfig,
    AuthBurstConfig,
    ColdChainConfig,
    CongestionConfig,
    DetectorState,
    EnergySpikeConfig,
    LatencyConfig,
    OnInDaylightConfig,
    StalledConfig,
    StuckConfig,
)
from streams.detectors.base import RunDetector
from streams.detectors.nab import NAB_TIMEZONE, load_series, window_rows
from streams.detectors.traffic import TRAVEL_TIME
from streams.incidents import DEVICE_KINDS, IncidentPlan
from streams.simulator import generate
from tests.support import step_reference as ref
from tests.support.simulated_city import (
    CITY_COLUMNS,
    CITY_RATE,
    T0_UTC,
    _engine_windows,
    city_frames,
    daily_batches,
    jam,
    local_ms,
    readings,
    windows_of,
)
from tests.support.simulated_city import run as run_batches

NAB_DIR = "/work/shared/data/nab"
# `make test` runs one uneven batching of each case (the old loops are slow: ~1 min in all);
# the other batchings run with the slow tests
BATCHINGS = ["random", *(pytest.param(b, marks=pytest.mark.slow) for b in ("one", "daily", "small"))]

REFERENCE = {
    "traffic.congestion": ref.ReferenceCongestion,
    "traffic.stuck": ref.ReferenceStuck,
    "lighting.energy_spike": ref.ReferenceEnergySpike,
    "wifi.auth_burst": ref.ReferenceAuthBurst,
    "wifi.latency": ref.ReferenceLatency,
}

# each kind with its defaults and an eager configuration that fires often (many incidents,
# runs and carried-over state to get wrong)
CONFIGS = {
    "traffic.congestion": [CongestionConfig(), CongestionConfig(warmup_s=0.0, min_hot_windows=2, z_threshold=2.0,
                                                                min_speed_drop=0.05, min_occupancy_rise_pct=0.0)],
    "traffic.stuck": [StuckConfig(), StuckConfig(min_flat_s=60.0, min_windows=2, max_gap_s=3600.0)],
    "lighting.energy_spike": [EnergySpikeConfig(), EnergySpikeConfig(z_threshold=1.0, min_ratio=1.0,
                                                                     min_increase_w=0.0, warmup_s=0.0)],
    "wifi.auth_burst": [AuthBurstConfig(), AuthBurstConfig(min_failures=1.0, min_ratio=1.0, z_threshold=0.5,
                                                           absolute_failures=15.0, warmup_s=0.0, clear_s=300.0)],
    "wifi.latency": [LatencyConfig(), LatencyConfig(z_threshold=1.0, min_ratio=1.0, min_increase_ms=0.0,
                                                    min_hot_windows=2, warmup_s=0.0, clear_s=300.0)],
    "lighting.on_in_daylight": [OnInDaylightConfig(), OnInDaylightConfig(daylight_lux=20.0, min_duration_s=900.0)],
    "wifi.ap_down": [ApDownConfig(), ApDownConfig(min_down_s=300.0, silence_s=300.0)],
    "logistics.cold_chain": [ColdChainConfig(), ColdChainConfig(max_temp_c=4.0, min_duration_s=300.0)],
    "logistics.stalled": [StalledConfig(), StalledConfig(max_speed_kmh=20.0, min_duration_s=300.0)],
}


class _ReferenceRuns:
    """A RunDetector kind with RunDetector.detect as it was (the step loop)."""

    def __init__(self, detector: RunDetector):
        self.inner = detector

    def new_state(self) -> DetectorState:
        return self.inner.new_state()

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        return ref.reference_run_detect(self.inner, windows, state)


class _RunsOnly:
    """wifi.ap_down's down runs only: its own detect adds silences, decided on closed windows
    since i13-once, which the old loop did differently (tests/streams/detectors/test_batch_cuts.py
    covers those)."""

    def __init__(self, detector: RunDetector):
        self.inner = detector

    def new_state(self) -> DetectorState:
        return self.inner.new_state()

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        return RunDetector.detect(self.inner, windows, state)


def reference_of(config):
    detector = config.build()
    if isinstance(detector, RunDetector):
        return _ReferenceRuns(detector)
    return REFERENCE[detector.name](config)


def cuts_of(windows: pa.Table, batching: str) -> list[int]:
    n = windows.num_rows
    if batching == "one":
        return []
    if batching == "daily":
        return daily_batches(windows)
    if batching == "random":  # uneven batches, some a handful of windows
        return sorted(set(np.random.default_rng(5).integers(1, n, 40).tolist()))
    return list(range(997, n, 997))  # "small": a worker's few windows per entity per batch


def assert_same(got: pa.Table, want: pa.Table, got_state: DetectorState, want_state: DetectorState) -> None:
    assert got.column_names == want.column_names
    assert got.num_rows == want.num_rows
    for name in got.column_names:
        a, b = got.column(name), want.column(name)
        if pa.types.is_floating(a.type):
            assert np.array_equal(a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False), equal_nan=True), name
        else:
            assert a.equals(b), name
    ta, tb = got_state.to_table(), want_state.to_table()
    assert ta.schema.equals(tb.schema, check_metadata=True)
    assert ta.column("entity").equals(tb.column("entity"))
    for name in ta.column_names[1:]:
        assert np.array_equal(pc.list_flatten(ta.column(name)).to_numpy(zero_copy_only=False),
                              pc.list_flatten(tb.column(name)).to_numpy(zero_copy_only=False), equal_nan=True), name


def compare(config, windows: pa.Table, cuts: list[int]) -> int:
    new, old = config.build(), reference_of(config)
    if new.name == "wifi.ap_down":
        new = _RunsOnly(new)
    new_state, old_state = new.new_state(), old.new_state()
    got = run_batches(new, windows, cuts, state=new_state)
    want = run_batches(old, windows, cuts, state=old_state)
    assert_same(got, want, new_state, old_state)
    return want.num_rows


@pytest.fixture(scope="module")
def city() -> dict[str, pa.Table]:
    """Five days of the simulated city with incidents of every kind (one a day each) after a
    two-day warm-up, through the window engine at the worker's window sizes."""
    plan = IncidentPlan(DEVICE_KINDS, 1.0, 2 * 86_400.0)
    events = list(generate(13, CITY_RATE, 5 * 86_400, 1.0, T0_UTC, incidents=plan, labels_out=[]))
    return {s: _engine_windows(f, s, WINDOW_DEFAULTS[s].size_s, ["ts", "entity", "district", "offset", *CITY_COLUMNS[s]])
            for s, f in city_frames(events).items()}


@pytest.mark.parametrize("batching", BATCHINGS)
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_batch_scoring_equals_the_step_loop_on_the_city(city, kind, batching):
    alerts = 0
    for config in CONFIGS[kind]:
        windows = city[config.build().source]
        alerts += compare(config, windows, cuts_of(windows, batching))
    assert alerts >= 1  # the comparison saw alerts, not only silence


@pytest.fixture(scope="module")
def traffic_with_travel_time() -> pa.Table:
    """Eight days of eight detectors with three jams, plus a travel time per window (log-normal
    around the speed's, missing now and then), so all three congestion baselines are used."""
    frame = readings(8, n_detectors=8, seed=23)
    frame = jam(frame, "tdet-0002", local_ms(5, 8.0), local_ms(5, 9.5))
    frame = jam(frame, "tdet-0006", local_ms(6, 17.0), local_ms(6, 18.0), speed_factor=0.4)
    frame = jam(frame, "tdet-0006", local_ms(7, 13.0), local_ms(7, 13.5), speed_factor=0.3)
    windows = windows_of(frame)
    rng = np.random.default_rng(3)
    speed = windows.column("avg_speed_kmh").to_numpy(zero_copy_only=False).astype(float)
    travel = 500.0 / np.where(speed > 0, speed, np.nan) * 3.6 * rng.lognormal(0.0, 0.1, len(speed))
    travel[rng.random(len(speed)) < 0.05] = np.nan
    return windows.set_column(windows.schema.get_field_index(TRAVEL_TIME), TRAVEL_TIME,
                              pa.array(travel, pa.float64(), from_pandas=True))


@pytest.mark.parametrize("batching", BATCHINGS)
@pytest.mark.parametrize("config", CONFIGS["traffic.congestion"], ids=["default", "eager"])
def test_congestion_with_travel_time_equals_the_step_loop(traffic_with_travel_time, config, batching):
    assert compare(config, traffic_with_travel_time, cuts_of(traffic_with_travel_time, batching)) >= 1


@pytest.mark.skipif(not Path(NAB_DIR).is_dir(), reason="NAB data not present")
@pytest.mark.parametrize("batch_rows", [288, *(pytest.param(n, marks=pytest.mark.slow) for n in (37, 100_000))])
def test_congestion_on_nab_equals_the_step_loop(batch_rows):
    alerts = 0
    for series in load_series(NAB_DIR):
        windows = window_rows(series)
        cuts = list(range(batch_rows, windows.num_rows, batch_rows))
        for config in CONFIGS["traffic.congestion"]:
            alerts += compare(replace(config, timezone=NAB_TIMEZONE), windows, cuts)
    assert alerts >= 1
