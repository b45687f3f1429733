"""The vectorised congestion step (all baselines of a step at once: `stats_of_signals`,
`update_signals`) against the step loop it replaced, kept here as the reference: a multi-day
city with jams and a travel-time signal, fed in big batches, gives identical alerts and state."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from streams.detectors import CongestionConfig, DetectorState
from streams.detectors.base import Alerts, incident_starts, select_rows
from streams.detectors.traffic import COUNT, OCCUPANCY, SOURCE, SPEED, TRAVEL_TIME, Congestion
from tests.support.simulated_city import daily_batches, jam, local_ms, readings, run, windows_of


class ReferenceCongestion(Congestion):
    """Congestion as it was before the vectorised step: one `Baseline.stats` and one
    `Baseline.update` per signal per step."""

    def detect(self, windows: pa.Table, state: DetectorState, raw: pa.Table | None = None) -> pa.Table:
        cfg = self.config
        rows = select_rows(windows, SOURCE, state, (SPEED, OCCUPANCY, TRAVEL_TIME, COUNT))
        rows.columns[SPEED] = np.where(rows.columns[COUNT] == 0, np.nan, rows.columns[SPEED])
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.columns[TRAVEL_TIME] = np.where(rows.columns[TRAVEL_TIME] > 0, np.log(rows.columns[TRAVEL_TIME]), np.nan)
        alerts = Alerts(self.name, SOURCE, self.severity)
        buckets = self.tod.bucket(rows.window_start)
        size_s = (rows.window_end - rows.window_start) / 1000.0
        min_n = cfg.warmup_s / np.maximum(size_s, 1.0)
        for idx in rows.steps():
            c, b, ws = rows.codes[idx], buckets[idx], rows.window_start[idx]
            any_valid = np.zeros(len(idx), dtype=bool)
            all_pass = np.ones(len(idx), dtype=bool)
            score = np.full(len(idx), np.inf)
            seen = {}
            for signal, bl in self.baselines.items():
                x = rows.columns[signal][idx]
                st = bl.stats(state, c, b, min_n[idx])
                valid = np.isfinite(x) & np.isfinite(st.mean) & (st.n >= min_n[idx])
                if signal == SPEED:
                    sd = np.maximum(st.sd, cfg.sd_floor_rel * np.abs(st.mean))
                    z = (st.mean - x) / sd
                    big = x <= (1 - cfg.min_speed_drop) * st.mean
                elif signal == TRAVEL_TIME:
                    sd = np.maximum(st.sd, cfg.sd_floor_rel)
                    z = (x - st.mean) / sd
                    big = x - st.mean >= -np.log1p(-cfg.min_speed_drop)
                else:
                    sd = np.maximum(st.sd, cfg.sd_floor_rel * np.abs(st.mean))
                    z = (x - st.mean) / np.where(sd > 0, sd, 1e-9)
                    big = x >= st.mean + cfg.min_occupancy_rise_pct
                passes = (z >= cfg.z_threshold) & big
                any_valid |= valid
                all_pass &= passes | ~valid
                score = np.where(valid, np.minimum(score, z), score)
                seen[signal] = (x, st, valid)
            hot = any_valid & all_pass & ~(rows.columns[COUNT][idx] == 0)
            for j in np.flatnonzero(incident_starts(state, c, ws, hot, cfg.clear_s, cfg.min_hot_windows)):
                self._alert(alerts, rows, int(idx[j]), seen, int(j), float(score[j]))
            for signal, bl in self.baselines.items():
                bl.update(state, c, b, rows.columns[signal][idx], size_s[idx], min_n[idx])
        return alerts.table()


@pytest.fixture(scope="module")
def city() -> pa.Table:
    """Eight days of eight detectors with two jams, plus a travel time per window (log-normal
    around the speed's, missing now and then), so all three baselines are exercised."""
    frame = readings(8, n_detectors=8, seed=23)
    frame = jam(frame, "tdet-0002", local_ms(5, 8.0), local_ms(5, 9.5))
    frame = jam(frame, "tdet-0006", local_ms(6, 17.0), local_ms(6, 18.0), speed_factor=0.4)
    frame = jam(frame, "tdet-0006", local_ms(7, 13.0), local_ms(7, 13.5), speed_factor=0.3)
    windows = windows_of(frame)
    rng = np.random.default_rng(3)
    speed = windows.column("avg_speed_kmh").to_numpy(zero_copy_only=False).astype(float)
    travel = 500.0 / np.where(speed > 0, speed, np.nan) * 3.6 * rng.lognormal(0.0, 0.1, len(speed))
    travel[rng.random(len(speed)) < 0.05] = np.nan
    return windows.append_column(TRAVEL_TIME, pa.array(travel, pa.float64(), from_pandas=True))


@pytest.mark.parametrize("config", [CongestionConfig(), CongestionConfig(warmup_s=0.0, min_hot_windows=2,
                                                                            z_threshold=3.0)],
                         ids=["default", "eager"])
@pytest.mark.parametrize("batching", ["one", "daily", "halves"])
def test_vectorised_congestion_step_equals_the_step_loop(city, config, batching):
    n = city.num_rows
    cuts = {"one": [], "daily": daily_batches(city), "halves": [n // 2]}[batching]
    new, old = config.build(), ReferenceCongestion(config)
    new_state, old_state = new.new_state(), old.new_state()
    got = run(new, city, cuts, state=new_state)
    want = run(old, city, cuts, state=old_state)
    assert want.num_rows >= 1
    assert got.column_names == want.column_names
    for name in got.column_names:
        a, b = got.column(name), want.column(name)
        if pa.types.is_floating(a.type):
            np.testing.assert_allclose(a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False),
                                       rtol=1e-9, equal_nan=True)
        else:
            assert a.equals(b), name
    ta, tb = new_state.to_table(), old_state.to_table()
    assert ta.schema.equals(tb.schema, check_metadata=True)
    assert ta.column("entity").equals(tb.column("entity"))
    for name in ta.column_names[1:]:
        np.testing.assert_allclose(pc.list_flatten(ta.column(name)).to_numpy(zero_copy_only=False),
                                   pc.list_flatten(tb.column(name)).to_numpy(zero_copy_only=False),
                                   rtol=1e-9, equal_nan=True)
