"""The district kinds as pure functions: lamps of one district failing together (on the
simulator's lamps through the real window engine, with faults painted in) and congestion
corroborated by slowing trucks (hand-made alerts and vehicle windows, and the simulator's
ordinary trucks)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from contracts.districts import district_of
from streams.detectors.base import ANOMALY_SCHEMA, anomaly_id
from streams.detectors.district import (
    CONGESTION_CORROBORATED,
    FAULT_CLUSTER,
    CorroborationConfig,
    FaultClusterConfig,
    binomial_tail,
    fault_onsets,
    slow_vehicles,
)
from tests.support.simulated_city import (
    MIN,
    lamp_readings,
    lighting_windows,
    local_ms,
    logistics_windows,
    truck_fixes,
)

WINDOW = 15 * MIN


# -- lighting.fault_cluster -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lamps() -> pd.DataFrame:
    """Two days of 140 simulator lamps (every district, most in Mitte and Süd), a report every
    two minutes: dusk and dawn switching, night dimming and the lamps' own random faults."""
    return lamp_readings(2, n_lamps=140, seed=11, every_s=120)


def _fail(frame: pd.DataFrame, lamp_ids: list[str], start: int, minutes: int) -> pd.DataFrame:
    out = frame.copy()
    sel = out["lamp_id"].isin(lamp_ids) & (out["ts"] >= start) & (out["ts"] < start + minutes * MIN)
    out.loc[sel, ["status", "dim_level_pct", "power_w", "fault_code"]] = ["fault", 0.0, 0.5, "E02-DRIVER"]
    return out


def _windows(frame: pd.DataFrame) -> pd.DataFrame:
    w = lighting_windows(frame).to_pandas()
    return w.sort_values("version").drop_duplicates(["entity", "window_start"], keep="last")


def _healthy_lamps(frame: pd.DataFrame, district: str, start: int, n: int) -> list[str]:
    near = frame[(frame["ts"] >= start - 30 * MIN) & (frame["ts"] < start + 60 * MIN)]
    faulty = set(near.loc[near["status"] == "fault", "lamp_id"])
    mine = sorted(set(frame.loc[frame["district"] == district, "lamp_id"]) - faulty)
    assert len(mine) >= n, f"{district} has only {len(mine)} healthy lamps"
    return mine[:n]


def test_lamps_fault_on_their_own_and_no_cluster_is_raised(lamps):
    windows = _windows(lamps)
    onsets = fault_onsets(windows)
    assert onsets["onsets"].sum() >= 20  # the simulator's lamps do fail, dozens of times in two days
    assert set(lamps["status"]) >= {"on", "dimmed", "off", "fault"}
    alerts = FaultClusterConfig().build().detect(windows, since_ms=0, state={})
    assert alerts.num_rows == 0, alerts.column("evidence").to_pylist()


def test_one_lamp_failing_is_not_a_cluster(lamps):
    start = local_ms(1, 21.0)
    (lamp,) = _healthy_lamps(lamps, "Mitte", start, 1)
    windows = _windows(_fail(lamps, [lamp], start, 45))
    assert FaultClusterConfig().build().detect(windows, 0, {}).num_rows == 0


def test_ten_lamps_of_one_district_failing_together_raise_one_alert(lamps):
    start = local_ms(1, 21.0) + 2 * MIN
    broken = _healthy_lamps(lamps, "Mitte", start, 10)
    windows = _windows(_fail(lamps, broken, start, 45))
    alerts = FaultClusterConfig().build().detect(windows, 0, {})
    assert alerts.num_rows == 1, alerts.column("evidence").to_pylist()
    row = alerts.to_pylist()[0]
    window_start = start - (start % WINDOW)
    assert row["kind"] == FAULT_CLUSTER and row["entity"] == row["district"] == "Mitte"
    assert row["window_start"] == window_start and row["observed"] >= 10
    assert row["anomaly_id"] == anomaly_id(FAULT_CLUSTER, "Mitte", window_start)
    assert alerts.schema == ANOMALY_SCHEMA and f"{row['observed']:.0f} of" in row["evidence"]


