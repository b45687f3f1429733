"""District-level detectors: lamps of one district failing together (`lighting.fault_cluster`)
and a traffic congestion corroborated by logistics vehicles slowing in the same district and
time (`cross.congestion_corroborated`). Pure (numpy/pyarrow/pandas).

Unlike the per-entity kinds these need rows of every partition (a district's lamps, detectors
and trucks are keyed by their own ids, so spread over partitions) and, for the cross kind, two
topics. So they do not run in a partition's sink but in the district stage
(`streams/district_stage.py`), over what all partitions have landed, for windows every
partition has closed. Each detector here takes those rows for a range of windows and a small
JSON-able state (per district: the last incident), processes the range in window order, and
returns ANOMALY_SCHEMA rows whose `entity` is the district (the alert is about the district;
`anomaly_id` = hash(kind, district, window_start), so a re-run re-derives it). Results do not
depend on how the windows are split into ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from streams.detectors.base import Alerts, Severity, utc_minute

FAULT_CLUSTER = "lighting.fault_cluster"
CONGESTION_CORROBORATED = "cross.congestion_corroborated"
CONGESTION = "traffic.congestion"

DistrictState = dict[str, Any]  # JSON: {"last": {district: last incident ms}, "rate": usual onset rate}


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (n is a district's lamp count).

        >>> round(binomial_tail(2, 2, 0.5), 3)
        0.25
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    lg = math.lgamma
    terms = [lg(n + 1) - lg(i + 1) - lg(n - i + 1) + i * lp + (n - i) * lq for i in range(k, n + 1)]
    top = max(terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms)))


def _last(state: DistrictState) -> dict[str, float]:
    return state.setdefault("last", {})


# ------------------------------------------------------------------------------------------
# Lamps of one district failing together


@dataclass(frozen=True)
class FaultClusterConfig:
    """Fault cluster: in one 15-min window, at least `min_lamps` lamps of a district go into
    fault (an *onset*: 'fault' reported in the window, none in the lamp's previous window),
    and that many onsets are improbable for the district's size: P(X >= onsets) at most
    `max_p_value` for X ~ Binomial(lamps at risk in the district, p), where p is the onset rate
    of the *rest of the city* in the same window, pooled with `prior_lamp_windows` lamp-windows
    at the city's usual rate (an average over about the last `rate_memory_windows` windows,
    kept in the state), and at least `min_rate`. In a large city the window's own rest-of-city
    rate dominates; in a small one (a few dozen lamps) two chance onsets elsewhere would
    otherwise triple p and hide a real cluster. Lamps fail now and
    then on their own (the simulator's: a fault ~6 % of the time each, so "N lamps in fault"
    would fire daily); onsets against the city's own rate in that window are what a shared
    cause (a feeder cable, a storm cell, a bad firmware push to one district's controllers)
    shows, while a city-wide change (dusk switching, weather everywhere) moves the baseline
    with it. Defaults: 3 lamps (two at once happen by chance in a large district), p-value 1e-5
    (7 districts x 96 windows a day = 672 tests a day: about one false alert in five months
    if lamps fail independently; 1e-6 missed 4 of 5 lamps failing in a district when the
    simulator's lamps start a fault in ~4.5 % of their windows), rate floor 0.005 per lamp and window (a quiet city does not
    make 3 onsets look impossible), a prior of 200 lamp-windows (a few windows of a toy city,
    under 1 % of one window of Duisburg's ~50,000 lamps) at the average of about a day (96
    windows), one alert per district per episode (`clear_s` 1 h)."""

    min_lamps: int = 3
    max_p_value: float = 1e-5
    min_rate: float = 0.005
    prior_lamp_windows: float = 200.0
    rate_memory_windows: float = 96.0
    clear_s: float = 3600.0
    severity: Severity = Severity.CRITICAL

    def __post_init__(self) -> None:
        if self.min_lamps < 2 or not 0 < self.max_p_value < 1 or not 0 < self.min_rate < 1 or self.clear_s < 0:
            raise ValueError("min_lamps >= 2, max_p_value and min_rate in (0, 1), clear_s >= 0 are required")
        if self.prior_lamp_windows < 0 or self.rate_memory_windows < 1:
            raise ValueError("prior_lamp_windows >= 0 and rate_memory_windows >= 1 are required")

    def build(self) -> FaultCluster:
        return FaultCluster(self)


def fault_onsets(windows: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """Per district and window: lamps at risk (a previous adjacent window without fault) and
    onsets among them. `windows`: one row per lamp and window (latest version), columns
    entity, district, window_start, window_end (epoch ms), fault_count. A lamp's first
    window in the input has no previous one, so it is neither at risk nor an onset (read
    one window before the range you score).

        >>> fault_onsets(frame).columns.tolist()
        ['district', 'window_start', 'window_end', 'at_risk', 'onsets']
    """
    df = windows.to_pandas() if isinstance(windows, pa.Table) else windows
    cols = ["district", "window_start", "window_end", "at_risk", "onsets"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c != "district" else "object") for c in cols})
    df = df[["entity", "district", "window_start", "window_end", "fault_count"]].sort_values(["entity", "window_start"])
    ent = df["entity"].to_numpy()
    ws = df["window_start"].to_numpy(np.int64)
    we = df["window_end"].to_numpy(np.int64)
    fault = np.nan_to_num(df["fault_count"].to_numpy(np.float64)) > 0
    prev_ok = np.zeros(len(df), dtype=bool)
    prev_ok[1:] = (ent[1:] == ent[:-1]) & (ws[1:] == ws[:-1] + (we[:-1] - ws[:-1])) & ~fault[:-1]
    out = pd.DataFrame({"district": df["district"].to_numpy(), "window_start": ws, "window_end": we,
                        "at_risk": prev_ok.astype(np.int64), "onsets": (prev_ok & fault).astype(np.int64)})
    out = out[out["district"].notna()]
    return (out.groupby(["district", "window_start"], as_index=False, sort=True)
            .agg(window_end=("window_end", "max"), at_risk=("at_risk", "sum"), onsets=("onsets", "sum")))


class FaultCluster:
    name, source = FAULT_CLUSTER, "lighting"

    def __init__(self, config: FaultClusterConfig):
        self.config = config
        self.severity = config.severity

    def detect(self, windows: pa.Table | pd.DataFrame, since_ms: int, state: DistrictState) -> pa.Table:
        """Alerts for the windows starting at or after `since_ms` (earlier rows only give each
        lamp its previous window), in window order; updates `state`."""
        cfg = self.config
        counts = fault_onsets(windows)
        alerts = Alerts(self.name, self.source, self.severity)
        if counts.empty:
            return alerts.table()
        counts = counts[counts["window_start"] >= since_ms]
        city = counts.groupby("window_start", sort=True)[["at_risk", "onsets"]].sum()
        usual = {}  # window -> the city's usual onset rate before it (EWMA over windows, in order)
        mean = state.get("rate")
        alpha = 1.0 / cfg.rate_memory_windows
        for ws, n_city, k_city in zip(city.index.tolist(), city["at_risk"].tolist(), city["onsets"].tolist(),
                                      strict=True):
            now = k_city / n_city if n_city else None
            usual[ws] = mean if mean is not None else (now if now is not None else cfg.min_rate)
            if now is not None:
                mean = now if mean is None else (1 - alpha) * mean + alpha * now
        state["rate"] = mean
        totals = city.reindex(counts["window_start"])
        rest_n = totals["at_risk"].to_numpy(np.float64) - counts["at_risk"].to_numpy(np.float64)
        rest_k = totals["onsets"].to_numpy(np.float64) - counts["onsets"].to_numpy(np.float64)
        prior = np.array([usual[w] for w in counts["window_start"].tolist()], dtype=np.float64)
        m = cfg.prior_lamp_windows
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = (rest_k + m * prior) / (rest_n + m)
        rate = np.maximum(cfg.min_rate, np.nan_to_num(pooled, nan=cfg.min_rate))
        candidate = counts["onsets"].to_numpy() >= cfg.min_lamps
        last = _last(state)
        for i in np.flatnonzero(candidate):  # few: districts with several onsets in one window
            row = counts.iloc[i]
            k, n, p, ws = int(row["onsets"]), int(row["at_risk"]), float(rate[i]), int(row["window_start"])
            pval = binomial_tail(k, n, p)
            if pval > cfg.max_p_value:
                continue
            district = str(row["district"])
            if ws - last.get(district, -math.inf) <= cfg.clear_s * 1000:
                last[district] = ws  # the same episode goes on
                continue
            last[district] = ws
            expected = n * p
            alerts.add(district, district, ws, int(row["window_end"]), k, expected, -math.log10(max(pval, 1e-300)),
                       f"{k} of {n} lamps in {district} went into fault in the window from {utc_minute(ws)}; "
                       f"expected {expected:.2f} at the city's rate {p:.4f} per lamp (rest of the city, pooled) "
                       f"(p = {pval:.1e})")
        return alerts.table()


# ------------------------------------------------------------------------------------------
# Congestion corroborated by slowing logistics vehicles


@dataclass(frozen=True)
class CorroborationConfig:
    """Congestion corroborated: a `traffic.congestion` alert of a detector in district D is
    corroborated when at least `min_vehicles` logistics vehicles were slowing in D close in
    time: a vehicle window (5 min) that overlaps [alert start - `before_s`, alert start +
    `after_s`], in which every fix said 'moving' and the mean speed was at most `slow_kmh`.
    One alert per incident: further corroborated congestion in D within `clear_s` of the
    incident's last one belongs to it (two jammed detectors of one junction are one incident).
    Vehicles are placed in districts by position (contracts.districts.district_of), since
    logistics records carry no district. Defaults: 12 km/h (trucks cruise at 25-55 km/h; a red
    light or a stop in a 5-min window of fixes every 20 s keeps the mean above 20; 'moving' at
    walking pace for minutes is a jam; a stall, at most 2 km/h for 30 min, is
    logistics.stalled and also counts here), one vehicle (trucks are few: one slowing truck in
    the jammed district is independent evidence from another fleet), 15 min before (the trucks
    may hit the jam before the detector's baseline is crossed) and 30 min after (the congestion
    alert marks only the incident's start), incidents 1 h apart."""

    slow_kmh: float = 12.0
    min_vehicles: int = 1
    before_s: float = 900.0
    after_s: float = 1800.0
    clear_s: float = 3600.0
    severity: Severity = Severity.CRITICAL

    def __post_init__(self) -> None:
        if self.slow_kmh <= 0 or self.min_vehicles < 1 or self.before_s < 0 or self.after_s < 0 or self.clear_s < 0:
            raise ValueError("slow_kmh > 0, min_vehicles >= 1 and before_s, after_s, clear_s >= 0 are required")

    def build(self) -> CongestionCorroborated:
        return CongestionCorroborated(self)


def slow_vehicles(vehicles: pa.Table | pd.DataFrame, slow_kmh: float) -> pd.DataFrame:
    """The vehicle windows that count as slowing: every fix 'moving' and mean speed at most
    `slow_kmh`. Columns entity, district, window_start, window_end, avg_speed_kmh."""
    df = vehicles.to_pandas() if isinstance(vehicles, pa.Table) else vehicles
    cols = ["entity", "district", "window_start", "window_end", "avg_speed_kmh"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype="object" if c in ("entity", "district") else "float64") for c in cols})
    moving = df["moving_count"].fillna(0).to_numpy() >= df["n_events"].to_numpy()
    slow = df["avg_speed_kmh"].to_numpy(np.float64) <= slow_kmh  # NaN -> False
    return df.loc[moving & slow & df["district"].notna().to_numpy(), cols]


