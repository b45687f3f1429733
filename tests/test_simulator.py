"""Unit tests of the city simulator (no broker): determinism, contract validity, time span and
the daily rhythms analysts and detectors rely on."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from contracts.decode import decode_batch
from contracts.registry import CONTRACTS
from contracts.schema import ID_PATTERN
from streams.simulator import SOURCES, CityClock, SimEvent, encode, generate, plan_fleets

BERLIN = ZoneInfo("Europe/Berlin")
# A Wednesday; one simulated day at 200x (rate 200/s for 432 s).
DAY_START = datetime(2026, 11, 18, tzinfo=BERLIN)


@pytest.fixture(scope="module")
def one_day() -> list[SimEvent]:
    return list(generate(seed=7, rate=200, seconds=432, speedup=200, start=DAY_START))


def _by_local_hour(events: list[SimEvent], source: str, value) -> dict[int, list[float]]:
    clock = CityClock(0)
    out: dict[int, list[float]] = defaultdict(list)
    for e in events:
        if e.source == source:
            v = value(e.record)
            if v is not None:
                out[int(clock.local(e.ts_ms)[0])].append(v)
    return out


def test_same_seed_same_events_different_seed_different() -> None:
    start = datetime(2026, 11, 20, 6, tzinfo=UTC)
    a = list(generate(seed=3, rate=500, seconds=10, speedup=30, start=start))
    b = list(generate(seed=3, rate=500, seconds=10, speedup=30, start=start))
    c = list(generate(seed=4, rate=500, seconds=10, speedup=30, start=start))
    assert a == b
    assert [encode(e) for e in a] == [encode(e) for e in b]
    assert len(a) == len(c) and a != c


def test_a_source_does_not_depend_on_which_other_sources_run() -> None:
    start = datetime(2026, 11, 20, 6, tzinfo=UTC)
    everything = list(generate(seed=5, rate=300, seconds=10, speedup=30, start=start))
    # the same traffic share of events, asked for alone
    n_traffic = sum(e.source == "traffic" for e in everything)
    alone = list(
        generate(
            seed=5, rate=n_traffic / 10, seconds=10, speedup=30, start=start, sources=["traffic"]
        )
    )
    assert [e for e in everything if e.source == "traffic"] == alone


def test_event_count_and_mix_follow_rate_and_seconds() -> None:
    events = list(generate(seed=1, rate=1000, seconds=5))
    counts = {s: sum(e.source == s for e in events) for s in SOURCES}
    assert sum(counts.values()) == pytest.approx(5000, abs=4)
    assert counts["traffic"] == max(counts.values())
    assert all(counts[s] > 0 for s in SOURCES)


def test_every_record_passes_its_contract_with_zero_rejects() -> None:
    events = list(generate(seed=2, rate=2000, seconds=20, speedup=60))
    by_source: dict[str, list[bytes]] = defaultdict(list)
    for e in events:
        key, value = encode(e)
        assert key == e.key.encode() == e.record[CONTRACTS[e.source].key].encode()
        by_source[e.source].append(value)
    assert set(by_source) == set(SOURCES)
    for source, values in by_source.items():
        batch = decode_batch(CONTRACTS[source], values)
        assert batch.rejects == [], (source, batch.rejects[:3])
        assert batch.good.num_rows == len(values)


def test_ids_and_timestamps_are_well_formed() -> None:
    import re

    events = list(generate(seed=2, rate=300, seconds=5, speedup=10))
    for e in events:
        assert re.match(ID_PATTERN, e.key)
        ts = e.record["ts"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
        parsed = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert int(parsed.timestamp() * 1000) == e.ts_ms


def test_timestamps_end_now_never_in_future_and_stay_in_span() -> None:
    before = datetime.now(UTC)
    events = list(generate(seed=9, rate=1000, seconds=10, speedup=360))
    after = datetime.now(UTC)
    span = timedelta(seconds=10 * 360)
    lo = int((before - span).timestamp() * 1000)
    hi = int(after.timestamp() * 1000)
    ts = [e.ts_ms for e in events]
    assert all(lo <= t <= hi for t in ts)
    # the readings really cover the hour of city time, up to (about) now
    assert max(ts) - min(ts) > 0.95 * span.total_seconds() * 1000
    assert hi - max(ts) < 60_000


def test_events_are_in_time_order_globally_and_per_device() -> None:
    events = list(generate(seed=4, rate=500, seconds=10, speedup=120))
    ts = [e.ts_ms for e in events]
    assert ts == sorted(ts)
    last: dict[str, int] = {}
    for e in events:
        assert e.ts_ms >= last.get(e.key, 0)
        last[e.key] = e.ts_ms


def test_rush_hour_traffic_is_heavier_and_slower_than_3am(one_day: list[SimEvent]) -> None:
    counts = _by_local_hour(one_day, "traffic", lambda r: r["vehicle_count"])
    occupancy = _by_local_hour(one_day, "traffic", lambda r: r["occupancy_pct"])
    speed = _by_local_hour(
        one_day, "traffic", lambda r: r["avg_speed_kmh"] if r["vehicle_count"] else None
    )
    for rush in (7, 8, 16, 17):
        assert statistics.mean(counts[rush]) > 4 * statistics.mean(counts[3])
        assert statistics.mean(occupancy[rush]) > 4 * statistics.mean(occupancy[3])
    assert statistics.mean(speed[17]) < statistics.mean(speed[11]) < statistics.mean(speed[22])


def test_zoo_busier_at_noon_than_at_22h(one_day: list[SimEvent]) -> None:
    zoo = _by_local_hour(
        one_day, "wifi", lambda r: r["connected_clients"] if r["site_type"] == "zoo" else None
    )
    assert statistics.mean(zoo[12]) > 20 * max(1.0, statistics.mean(zoo[22]))


def test_schools_busy_on_weekday_mornings_only(one_day: list[SimEvent]) -> None:
    school = _by_local_hour(
        one_day, "wifi", lambda r: r["connected_clients"] if r["site_type"] == "school" else None
    )
    assert statistics.mean(school[10]) > 10 * max(1.0, statistics.mean(school[20]))


def test_lamps_dim_after_midnight_off_in_daylight_power_follows_dim(
    one_day: list[SimEvent],
) -> None:
    lamps = [e.record for e in one_day if e.source == "lighting"]
    by_hour = _by_local_hour(one_day, "lighting", lambda r: r)
    for r in by_hour[2]:  # after midnight: dimmed to 30-60 %
        assert r["status"] == "fault" or (
            r["status"] == "dimmed" and 30 <= r["dim_level_pct"] <= 60
        )
    for r in by_hour[12]:  # noon: off
        assert r["status"] in ("off", "fault") and r["ambient_lux"] > 1000
    for r in by_hour[21]:  # evening: full on
        assert r["status"] in ("on", "fault")
    for r in lamps:
        if r["status"] != "fault":
            assert r["fault_code"] is None
            assert r["power_w"] <= r["dim_level_pct"] / 100 * 110 * 1.1 + 1
        else:
            assert r["fault_code"]


def test_trucks_stay_in_duisburg_and_only_reefers_report_cargo_temperature(
    one_day: list[SimEvent],
) -> None:
    trucks = [e.record for e in one_day if e.source == "logistics"]
    assert {r["status"] for r in trucks} == {"moving", "idle", "loading", "unloading"}
    temps = [r["cargo_temp_c"] for r in trucks if r["cargo_temp_c"] is not None]
    assert temps and all(2.0 <= t <= 8.0 for t in temps)
    assert any(r["cargo_temp_c"] is None for r in trucks)
    reefer_ids = {r["vehicle_id"] for r in trucks if r["cargo_temp_c"] is not None}
    assert all((r["cargo_temp_c"] is not None) == (r["vehicle_id"] in reefer_ids) for r in trucks)
    moving = [r["speed_kmh"] for r in trucks if r["status"] == "moving"]
    assert statistics.median(moving) > 15


def test_trams_change_district_fixed_devices_do_not(one_day: list[SimEvent]) -> None:
    districts: dict[str, set[str]] = defaultdict(set)
    for e in one_day:
        if e.source in ("traffic", "lighting", "wifi"):
            districts[e.key].add(e.record["district"])
    assert any(len(d) > 1 for k, d in districts.items() if k.startswith("ap-tram-"))
    assert all(
        len(d) == 1 for k, d in districts.items() if not k.startswith(("ap-tram-", "ap-bus-"))
    )


def test_fleets_scale_with_rate_and_shrink_with_speedup() -> None:
    small = {p.source: p.devices for p in plan_fleets(100, 60)}
    big = {p.source: p.devices for p in plan_fleets(1000, 60)}
    fast = {p.source: p.devices for p in plan_fleets(1000, 60, speedup=10)}
    assert all(big[s] > small[s] for s in SOURCES)
    assert all(fast[s] < big[s] for s in SOURCES)


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"seconds": -1}, {"sources": ["weather"]}])
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    args = {"seed": 1, "rate": 10, "seconds": 1} | kwargs
    with pytest.raises(ValueError):
        next(generate(**args))


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(generate(1, 10, 1, start=datetime(2026, 1, 1)))


def test_encode_is_compact_json_of_the_record() -> None:
    event = next(generate(1, 10, 1))
    key, value = encode(event)
    assert orjson.loads(value) == event.record and key == event.key.encode()