def test_a_cluster_found_in_two_ranges_is_the_one_found_in_one(lamps):
    start = local_ms(1, 21.0) + 2 * MIN
    windows = _windows(_fail(lamps, _healthy_lamps(lamps, "Süd", start, 10), start, 90))
    detector = FaultClusterConfig().build()
    whole = detector.detect(windows, 0, {})
    cut = start - (start % WINDOW) + WINDOW  # mid-incident: the second range starts inside it
    state: dict = {}
    first = detector.detect(windows[windows["window_start"] < cut], 0, state)
    second = detector.detect(windows[windows["window_start"] >= cut - WINDOW], cut, state)
    assert whole.num_rows == 1
    assert pa.concat_tables([first, second]).to_pylist() == whole.to_pylist()


def test_a_city_wide_wave_of_faults_is_not_a_district_cluster(lamps):
    """A storm failing 15 % of every district's lamps at once moves the baseline with it."""
    start = local_ms(1, 21.0) + 2 * MIN
    broken = []
    for district, ids in lamps.groupby("district")["lamp_id"]:
        ids = sorted(set(ids))
        broken += ids[: math.ceil(0.15 * len(ids))]
    windows = _windows(_fail(lamps, broken, start, 45))
    assert fault_onsets(windows)["onsets"].max() >= 3  # Mitte and Süd have several onsets each
    assert FaultClusterConfig().build().detect(windows, 0, {}).num_rows == 0


def test_binomial_tail_matches_the_closed_form():
    assert binomial_tail(0, 10, 0.1) == 1.0 and binomial_tail(11, 10, 0.1) == 0.0
    assert binomial_tail(10, 10, 0.1) == pytest.approx(1e-10)
    exact = sum(math.comb(20, i) * 0.05**i * 0.95 ** (20 - i) for i in range(3, 21))
    assert binomial_tail(3, 20, 0.05) == pytest.approx(exact)


def test_fault_cluster_config_is_validated():
    with pytest.raises(ValueError):
        FaultClusterConfig(min_lamps=1)
    with pytest.raises(ValueError):
        FaultClusterConfig(max_p_value=0)


# -- cross.congestion_corroborated ------------------------------------------------------------

T = local_ms(2, 8.0)  # Wednesday, morning peak


def congestion(*alerts: tuple[str, str, int]) -> pd.DataFrame:
    """traffic.congestion alert rows: (detector, district, window_start ms)."""
    return pd.DataFrame({"entity": [a[0] for a in alerts], "district": [a[1] for a in alerts],
                         "window_start": [a[2] for a in alerts], "window_end": [a[2] + MIN for a in alerts]})


def vehicles(*rows: tuple[str, str, int, float, int, int]) -> pd.DataFrame:
    """Logistics vehicle windows: (vehicle, district, window_start, mean speed, moving fixes, fixes)."""
    return pd.DataFrame({"entity": [r[0] for r in rows], "district": [r[1] for r in rows],
                         "window_start": [r[2] for r in rows], "window_end": [r[2] + 5 * MIN for r in rows],
                         "avg_speed_kmh": [r[3] for r in rows], "moving_count": [r[4] for r in rows],
                         "n_events": [r[5] for r in rows]})


def detect(cong: pd.DataFrame, veh: pd.DataFrame, state: dict | None = None) -> list[dict]:
    return CorroborationConfig().build().detect(cong, veh, {} if state is None else state).to_pylist()


def test_congestion_with_a_truck_crawling_in_the_district_is_one_incident():
    found = detect(congestion(("tdet-0001", "Mitte", T), ("tdet-0002", "Mitte", T + 10 * MIN)),
                   vehicles(("truck-0003", "Mitte", T + 5 * MIN, 6.5, 15, 15),
                            ("truck-0004", "Mitte", T + 10 * MIN, 8.0, 15, 15)))
    assert len(found) == 1, found
    (a,) = found
    assert a["kind"] == CONGESTION_CORROBORATED and a["source"] == "cross"
    assert a["entity"] == a["district"] == "Mitte" and a["window_start"] == T
    assert a["anomaly_id"] == anomaly_id(CONGESTION_CORROBORATED, "Mitte", T)
    assert "tdet-0001" in a["evidence"] and "truck-0003" in a["evidence"] and a["observed"] == 6.5


def test_a_truck_slowing_shortly_before_the_congestion_alert_corroborates_it():
    assert len(detect(congestion(("tdet-0001", "Süd", T)), vehicles(("truck-0003", "Süd", T - 10 * MIN, 4.0, 15, 15)))) == 1


