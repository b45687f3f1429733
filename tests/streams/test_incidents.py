"""Labelled incident injection (streams.incidents) and `cityflow simulate --incidents`: the
injection is deterministic, changes nothing outside its labels, stays contract-valid, and each
label's interval really holds its pattern."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from contracts.decode import decode_batch
from contracts.registry import CONTRACTS
from jobs.commands import simulate as simulate_command
from streams.incidents import (
    DEVICE_KINDS,
    DISTRICT_KINDS,
    SUPPORTED_KINDS,
    IncidentLabel,
    IncidentPlacementError,
    IncidentPlan,
    UnsupportedIncident,
    inject,
    parse_kinds,
    read_labels,
)
from streams.simulator import SimEvent, generate
from tests.support.simulated_city import CITY_RATE, T0_UTC

DAYS = 3
WARMUP_S = 86_400.0


@pytest.fixture(scope="module")
def clean() -> list[SimEvent]:
    return list(generate(21, CITY_RATE, DAYS * 86_400, 1.0, T0_UTC))


@pytest.fixture(scope="module")
def injected(clean: list[SimEvent]) -> tuple[list[SimEvent], list[IncidentLabel]]:
    return inject(clean, DEVICE_KINDS, seed=21, warmup_s=WARMUP_S)


def _by_id(events: list[SimEvent]) -> dict[tuple[str, int], SimEvent]:
    return {(e.key, e.ts_ms): e for e in events}


def test_injection_is_deterministic_per_seed(clean, injected):
    again = inject(clean, DEVICE_KINDS, seed=21, warmup_s=WARMUP_S)
    assert again == injected
    _, other_labels = inject(clean, DEVICE_KINDS, seed=22, warmup_s=WARMUP_S)
    assert other_labels != injected[1]
    # the generator's plan reaches the same result
    labels: list[IncidentLabel] = []
    events = list(generate(21, CITY_RATE, DAYS * 86_400, 1.0, T0_UTC,
                           incidents=IncidentPlan(DEVICE_KINDS, 1.0, WARMUP_S), labels_out=labels))
    assert (events, labels) == injected


def test_one_incident_per_kind_per_day_after_warmup(clean, injected):
    _, labels = injected
    start = clean[0].ts_ms + WARMUP_S * 1000
    for kind in DEVICE_KINDS:
        mine = [lb for lb in labels if lb.kind == kind]
        assert len(mine) == DAYS - 1, kind
        assert all(lb.start_ms >= start and lb.end_ms > lb.start_ms for lb in mine)
        assert all(lb.source == kind.split(".")[0] for lb in mine)


def test_nothing_changes_outside_the_labels(clean, injected):
    """Oracle: every event that differs from the clean run (changed or missing) belongs to a
    labelled device inside its labelled interval; no event is added; time order is kept."""
    events, labels = injected
    before, after = _by_id(clean), _by_id(events)
    assert set(after) <= set(before)
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)

    def labelled(key: str, ts: int) -> bool:
        return any(lb.entity == key and lb.start_ms <= ts < lb.end_ms for lb in labels)

    touched = [k for k, e in before.items() if after.get(k) != e]
    assert touched
    assert all(labelled(key, ts) for key, ts in touched)
    # and every label touched its device (or silenced it)
    for lb in labels:
        assert any(key == lb.entity and lb.start_ms <= ts < lb.end_ms for key, ts in touched), lb


def test_injected_records_pass_their_contract(clean, injected):
    events, _ = injected
    before = _by_id(clean)
    now = datetime.fromtimestamp(events[-1].ts_ms / 1000, UTC) + timedelta(minutes=1)
    changed = [e for e in events if before[(e.key, e.ts_ms)] != e]
    for source in {e.source for e in changed}:
        values = [orjson.dumps(e.record) for e in changed if e.source == source]
        assert decode_batch(CONTRACTS[source], values, now=now).rejects == []


def test_cold_chain_label_is_where_the_cargo_is_warm_and_nowhere_else(clean, injected):
    events, labels = injected
    warm = [(e.key, e.ts_ms) for e in events
            if e.source == "logistics" and (e.record["cargo_temp_c"] or 0) > 8.0]
    cold = [lb for lb in labels if lb.kind == "logistics.cold_chain"]
    assert not [e for e in clean if e.source == "logistics" and (e.record["cargo_temp_c"] or 0) > 8.0]
    assert all(any(lb.entity == k and lb.start_ms <= t < lb.end_ms for lb in cold) for k, t in warm)
    for lb in cold:
        inside = [e for e in events if e.key == lb.entity and lb.start_ms <= e.ts_ms < lb.end_ms]
        assert inside and all(e.record["cargo_temp_c"] > 8.0 for e in inside)
        assert (inside[-1].ts_ms - inside[0].ts_ms) >= 30 * 60_000  # the detector needs 15 min


def test_each_pattern_holds_inside_its_label(injected):
    events, labels = injected
    for lb in labels:
        inside = [e.record for e in events if e.key == lb.entity and lb.start_ms <= e.ts_ms < lb.end_ms]
        if lb.kind == "traffic.dropout":
            assert inside == []
        elif lb.kind == "wifi.ap_down":
            assert inside == [] or {r["status"] for r in inside} == {"down"}
        elif lb.kind == "traffic.stuck":
            values = {(r["vehicle_count"], r["avg_speed_kmh"], r["occupancy_pct"]) for r in inside}
            assert len(values) == 1 and len(inside) >= 30
        elif lb.kind == "traffic.congestion":
            assert all(r["occupancy_pct"] >= 40 for r in inside if r["vehicle_count"])
        elif lb.kind == "logistics.stalled":
            assert all(r["status"] == "moving" and r["speed_kmh"] <= 1.0 for r in inside)
        elif lb.kind == "logistics.impossible_jump":
            fixes = [e.record for e in events if e.key == lb.entity and lb.start_ms <= e.ts_ms < lb.end_ms]
            assert len(fixes) == 3  # before, the far fix, after
            assert abs(fixes[1]["lat"] - fixes[0]["lat"]) + abs(fixes[1]["lon"] - fixes[0]["lon"]) > 0.05
        elif lb.kind == "lighting.on_in_daylight":
            assert all(r["status"] == "on" and r["ambient_lux"] >= 1000 for r in inside)
        elif lb.kind == "wifi.latency":
            assert all(r["status"] == "degraded" and r["latency_ms"] >= 120 for r in inside)
        elif lb.kind == "wifi.auth_burst":
            assert sum(r["auth_failures"] for r in inside) >= 15 * len(inside)


def test_kinds_are_parsed_and_unsupported_ones_refused():
    assert parse_kinds("all") == list(SUPPORTED_KINDS) == [*DEVICE_KINDS, *DISTRICT_KINDS]
    assert set(DISTRICT_KINDS) == {"lighting.fault_cluster", "cross.congestion_corroborated"}
    assert parse_kinds(" wifi.latency ,traffic.stuck") == ["traffic.stuck", "wifi.latency"]
    with pytest.raises(UnsupportedIncident, match="supported kinds: all, traffic.congestion"):
        parse_kinds("traffic.nope")


def test_a_run_too_short_for_the_incident_is_refused():
    events = list(generate(1, CITY_RATE, 1800, 1.0, T0_UTC))
    with pytest.raises(IncidentPlacementError, match="needs at least 47 min"):
        inject(events, ["traffic.congestion"], seed=1)


def test_a_kind_without_its_source_is_refused():
    events = list(generate(1, CITY_RATE, 7200, 1.0, T0_UTC, sources=["traffic"]))
    with pytest.raises(IncidentPlacementError, match="add it to --sources"):
        inject(events, ["wifi.latency"], seed=1)


# ------------------------------------------------------------------------------------------
# the command


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulate_command.register(parser.add_subparsers())
    return parser.parse_args(["simulate", *argv])


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_simulate_dry_run_writes_the_labels(tmp_path, capsys, suffix):
    path = tmp_path / f"labels{suffix}"
    args = _args("--dry-run", "--incidents", ",".join(DEVICE_KINDS), "--labels", str(path), "--seconds", "86400",
                 "--rate", "0.5", "--seed", "4")
    assert simulate_command.run_simulate(args) == 0
    labels = read_labels(path.read_text())
    assert sorted(lb.kind for lb in labels) == sorted(DEVICE_KINDS)
    first = json.loads(path.read_text())[0] if suffix == ".json" else json.loads(path.read_text().splitlines()[0])
    assert {"kind", "entity", "start", "end", "source"} <= set(first)
    assert f"injected {len(DEVICE_KINDS)} incidents" in capsys.readouterr().out


def test_simulate_refuses_unsupported_kinds_and_labels_without_incidents(capsys):
    assert simulate_command.run_simulate(_args("--dry-run", "--incidents", "cross.nope")) == 2
    err = capsys.readouterr().err
    assert "cross.nope" in err and "cross.congestion_corroborated" in err
    assert simulate_command.run_simulate(_args("--dry-run", "--labels", "x.jsonl")) == 2
    assert "--labels needs --incidents" in capsys.readouterr().err


def test_a_fault_cluster_changes_only_lamps_of_its_district_inside_its_interval():
    from tests.support.district_city import lamp_city, lamp_events, monday_start

    noon = monday_start() + timedelta(hours=12)
    plain = lamp_events(noon, seed=8)
    events, (label,) = lamp_city(noon, seed=8)
    assert label.kind == "lighting.fault_cluster" and label.source == "lighting"
    changed = [(a, b) for a, b in zip(plain, events, strict=True) if a != b]
    assert len({b.key for _, b in changed}) >= 4
    for a, b in changed:
        assert a.record["district"] == label.entity and label.start_ms <= b.ts_ms < label.end_ms
        assert b.record["status"] == "fault" and a.record["status"] != "fault"
    now = datetime.fromtimestamp(events[-1].ts_ms / 1000, UTC)
    values = [orjson.dumps(b.record) for _, b in changed]
    assert decode_batch(CONTRACTS["lighting"], values, now=now).rejects == []
