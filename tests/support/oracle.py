"""Independent pandas recomputation of window aggregates from produced events (the test
oracle: written without the stream's code paths, from contracts/aggregates.py declarations and
the fields' `null_when_zero` rule, "no vehicles, no speed", in contracts/<source>.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS


def without_meaningless_values(events: pd.DataFrame, source: str) -> pd.DataFrame:
    """The produced events as the contract lands them: a field declared `null_when_zero` is
    NaN (null) where its count field is 0, whatever the producer sent."""
    df = events.copy()
    for f in CONTRACTS[source].fields:
        if f.null_when_zero and f.name in df and f.null_when_zero in df:
            df[f.name] = df[f.name].astype(float).where(df[f.null_when_zero] != 0)
    return df


def recompute_windows(events: pd.DataFrame, source: str, size_s: int, key: str) -> pd.DataFrame:
    """Per (entity, window_start) aggregates; `events` has ts (epoch ms) and contract fields."""
    df = events.copy()
    for agg in AGGREGATES[source]:  # an optional field no event carried (travel_time_s) is null throughout
        if agg.field and agg.field not in df:
            df[agg.field] = np.nan
    df["window_start"] = (df["ts"] // (size_s * 1000)) * (size_s * 1000)
    out = {}
    g = df.groupby([key, "window_start"])
    for agg in AGGREGATES[source]:
        if agg.fn == "count":
            out[agg.name] = g.size()
        elif agg.fn == "count_eq":
            out[agg.name] = g[agg.field].apply(lambda s, v=agg.value: int((s == v).sum()))
        elif agg.fn == "sum":
            out[agg.name] = g[agg.field].sum()
        elif agg.fn == "mean":
            out[agg.name] = g[agg.field].mean()
        elif agg.fn == "max":
            out[agg.name] = g[agg.field].max()
        elif agg.fn == "min":
            out[agg.name] = g[agg.field].min()
        elif agg.fn == "p95":
            out[agg.name] = g[agg.field].apply(lambda s: np.percentile(s.dropna(), 95) if s.notna().any() else np.nan)
        elif agg.fn == "energy_wh":
            out[agg.name] = g[agg.field].mean() * size_s / 3600
    res = pd.DataFrame(out)
    res.index = res.index.set_names(["entity", "window_start"])
    return res


def assert_frames_close(actual: pd.DataFrame, expected: pd.DataFrame, columns: list[str]) -> None:
    """Same index set and every column equal (floats to 1e-9 relative, NaN == NaN)."""
    assert set(actual.index) == set(expected.index), (
        f"window keys differ: {len(set(actual.index) - set(expected.index))} extra, "
        f"{len(set(expected.index) - set(actual.index))} missing"
    )
    a, e = actual.loc[expected.index], expected
    for c in columns:
        av, ev = a[c].to_numpy(dtype=float), e[c].to_numpy(dtype=float)
        ok = np.isclose(av, ev, rtol=1e-9, atol=1e-9, equal_nan=True)
        assert ok.all(), f"column {c}: {int((~ok).sum())} windows differ, e.g. {a[c][~ok].head(3).to_dict()} vs {e[c][~ok].head(3).to_dict()}"


def final_windows(events: pd.DataFrame, source: str, key: str, partition_of: pd.Series,
                  max_ts_by_partition: pd.Series) -> pd.DataFrame:
    """The recomputed windows the stream must have emitted: those whose end the watermark of
    their entity's partition (max event time - allowed lateness) has passed, from the produced
    events as the contract lands them (`without_meaningless_values`)."""
    from contracts.windows import WINDOW_DEFAULTS

    spec = WINDOW_DEFAULTS[source]
    oracle = recompute_windows(without_meaningless_values(events, source), source, spec.size_s, key)
    wm = max_ts_by_partition - spec.allowed_lateness_s * 1000
    ends = oracle.index.get_level_values("window_start") + spec.size_s * 1000
    parts = partition_of.reindex(oracle.index.get_level_values("entity")).to_numpy()
    return oracle[ends <= wm.reindex(parts).to_numpy()]