@pytest.mark.parametrize("veh", [
    vehicles(("truck-0003", "Mitte", T, 35.0, 15, 15)),  # cruising
    vehicles(("truck-0003", "Mitte", T, 0.8, 0, 15)),  # loading or idle at a hub, not on the road
    vehicles(("truck-0003", "Mitte", T, 9.0, 9, 15)),  # arriving: slow because it parked
    vehicles(("truck-0003", "Hamborn", T, 5.0, 15, 15)),  # crawling, but in another district
    vehicles(("truck-0003", "Mitte", T + 45 * MIN, 5.0, 15, 15)),  # crawling, long after
    vehicles(),
], ids=["cruising", "at-a-hub", "arriving", "other-district", "later", "no-trucks"])
def test_congestion_without_a_slowing_truck_nearby_is_not_corroborated(veh):
    assert detect(congestion(("tdet-0001", "Mitte", T)), veh) == []


def test_one_slow_truck_without_congestion_is_nothing():
    assert detect(congestion(), vehicles(("truck-0003", "Mitte", T, 5.0, 15, 15))) == []


def test_incidents_an_hour_apart_are_two_and_the_state_carries_across_calls():
    state: dict = {}
    veh = vehicles(("truck-0003", "Mitte", T, 5.0, 15, 15), ("truck-0003", "Mitte", T + 90 * MIN, 5.0, 15, 15))
    first = detect(congestion(("tdet-0001", "Mitte", T)), veh, state)
    again = detect(congestion(("tdet-0009", "Mitte", T + 20 * MIN)), veh, state)  # same incident
    later = detect(congestion(("tdet-0001", "Mitte", T + 90 * MIN)), veh, state)
    assert len(first) == 1 and again == [] and len(later) == 1


def test_the_simulators_trucks_never_look_slowed_by_a_jam():
    """A day of ten trucks shuttling between hubs (red lights, stops, loading, nights parked):
    congestion alerted in every district every 15 minutes finds no crawling truck."""
    fixes = truck_fixes(24, n_trucks=10, seed=3, every_s=20)
    fixes["district"] = district_of(fixes["lat"].to_numpy(), fixes["lon"].to_numpy())
    windows = logistics_windows(fixes).to_pandas()
    assert set(windows["district"]) >= {"Homberg/Ruhrort/Baerl", "Mitte", "Rheinhausen"}
    assert (windows["moving_count"] == windows["n_events"]).sum() > 50  # trucks do drive
    assert slow_vehicles(windows, CorroborationConfig().slow_kmh).empty
    starts = np.arange(windows["window_start"].min(), windows["window_start"].max(), 15 * MIN)
    everywhere = congestion(*[(f"tdet-{i}", d, int(t)) for i, t in enumerate(starts) for d in sorted(set(windows["district"]))])
    assert detect(everywhere, windows) == []


def _lamp_windows(n_windows: int, lamps: dict[str, str], faults: dict[tuple[str, int], bool]) -> pd.DataFrame:
    """Hand-made 15-min lamp windows: `lamps` id -> district, `faults` (id, window) -> in fault."""
    rows = []
    for w in range(n_windows):
        for lamp, district in lamps.items():
            rows.append({"entity": lamp, "district": district, "window_start": T + w * WINDOW,
                         "window_end": T + (w + 1) * WINDOW, "fault_count": 3 if faults.get((lamp, w)) else 0})
    return pd.DataFrame(rows)


def test_a_small_city_pools_its_usual_rate_so_two_chance_onsets_do_not_hide_a_cluster():
    """Four lamps of Walsum fail together while, by chance, 2 of the other 30 lamps fail too
    (a rate of 0.067 in that window against the usual ~0.02): the pooled rate still finds
    the cluster; the window's own rest-of-city rate alone (no prior) would not."""
    lamps = {f"lamp-w{i}": "Walsum" for i in range(4)} | {f"lamp-m{i}": "Mitte" for i in range(30)}
    faults = {(f"lamp-m{(w * 7) % 30}", w): True for w in range(0, 40, 2)}  # one onset per 30 min elsewhere
    faults |= {(f"lamp-w{i}", 41): True for i in range(4)} | {("lamp-m3", 41): True, ("lamp-m4", 41): True}
    windows = _lamp_windows(44, lamps, faults)
    pooled = FaultClusterConfig().build().detect(windows, 0, {})
    assert pooled.column("entity").to_pylist() == ["Walsum"]
    assert pooled.column("window_start").to_pylist() == [T + 41 * WINDOW]
    assert FaultClusterConfig(prior_lamp_windows=0).build().detect(windows, 0, {}).num_rows == 0
