"""The vectorised congestion step (all baselines of a step at once: `stats_of_signals`,
`update_signals`) against the step loop it replaced, kept here verbatim as the reference (but for
one later rule change, marked, which both sides got): a multi-day
city with jams and a travel-time signal, fed in big batches, gives identical alerts and state."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from streams.detectors import CongestionConfig, DetectorState
from streams.detectors import baseline as baseline_module
from streams.detectors.base import Alerts, select_rows
from streams.detectors.baseline import BandStats, Baseline, _nanmedian_rows
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
                st = reference_stats(bl, state, c, b, min_n[idx])
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
                passes = (z >= cfg.z_threshold) & big & valid
                any_valid |= valid
                all_pass &= passes | ~np.isfinite(x)  # a present signal needs a warm baseline (i13-quality)
                score = np.where(valid, np.minimum(score, z), score)
                seen[signal] = (x, st, valid)
            hot = any_valid & all_pass & ~(rows.columns[COUNT][idx] == 0)
            for j in np.flatnonzero(reference_incident_starts(state, c, ws, hot, cfg.clear_s, cfg.min_hot_windows)):
                self._alert(alerts, rows, int(idx[j]), seen, int(j), float(score[j]))
            for signal, bl in self.baselines.items():
                reference_update(bl, state, c, b, rows.columns[signal][idx], size_s[idx], min_n[idx])
        return alerts.table()


# Baseline.stats, Baseline.update and incident_starts as they were (with np.nan_to_num)


def reference_stats(bl: Baseline, state: DetectorState, codes: np.ndarray, buckets: np.ndarray,
                    min_n: np.ndarray) -> BandStats:
    s = bl.signal
    n_all = np.nan_to_num(state[f"{s}_n"][codes])
    mean_all = state[f"{s}_mean"][codes]
    sd_all = np.sqrt(np.maximum(state[f"{s}_var"][codes], 0.0))
    warm = n_all >= min_n[:, None]
    rows = np.arange(len(codes))
    mean, sd, n = mean_all[rows, buckets], sd_all[rows, buckets], n_all[rows, buckets]
    with np.errstate(divide="ignore", invalid="ignore"):
        if bl.relative:
            spread = np.where(warm & (np.abs(mean_all) > 0), sd_all / np.abs(mean_all), np.nan)
        else:
            spread = np.where(warm, sd_all, np.nan)
    typical = _nanmedian_rows(spread)
    floor = typical * np.abs(mean) if bl.relative else typical
    return BandStats(mean, np.fmax(sd, floor), n)


def reference_update(bl: Baseline, state: DetectorState, codes: np.ndarray, buckets: np.ndarray,
                     x: np.ndarray, window_size_s: np.ndarray, warm_n: np.ndarray) -> None:
    ok = np.isfinite(x)
    if not ok.any():
        return
    c, b, x, warm_n = codes[ok], buckets[ok], x[ok], warm_n[ok]
    s = bl.signal
    n = np.nan_to_num(state[f"{s}_n"][c, b]) + 1.0
    mean = state[f"{s}_mean"][c, b]
    var = state[f"{s}_var"][c, b]
    first = n == 1.0
    mean = np.where(first, x, mean)
    var = np.where(first, 0.0, var)
    band = bl.clip_sd * np.maximum(np.sqrt(var), bl.min_sd)
    clipped = np.where(n > warm_n, np.clip(x, mean - band, mean + band), x)
    alpha = np.maximum(window_size_s[ok] / (bl.tod.bucket_s * bl.memory_days), 1.0 / n)
    delta = clipped - mean
    state[f"{s}_mean"][c, b] = mean + alpha * delta
    state[f"{s}_var"][c, b] = (1.0 - alpha) * (var + alpha * delta * delta)
    state[f"{s}_n"][c, b] = n


def reference_incident_starts(state: DetectorState, codes: np.ndarray, ws: np.ndarray, hot: np.ndarray,
                              clear_s: float, min_hot: int = 1) -> np.ndarray:
    last = state["last_hot"][codes, 0]
    open_ = (ws - last) <= clear_s * 1000.0
    n = np.where(open_, np.nan_to_num(state["hot_n"][codes, 0]), 0.0) + hot
    state["hot_n"][codes[hot], 0] = n[hot]
    state["last_hot"][codes[hot], 0] = ws[hot]
    return hot & (n == min_hot)


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
    return windows.set_column(windows.schema.get_field_index(TRAVEL_TIME), TRAVEL_TIME,
                              pa.array(travel, pa.float64(), from_pandas=True))


@pytest.mark.parametrize("config", [CongestionConfig(), CongestionConfig(warmup_s=0.0, min_hot_windows=2,
                                                                            z_threshold=3.0)],
                         ids=["default", "eager"])
@pytest.mark.parametrize("batching", ["one", "daily", "halves"])
@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "signal-by-signal"])
def test_vectorised_congestion_step_equals_the_step_loop(city, config, batching, stacked, monkeypatch):
    if not stacked:  # the path of steps of many entities (a worker's 5,000 detectors)
        monkeypatch.setattr(baseline_module, "_STACK_MAX_ROWS", 0)
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
