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
from streams.simulator import (
    ADDED_SOURCES,
    SHARE,
    SOURCES,
    CityClock,
    SimEvent,
    encode,
    generate,
    plan_fleets,
)

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
    base = sum(n for s, n in counts.items() if s not in ADDED_SOURCES)
    assert base == pytest.approx(5000, abs=4)  # the first four share the rate
    for s in ADDED_SOURCES:  # later sources come on top, so the first four's runs stay the same
        assert counts[s] == pytest.approx(5000 * SHARE[s], abs=2)
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


# -- out-of-order delivery follows the window geometry in force ------------------------------
# Lateness 600 s makes the default hold-back of a correction (360 s) on time, and grace 1800 s
# makes the default hold-back of a late event (810 s) a correction: both must follow the override.
WINDOW_OVERRIDE = {"allowed_lateness_s": 600, "grace_s": 1800}


def _classify(delivered: list[SimEvent], size_s: int, lateness_s: int, grace_s: int) -> dict[tuple[str, int], str]:
    """What the window engine makes of each event (one partition, one window size): on time,
    correction or late, from the watermark when it arrives (max earlier event time - lateness)."""
    kinds, newest = {}, None
    size_ms, late_ms, grace_ms = size_s * 1000, lateness_s * 1000, grace_s * 1000
    for e in delivered:
        end = (e.ts_ms // size_ms + 1) * size_ms
        wm = None if newest is None else newest - late_ms
        kind = "on time" if wm is None or wm < end else "correction" if wm < end + grace_ms else "late"
        kinds[(e.key, e.ts_ms)] = kind
        newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
    return kinds


def test_held_back_events_are_corrections_and_late_under_the_window_overrides() -> None:
    from contracts.settings import Settings
    from streams.simulator import Disorder, DisorderLog, deliver_out_of_order

    settings = Settings(window_traffic=WINDOW_OVERRIDE)
    events = generate(seed=3, rate=20, seconds=60, speedup=120, start=DAY_START, sources=("traffic",))
    held = DisorderLog()
    delivered = list(deliver_out_of_order(events, Disorder(correction_fraction=0.05, late_fraction=0.05, seed=1),
                                          held, settings))
    kinds = _classify(delivered, 60, 600, 1800)
    assert len(held.corrections) > 20 and len(held.late) > 20
    assert {kinds[(key, ts)] for _, key, ts in held.corrections} == {"correction"}
    assert {kinds[(key, ts)] for _, key, ts in held.late} == {"late"}
    held_back = {(key, ts) for _, key, ts in held.corrections + held.late + held.dropped}
    assert {kind for k, kind in kinds.items() if k not in held_back} == {"on time"}


def test_simulate_command_holds_back_by_the_window_settings_in_force(monkeypatch, capsys) -> None:
    from contracts.windows import window_geometry
    from jobs.cli import build_parser
    from jobs.commands import simulate

    seen = {}

    def fake_produce(*args, **kwargs):
        seen.update(kwargs)
        return {"traffic": 0}

    monkeypatch.setenv("CITYFLOW_WINDOW_TRAFFIC", orjson.dumps(WINDOW_OVERRIDE).decode())
    monkeypatch.setattr(simulate, "ensure_topics", lambda *a, **k: None)
    monkeypatch.setattr(simulate, "produce_fast", fake_produce)
    args = build_parser().parse_args(["simulate", "--fast", "--bootstrap", "127.0.0.1:1", "--sources", "traffic",
                                      "--correction-fraction", "0.01", "--late-fraction", "0.01"])
    assert args.func(args) == 0
    geometry = window_geometry("traffic", seen["settings"])
    assert (geometry.allowed_lateness_s, geometry.grace_s) == (600, 1800)


def test_access_points_reboot_but_never_go_down_for_an_alert_on_their_own() -> None:
    """An incident-free simulated city has reboots (1-5 min 'down', the noise wifi.ap_down must
    ignore) but no outage as long as the detector's min_down_s: those come only as labelled
    incidents (streams.incidents), or the eval would score a real outage as a false alert."""
    from streams.detectors import ApDownConfig

    events = [e for e in generate(seed=7, rate=2, seconds=3 * 86_400, speedup=1.0, start=DAY_START,
                                  sources=("wifi",))]
    runs: dict[str, list[int]] = {}  # AP -> [first 'down' ts, last 'down' ts, next report ts]
    longest, reboots = 0.0, 0
    for e in events:
        run = runs.get(e.key)
        if e.record["status"] == "down":
            if run is None:
                runs[e.key] = [e.ts_ms, e.ts_ms]
            else:
                run[1] = e.ts_ms
        elif run is not None:
            longest = max(longest, (e.ts_ms - run[0]) / 1000.0)  # down until this report
            reboots += 1
            del runs[e.key]
    assert reboots >= 3
    assert longest < ApDownConfig().min_down_s