class CongestionCorroborated:
    name, source = CONGESTION_CORROBORATED, "cross"

    def __init__(self, config: CorroborationConfig):
        self.config = config
        self.severity = config.severity

    def detect(self, congestion: pa.Table | pd.DataFrame, vehicles: pa.Table | pd.DataFrame,
               state: DistrictState) -> pa.Table:
        """Alerts for `congestion` (traffic.congestion alerts: entity, district, window_start,
        window_end epoch ms, value, expected) given the logistics vehicle windows around them
        (entity, district, window_start, window_end, n_events, moving_count, avg_speed_kmh),
        processed in alert order; updates `state`. The caller passes only alerts whose
        neighbourhood [start - before_s, start + after_s] every partition has landed."""
        cfg = self.config
        alerts = Alerts(self.name, self.source, self.severity)
        cong = congestion.to_pandas() if isinstance(congestion, pa.Table) else congestion
        if cong.empty:
            return alerts.table()
        cong = cong[cong["district"].notna()].sort_values(["window_start", "entity"])
        slow = slow_vehicles(vehicles, cfg.slow_kmh)
        if slow.empty:
            return alerts.table()
        pairs = cong.merge(slow, on="district", suffixes=("", "_v"))
        ws = pairs["window_start"].to_numpy(np.int64)
        near = ((pairs["window_end_v"].to_numpy(np.int64) > ws - cfg.before_s * 1000)
                & (pairs["window_start_v"].to_numpy(np.int64) <= ws + cfg.after_s * 1000))
        pairs = pairs[near]
        last = _last(state)
        for (ws_c, entity, district), group in pairs.groupby(["window_start", "entity", "district"], sort=True):
            trucks = sorted(set(group["entity_v"]))
            if len(trucks) < cfg.min_vehicles:
                continue
            ws_c = int(ws_c)
            if ws_c - last.get(district, -math.inf) <= cfg.clear_s * 1000:
                last[district] = ws_c  # the same incident goes on
                continue
            last[district] = ws_c
            speed = float(group["avg_speed_kmh"].min())
            end = int(max(group["window_end"].max(), group["window_end_v"].max()))
            alerts.add(district, district, ws_c, end, speed, cfg.slow_kmh, float(len(trucks)),
                       f"congestion on {entity} in {district} from {utc_minute(ws_c)} corroborated by "
                       f"{len(trucks)} logistics vehicle(s) moving at {speed:.1f} km/h or less "
                       f"({', '.join(trucks[:5])}{', ...' if len(trucks) > 5 else ''})")
        return alerts.table()


__all__ = [
    "CONGESTION_CORROBORATED",
    "FAULT_CLUSTER",
    "CongestionCorroborated",
    "CorroborationConfig",
    "DistrictState",
    "FaultCluster",
    "FaultClusterConfig",
    "binomial_tail",
    "fault_onsets",
    "slow_vehicles",
]
