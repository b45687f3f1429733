"""Window engine properties (pure, no broker): final windows equal a batch recompute, results do
not depend on batching, corrections and late events follow the per-event reference semantics."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.windows import WindowGeometry
from streams.windows import WindowEngine
from tests.support.oracle import assert_frames_close, recompute_windows

T0 = 1_795_000_000_000  # some epoch ms on a minute boundary
T0 -= T0 % 60_000


def make_events(ts: list[int], entities: list[str], rng: np.random.Generator) -> pd.DataFrame:
    n = len(ts)
    return pd.DataFrame({
        "ts": np.asarray(ts, dtype=np.int64),
        "detector_id": entities,
        "entity": entities,
        "district": rng.choice(["Mitte", "Süd"], n),
        "offset": np.arange(n, dtype=np.int64),
        "road": "A59", "lane": 1,
        "vehicle_count": rng.integers(0, 30, n),
        "avg_speed_kmh": np.round(rng.random(n) * 120, 3),
        "occupancy_pct": np.round(rng.random(n) * 60, 3),
        # a segment sensor's travel time, null for most readings (loops measure none)
        "travel_time_s": np.where(rng.random(n) < 0.7, np.nan, np.round(rng.random(n) * 600, 1)),
    })


def run_in_batches(engine: WindowEngine, events: pd.DataFrame, cuts: list[int]):
    bounds = sorted({0, len(events), *[c for c in cuts if 0 < c < len(events)]})
    outs = [engine.process(events.iloc[a:b].reset_index(drop=True)) for a, b in pairwise(bounds)]

    def cat(tables: list[pa.Table]) -> pd.DataFrame:
        frames = [t.to_pandas() for t in tables if t.num_rows]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return (cat([o.windows for o in outs]), cat([o.late_events for o in outs]),
            cat([o.district_windows for o in outs]))


def latest(windows: pd.DataFrame, keys=("entity", "window_start")) -> pd.DataFrame:
    return windows.sort_values("version").groupby(list(keys)).last()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    lateness_s=st.integers(0, 90),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_disorder_within_lateness_equals_batch_recompute(seed, n, lateness_s, cuts):
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.integers(0, 20 * 60_000, n))
    # deliver out of order, but never more than the allowed lateness behind the max seen
    delivery = ts + rng.integers(0, lateness_s * 1000 + 1, n)
    order = np.argsort(delivery, kind="stable")
    ents = rng.choice(["a", "b", "c", "d"], n)
    events = make_events(ts[order].tolist(), ents[order].tolist(), rng)

    spec = WindowGeometry(60, allowed_lateness_s=lateness_s, grace_s=300)
    windows, late, _ = run_in_batches(WindowEngine(spec, "traffic"), events, cuts)
    assert late.empty, "no event was later than the allowed lateness"
    wm = int(events["ts"].max()) - lateness_s * 1000
    oracle = recompute_windows(events, "traffic", 60, "entity")
    final = oracle[oracle.index.get_level_values("window_start") + 60_000 <= wm]
    if final.empty:
        assert windows.empty
        return
    got = latest(windows)
    assert (got["version"] == 0).all()
    assert_frames_close(got, final, list(final.columns))


def reference(events: pd.DataFrame, spec: WindowGeometry):
    """Per-event reference semantics, written as a plain loop."""
    size, hop, late_ms, grace = spec.size_s * 1000, spec.hop * 1000, spec.allowed_lateness_s * 1000, spec.grace_s * 1000
    max_ts = None
    content: dict[tuple[str, int], list[int]] = {}
    version: dict[tuple[str, int], int] = {}
    final: set[int] = set()
    ontime: set[tuple[str, int]] = set()  # keys with on-time content (version 0 at finalization)
    late_rows = []
    for i, row in enumerate(events.itertuples()):
        wm = None if max_ts is None else max_ts - late_ms
        first = (row.ts // hop) * hop
        for ws in range(first, row.ts - size, -hop):
            key = (row.entity, ws)
            if wm is not None and wm >= ws + size + grace:
                late_rows.append((i, ws))
            elif wm is not None and wm >= ws + size:
                content.setdefault(key, []).append(i)
                version[key] = version.get(key, -1) + 1
            else:
                content.setdefault(key, []).append(i)
                ontime.add(key)
        max_ts = row.ts if max_ts is None else max(max_ts, row.ts)
        wm = max_ts - late_ms
        for ws in {k[1] for k in content} - final:
            if ws + size <= wm:  # final: every entity with (on-time) content emits version 0
                final.add(ws)
                for key in [k for k in ontime if k[1] == ws]:
                    version[key] = version.get(key, -1) + 1
    return content, version, final, late_rows, ontime


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 250),
    hop=st.sampled_from([None, 30, 20]),
    cuts=st.lists(st.integers(0, 250), max_size=6),
)
def test_corrections_and_late_events_follow_reference(seed, n, hop, cuts):
    rng = np.random.default_rng(seed)
    base = np.sort(T0 + rng.integers(0, 30 * 60_000, n))
    # heavy disorder: some events arrive minutes late (corrections) or very late (late_events)
    jitter = rng.choice([0, 0, 0, 20_000, 200_000, 900_000], n)
    ts = base - jitter
    ents = rng.choice(["a", "b", "c"], n)
    events = make_events(ts.tolist(), ents.tolist(), rng)
    spec = WindowGeometry(60, allowed_lateness_s=10, grace_s=300, hop_s=hop)

    windows, late, _ = run_in_batches(WindowEngine(spec, "traffic"), events, cuts)
    content, version, _final, late_rows, ontime = reference(events, spec)

    got_late = sorted(zip(late["offset"].tolist(), late["window_start"].tolist())) if not late.empty else []
    assert got_late == sorted(late_rows)
    emitted = {k: v for k, v in version.items() if v >= 0}
    if not emitted:
        assert windows.empty
        return
    got = latest(windows)
    assert set(got.index) == set(emitted)
    for key, v in emitted.items():
        row = got.loc[key]
        assert row["version"] == v
        idx = content[key]
        assert row["n_events"] == len(idx)
        assert row["vehicle_count"] == events["vehicle_count"].iloc[idx].sum()
        assert row["is_correction"] == (v > 0 or key not in ontime)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts_a=st.lists(st.integers(0, 300), max_size=10),
       cuts_b=st.lists(st.integers(0, 300), max_size=10))
def test_results_do_not_depend_on_batching(seed, cuts_a, cuts_b):
    rng = np.random.default_rng(seed)
    n = 300
    ts = np.sort(T0 + rng.integers(0, 40 * 60_000, n)) - rng.choice([0, 0, 30_000, 400_000], n)
    events = make_events(ts.tolist(), rng.choice(["a", "b"], n).tolist(), rng)
    spec = WindowGeometry(60, allowed_lateness_s=5, grace_s=240)
    wa, la, da = run_in_batches(WindowEngine(spec, "traffic"), events, cuts_a)
    wb, lb, db = run_in_batches(WindowEngine(spec, "traffic"), events, cuts_b)
    cols = ["version", "n_events", "vehicle_count", "avg_speed_kmh", "p95_speed_kmh"]
    pd.testing.assert_frame_equal(latest(wa)[cols], latest(wb)[cols])
    dk = ("district", "window_start")
    pd.testing.assert_frame_equal(latest(da, dk)[["version", "n_events", "vehicle_count"]],
                                  latest(db, dk)[["version", "n_events", "vehicle_count"]])
    assert len(la) == len(lb)


def test_district_partials_combine_to_entity_totals():
    rng = np.random.default_rng(3)
    n = 500
    events = make_events(np.sort(T0 + rng.integers(0, 10 * 60_000, n)).tolist(),
                         rng.choice(["a", "b", "c", "d", "e"], n).tolist(), rng)
    spec = WindowGeometry(60, allowed_lateness_s=0, grace_s=0)
    _, _, districts = run_in_batches(WindowEngine(spec, "traffic"), events, [100, 250])
    per_district = events.assign(window_start=events.ts // 60_000 * 60_000).groupby(["district", "window_start"])
    exp = per_district.agg(n_events=("ts", "size"), vehicle_count=("vehicle_count", "sum"),
                           speed_sum=("avg_speed_kmh", "sum"), n_entities=("entity", "nunique"))
    got = latest(districts, ("district", "window_start"))
    exp = exp.loc[got.index]
    assert (got["n_events"] == exp["n_events"]).all()
    assert (got["vehicle_count"] == exp["vehicle_count"]).all()
    assert (got["n_entities"] == exp["n_entities"]).all()
    assert np.allclose(got["avg_speed_kmh_sum"], exp["speed_sum"])


def test_engine_rejects_bad_geometry():
    with pytest.raises(ValueError, match="hop"):
        WindowGeometry(60, hop_s=25)
    with pytest.raises(ValueError, match="positive"):
        WindowGeometry(0)


def test_state_is_bounded_by_the_horizon():
    rng = np.random.default_rng(5)
    spec = WindowGeometry(60, allowed_lateness_s=10, grace_s=120)
    eng = WindowEngine(spec, "traffic")
    for k in range(30):  # 30 batches covering 30 minutes, 100 events each
        ts = np.sort(T0 + k * 60_000 + rng.integers(0, 60_000, 100))
        eng.process(make_events(ts.tolist(), rng.choice(["a", "b"], 100).tolist(), rng))
    # only windows that can still change are kept: size + lateness + grace ~ 3-4 windows
    assert eng.open_windows <= 4
    assert eng.state_rows <= 400
