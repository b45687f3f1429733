"""Labelled incidents for the simulator: `inject` rewrites a generated event stream (pure,
seeded) so that one device of a source shows an incident a detector is meant to catch, and
returns the labels (kind, entity, start, end, source) that say where the ground truth is.

Each pattern follows its detector's rule (streams/detectors, defaults in the config
docstrings), with margin, and only touches the chosen device in the labelled interval:

- traffic.congestion: speed x0.25-0.35 and occupancy 40-60 % for 45 min, daytime;
- traffic.stuck: the first reading of the interval repeated unchanged for 40 min, daytime;
- traffic.dropout: the detector sends nothing for 30 min while the others go on;
- lighting.on_in_daylight: status 'on' at full power around noon for 60 min (lux untouched);
- lighting.energy_spike: power x2.2-2.8 of a lit lamp for 60 min in the late evening;
- wifi.auth_burst: 15-40 failed logins per report for 20 min, daytime;
- wifi.ap_down: 'down' reports (no clients, no traffic) or silence, 30 min;
- wifi.latency: +150-300 ms and status 'degraded' for 45 min, daytime;
- logistics.cold_chain: a reefer's cargo 8.5-12 °C for 40 min (the simulator's reefers never
  exceed 8 °C otherwise);
- logistics.stalled: status 'moving' at 0-1 km/h for 50 min, at a time the truck is parked
  (so its GPS is still), where one exists;
- logistics.impossible_jump: one fix moved to the far corner of the city; the label runs from
  the fix before to the fix after (the jump out and back);
- lighting.fault_cluster: most lamps of one district (at least 80 %, at least 5) go into fault
  in the same minute, one minute into a 15-min window, for 45 min, evening; the label's entity
  is the district;
- cross.congestion_corroborated: up to two detectors of one district jammed as for
  traffic.congestion (each also labelled traffic.congestion) and the logistics vehicles driving
  through that district in the first 10 min crawling at 3-9 km/h (positions untouched), for
  45 min, daytime; the label's entity is the district.

- supply.power_outage: a feeder dead (0 kW, 0 V, no frequency) for 40 min;
- supply.pressure_drop: a water point's pressure 0.8-1.6 bar for 45 min;
- supply.heat_return_high: a heating substation's return 6-12 K under its supply (poor
  cooling; the flow rises to carry the same heat) for 60 min;
- supply.water_leak: a water point's flow + max(4 m³/h, 40-70 % of its lowest flow in the
  interval) for 4 h from 00:30-01:30 local, so it spans the night's 02-04 h minimum and the
  report after it, when the night is judged (the leak rule judges nights, so a leak that
  began in the afternoon would be found after the same night, hours later; starting it
  just before the night keeps it inside a run's day slot and makes the time to detect the
  rule's own delay);

Incidents are placed one per kind per `1 / rate_per_day` days of the run (after `warmup_s`,
so detectors with a time-of-day baseline have one), at local hours where the pattern makes
sense, on different devices of a source where the fleet allows. Needs the whole run in memory.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from contracts.districts import DISTRICTS, LAT_MAX, LAT_MIN, LON_MAX, LON_MIN, district_of
from contracts.windows import WINDOW_DEFAULTS
from streams.detectors import DEFAULT_CONFIGS, DISTRICT_CONFIGS, FaultClusterConfig
from streams.simulator import CityClock, SimEvent

MIN_MS = 60_000
DAY_MS = 86_400_000

# Kinds the issue names that have no detector yet: injecting them would label what nothing finds.
NOT_YET_DETECTED: tuple[str, ...] = ()
FAULT_CLUSTER, CORROBORATED = "lighting.fault_cluster", "cross.congestion_corroborated"


class UnsupportedIncident(ValueError):
    """An incident kind that cannot be injected (unknown, or no detector for it yet)."""


class IncidentPlacementError(ValueError):
    """The run is too short (or its fleet too small) to hold the requested incidents."""


@dataclass(frozen=True)
class IncidentLabel:
    """Ground truth of one injected incident: `kind` on `entity` from start_ms to end_ms
    (exclusive), in the readings of `source`."""

    kind: str
    entity: str
    start_ms: int
    end_ms: int
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "entity": self.entity, "start": _iso(self.start_ms),
                "end": _iso(self.end_ms), "source": self.source,
                "start_ms": self.start_ms, "end_ms": self.end_ms}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> IncidentLabel:
        def ms(name: str) -> int:
            if d.get(f"{name}_ms") is not None:
                return int(d[f"{name}_ms"])
            return int(datetime.fromisoformat(d[name]).timestamp() * 1000)

        return cls(d["kind"], d["entity"], ms("start"), ms("end"), d["source"])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Pattern:
    """How one kind is injected: its source, duration, preferred local hours [h0, h1)."""

    source: str
    duration_min: float
    hours: tuple[float, float]
    also: tuple[str, ...] = ()  # further sources the pattern touches (cross-source kinds)

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source, *self.also)


PATTERNS: dict[str, Pattern] = {
    "traffic.congestion": Pattern("traffic", 45, (10.0, 15.0)),
    "traffic.stuck": Pattern("traffic", 40, (9.0, 17.0)),
    "traffic.dropout": Pattern("traffic", 30, (6.0, 21.0)),
    "lighting.on_in_daylight": Pattern("lighting", 60, (10.5, 12.5)),
    "lighting.energy_spike": Pattern("lighting", 60, (22.0, 22.75)),
    "wifi.auth_burst": Pattern("wifi", 20, (8.0, 20.0)),
    "wifi.ap_down": Pattern("wifi", 30, (6.0, 22.0)),
    "wifi.latency": Pattern("wifi", 45, (8.0, 20.0)),
    "logistics.cold_chain": Pattern("logistics", 40, (0.0, 24.0)),
    "logistics.stalled": Pattern("logistics", 50, (0.0, 24.0)),
    "logistics.impossible_jump": Pattern("logistics", 1, (0.0, 24.0)),
    FAULT_CLUSTER: Pattern("lighting", 45, (19.0, 23.0)),
    CORROBORATED: Pattern("traffic", 45, (10.0, 15.0), also=("logistics",)),
    "supply.power_outage": Pattern("supply", 40, (0.0, 24.0)),
    "supply.pressure_drop": Pattern("supply", 45, (0.0, 24.0)),
    "supply.heat_return_high": Pattern("supply", 60, (0.0, 24.0)),
    "supply.water_leak": Pattern("supply", 240, (0.5, 1.5)),
}
# Kinds about one device, and kinds about a district (several devices, maybe several sources:
# they need a fleet with several devices per district, e.g. 4+ lamps of one district).
DEVICE_KINDS: tuple[str, ...] = tuple(k for k in DEFAULT_CONFIGS if k in PATTERNS)
DISTRICT_KINDS: tuple[str, ...] = tuple(k for k in DISTRICT_CONFIGS if k in PATTERNS)
SUPPORTED_KINDS: tuple[str, ...] = DEVICE_KINDS + DISTRICT_KINDS


@dataclass(frozen=True)
class IncidentPlan:
    """What to inject into a simulated run: kinds, incidents per kind per day, and how long
    to wait (city seconds) before the first so time-of-day baselines are warm."""

    kinds: tuple[str, ...]
    rate_per_day: float = 1.0
    warmup_s: float = 0.0

    def __post_init__(self) -> None:
        parse_kinds(",".join(self.kinds))
        if self.rate_per_day <= 0 or self.warmup_s < 0:
            raise ValueError("rate_per_day must be > 0 and warmup_s >= 0")


def parse_kinds(text: str) -> list[str]:
    """'all' or comma-separated kinds -> the kinds, in SUPPORTED_KINDS order.

        >>> parse_kinds("wifi.latency,traffic.stuck")
        ['traffic.stuck', 'wifi.latency']
    """
    asked = [k.strip() for k in text.split(",") if k.strip()]
    if asked == ["all"]:
        return list(SUPPORTED_KINDS)
    bad = [k for k in asked if k not in SUPPORTED_KINDS]
    if bad or not asked:
        pending = [k for k in bad if k in NOT_YET_DETECTED]
        why = f" ({', '.join(pending)}: no detector yet)" if pending else ""
        raise UnsupportedIncident(
            f"cannot inject {bad or 'nothing'}{why}; supported kinds: all, {', '.join(SUPPORTED_KINDS)}")
    return [k for k in SUPPORTED_KINDS if k in asked]


# --------------------------------------------------------------------------------------------
# The patterns: each rewrites the chosen device's events in [start, end) (a list, in place)

Rewrite = Callable[[random.Random, list[int], list[SimEvent]], None]


def _set(events: list[SimEvent], i: int, **changes: Any) -> None:
    e = events[i]
    events[i] = SimEvent(e.source, e.key, e.ts_ms, {**e.record, **changes})


def _congestion(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    for i in idx:
        r = events[i].record
        if r["vehicle_count"] and r["avg_speed_kmh"] is not None:
            _set(events, i, avg_speed_kmh=round(max(3.0, r["avg_speed_kmh"] * rng.uniform(0.25, 0.35)), 1),
                 occupancy_pct=round(rng.uniform(40.0, 60.0), 2))


def _stuck(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    first = events[idx[0]].record
    count = max(1, first["vehicle_count"])
    speed = first["avg_speed_kmh"] if first["avg_speed_kmh"] is not None else 42.0
    occupancy = first["occupancy_pct"] or 6.5
    for i in idx:
        _set(events, i, vehicle_count=count, avg_speed_kmh=speed, occupancy_pct=occupancy)


def _on_in_daylight(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    rated = max(e.record["power_w"] for e in (events[i] for i in idx))
    rated = rated if rated > 5 else rng.choice((28.0, 36.0, 54.0, 75.0, 110.0))
    for i in idx:
        _set(events, i, status="on", dim_level_pct=100.0, fault_code=None,
             power_w=round(rated * rng.gauss(1.0, 0.02) + 0.4, 2))


def _energy_spike(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    factor = rng.uniform(2.2, 2.8)
    for i in idx:
        r = events[i].record
        _set(events, i, power_w=round(min(1000.0, r["power_w"] * factor * rng.gauss(1.0, 0.03)), 2))


def _auth_burst(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    for i in idx:
        _set(events, i, auth_failures=events[i].record["auth_failures"] + rng.randint(15, 40))


def _ap_down(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    for i in idx:
        _set(events, i, connected_clients=0, bytes_in=0, bytes_out=0, auth_failures=0, latency_ms=0.0,
             status="down")


def _latency(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    extra = rng.uniform(150.0, 300.0)
    for i in idx:
        r = events[i].record
        _set(events, i, latency_ms=round(r["latency_ms"] + extra * rng.gauss(1.0, 0.1), 1), status="degraded")


def _cold_chain(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    peak = rng.uniform(10.0, 12.0)
    t0, t1 = events[idx[0]].ts_ms, events[idx[-1]].ts_ms
    for i in idx:
        frac = (events[i].ts_ms - t0) / max(1, t1 - t0)
        temp = 8.5 + (peak - 8.5) * min(1.0, 3 * frac) + rng.gauss(0, 0.2)
        _set(events, i, cargo_temp_c=round(max(8.3, temp), 1))


def _stalled(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    for i in idx:
        _set(events, i, status="moving", speed_kmh=round(rng.uniform(0.0, 1.0), 1))


def _far_corner(lat: float, lon: float) -> tuple[float, float]:
    return (LAT_MIN + 0.01 if lat > (LAT_MIN + LAT_MAX) / 2 else LAT_MAX - 0.01,
            LON_MIN + 0.01 if lon > (LON_MIN + LON_MAX) / 2 else LON_MAX - 0.01)


def _power_outage(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    for i in idx:
        _set(events, i, load_kw=0.0, voltage_v=0.0, frequency_hz=None)


def _pressure_drop(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    level = rng.uniform(0.9, 1.5)
    for i in idx:
        _set(events, i, pressure_bar=round(max(0.0, level + rng.gauss(0, 0.1)), 2))


def _heat_return_high(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    spread = rng.uniform(6.0, 12.0)
    for i in idx:
        r = events[i].record
        dt = max(2.0, spread + rng.gauss(0, 0.5))
        _set(events, i, return_temp_c=round(r["supply_temp_c"] - dt, 1),
             heat_flow_m3h=round(min(500.0, r["heat_kw"] / (1.163 * dt)), 3))


def _water_leak(rng: random.Random, idx: list[int], events: list[SimEvent]) -> None:
    lowest = min(events[i].record["water_flow_m3h"] for i in idx)
    extra = max(4.0, lowest * rng.uniform(0.4, 0.7))
    for i in idx:
        r = events[i].record
        _set(events, i, water_flow_m3h=round(min(5000.0, r["water_flow_m3h"] + extra * rng.gauss(1.0, 0.02)), 2))


REWRITES: dict[str, Rewrite] = {
    "traffic.congestion": _congestion,
    "traffic.stuck": _stuck,
    "lighting.on_in_daylight": _on_in_daylight,
    "lighting.energy_spike": _energy_spike,
    "wifi.auth_burst": _auth_burst,
    "wifi.ap_down": _ap_down,
    "wifi.latency": _latency,
    "logistics.cold_chain": _cold_chain,
    "logistics.stalled": _stalled,
    "supply.power_outage": _power_outage,
    "supply.pressure_drop": _pressure_drop,
    "supply.heat_return_high": _heat_return_high,
    "supply.water_leak": _water_leak,
}
# The asset type each supply kind needs (a feeder has no pressure to drop).
SUPPLY_ASSET = {"supply.power_outage": "feeder", "supply.pressure_drop": "water",
                "supply.heat_return_high": "heat", "supply.water_leak": "water"}


def _eligible(kind: str, records: list[dict[str, Any]]) -> bool:
    """Whether a device's readings in the interval suit the pattern (a lit lamp for a spike,
    a reefer for cold chain, a parked truck for a stall, a working AP, a road with traffic)."""
    if not records:
        return False
    if kind == "lighting.energy_spike":
        return all(r["status"] in ("on", "dimmed") for r in records)
    if kind == "lighting.on_in_daylight":
        return all(r["status"] == "off" for r in records)
    if kind == "logistics.cold_chain":
        return all(r["cargo_temp_c"] is not None for r in records)
    if kind == "logistics.stalled":
        return all(r["status"] != "moving" for r in records)
    if kind in SUPPLY_ASSET:
        return all(r["asset_type"] == SUPPLY_ASSET[kind] for r in records)
    if kind.startswith("wifi."):
        return all(r["status"] != "down" for r in records)
    if kind in ("traffic.congestion", "traffic.stuck"):
        return records[0]["vehicle_count"] > 0
    return True


# --------------------------------------------------------------------------------------------
# Placement and injection


def inject(events: Iterable[SimEvent], kinds: Sequence[str], seed: int, rate_per_day: float = 1.0,
           warmup_s: float = 0.0) -> tuple[list[SimEvent], list[IncidentLabel]]:
    """Inject `rate_per_day` incidents of each kind per simulated day (at least one) into an
    event-time-ordered stream; return the new stream (still in order) and the labels, sorted
    by start. Deterministic: same events, kinds and seed, same result.

        >>> events, labels = inject(generate(...), ["logistics.cold_chain"], seed=42)
        >>> labels[0].kind, labels[0].source
        ('logistics.cold_chain', 'logistics')
    """
    kinds = parse_kinds(",".join(kinds)) if kinds else []
    out = list(events)
    if not kinds:
        return out, []
    if rate_per_day <= 0:
        raise ValueError(f"rate_per_day must be > 0, got {rate_per_day}")
    first_ms, last_ms = out[0].ts_ms if out else 0, out[-1].ts_ms if out else 0
    begin = first_ms + int(warmup_s * 1000)
    by_device: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(out):
        by_device.setdefault((e.source, e.key), []).append(i)
    devices = {s: sorted(k for (src, k) in by_device if src == s) for s in {e.source for e in out}}
    clock = CityClock(seed)
    labels: list[IncidentLabel] = []
    busy: dict[str, list[tuple[int, int]]] = {}  # device -> labelled intervals (one at a time)
    dropped: set[int] = set()
    for kind in kinds:
        pattern = PATTERNS[kind]
        for src in pattern.sources:
            if src not in devices:
                raise IncidentPlacementError(f"{kind} needs {src} readings; add it to --sources")
        dur = int(pattern.duration_min * MIN_MS)
        if last_ms - begin < dur + 2 * MIN_MS:
            need = (dur + 2 * MIN_MS + int(warmup_s * 1000)) / MIN_MS
            raise IncidentPlacementError(
                f"{kind} needs at least {need:.0f} min of city time; make --seconds x --speedup longer")
        n = max(1, round((last_ms - begin) / DAY_MS * rate_per_day))
        slot = (last_ms - begin) // n
        rng = random.Random(f"cityflow:{seed}:incidents:{kind}")
        for k in range(n):
            lo, hi = begin + k * slot, begin + (k + 1) * slot
            if kind in DISTRICT_CONFIGS:
                placed = _place_district(kind, pattern, rng, clock, out, by_device, devices, busy, lo, hi, dur)
            else:
                one = _place(kind, pattern, rng, clock, out, by_device, devices[pattern.source], busy, lo, hi,
                             dur, dropped)
                placed = [one] if one is not None else None
            if placed is None:
                raise IncidentPlacementError(
                    f"no device of {pattern.source} fits {kind} in day slot {k + 1} of {n}; "
                    "run more devices or fewer incidents")
            labels.extend(placed)
    if dropped:
        out = [e for i, e in enumerate(out) if i not in dropped]
    labels.sort(key=lambda lb: (lb.start_ms, lb.kind, lb.entity))
    return out, labels


def _starts(rng: random.Random, clock: CityClock, lo: int, hi: int, hours: tuple[float, float]) -> list[int]:
    """Candidate starts (whole minutes in [lo, hi)) at the preferred local hours, shuffled;
    any minute of the slot when none is at those hours (a short run)."""
    minutes = [lo + m * MIN_MS for m in range(max(0, (hi - lo) // MIN_MS))]
    good = [t for t in minutes if hours[0] <= clock.local(t)[0] < hours[1]]
    chosen = good or minutes
    rng.shuffle(chosen)
    return chosen


def _free(busy: dict[str, list[tuple[int, int]]], key: str, start: int, end: int) -> bool:
    margin = 60 * MIN_MS  # an hour apart, so one alert cannot be read as another incident's
    return all(end + margin <= s or start >= e + margin for s, e in busy.get(key, []))


def _place(kind: str, pattern: Pattern, rng: random.Random, clock: CityClock, out: list[SimEvent],
           by_device: dict[tuple[str, str], list[int]], keys: list[str],
           busy: dict[str, list[tuple[int, int]]], lo: int, hi: int, dur: int,
           dropped: set[int]) -> IncidentLabel | None:
    source = pattern.source
    tries = 0
    for start in _starts(rng, clock, lo, hi - dur - MIN_MS, pattern.hours):
        order = list(keys)
        rng.shuffle(order)
        for key in order:
            tries += 1
            if tries > 4000:
                return None
            idx_all = by_device[(source, key)]
            if kind == "logistics.impossible_jump":
                if not _free(busy, key, start - 5 * MIN_MS, start + 5 * MIN_MS):
                    continue
                label = _jump(out, idx_all, start, key)
            else:
                end = start + dur
                idx = [i for i in idx_all if start <= out[i].ts_ms < end]
                if len(idx) < 2 or not _free(busy, key, start, end):
                    continue
                if not _eligible(kind, [out[i].record for i in idx]):
                    continue
                if kind == "traffic.dropout" or (kind == "wifi.ap_down" and rng.random() < 0.5):
                    dropped.update(idx)  # silence: the device sends nothing
                else:
                    REWRITES[kind](rng, idx, out)
                label = IncidentLabel(kind, key, start, end, source)
            if label is None or not _free(busy, key, label.start_ms, label.end_ms):
                continue
            busy.setdefault(key, []).append((label.start_ms, label.end_ms))
            return label
    return None


def _jump(out: list[SimEvent], idx_all: list[int], start: int, key: str) -> IncidentLabel | None:
    """Move the first fix at or after `start` to the far corner; label fix before -> fix after."""
    pos = next((p for p, i in enumerate(idx_all) if out[i].ts_ms >= start), None)
    if pos is None or pos == 0 or pos + 1 >= len(idx_all):
        return None
    i = idx_all[pos]
    r = out[i].record
    lat, lon = _far_corner(r["lat"], r["lon"])
    if math.hypot((lat - r["lat"]) * 111.2, (lon - r["lon"]) * 70.0) < 5.0:
        return None
    _set(out, i, lat=round(lat, 6), lon=round(lon, 6))
    return IncidentLabel("logistics.impossible_jump", key, out[idx_all[pos - 1]].ts_ms,
                         out[idx_all[pos + 1]].ts_ms + 1, "logistics")


def _district_of_record(source: str, record: dict[str, Any]) -> str | None:
    if "district" in record:
        return record["district"]
    if source == "logistics":
        return str(district_of(np.array([record["lat"]]), np.array([record["lon"]]))[0])
    return None


def _place_district(kind: str, pattern: Pattern, rng: random.Random, clock: CityClock, out: list[SimEvent],
                    by_device: dict[tuple[str, str], list[int]], devices: dict[str, list[str]],
                    busy: dict[str, list[tuple[int, int]]], lo: int, hi: int,
                    dur: int) -> list[IncidentLabel] | None:
    """Place one district incident: a start at the pattern's hours and a district where enough
    devices fit; rewrite them; return its labels (the district's, then any per-device ones)."""
    window_ms = WINDOW_DEFAULTS["lighting"].size_s * 1000
    times = _DeviceTimes(out, by_device)
    tries = 0
    for start in _starts(rng, clock, lo, hi - dur - MIN_MS, pattern.hours):
        if kind == FAULT_CLUSTER:  # one minute into a lighting window: every onset in the same one
            start = start - start % window_ms + MIN_MS
            if start < lo:
                continue
        end = start + dur
        order = list(DISTRICTS)
        rng.shuffle(order)
        for district in order:
            tries += 1
            if tries > 3000:
                return None
            if not _free(busy, f"district:{district}", start, end):
                continue
            rewrite = _fault_cluster if kind == FAULT_CLUSTER else _corroborated
            labels = rewrite(rng, out, times, devices, busy, district, start, end)
            if labels is not None:
                busy.setdefault(f"district:{district}", []).append((start, end))
                return labels
    return None


class _DeviceTimes:
    """Per device, its events' times (ascending, like its indices), for bisecting intervals."""

    def __init__(self, out: list[SimEvent], by_device: dict[tuple[str, str], list[int]]):
        self.out, self.by_device = out, by_device
        self.times: dict[tuple[str, str], list[int]] = {}

    def within(self, source: str, key: str, start: int, end: int) -> list[int]:
        """Indices of the device's events with start <= ts < end."""
        dev = (source, key)
        times = self.times.get(dev)
        if times is None:
            times = self.times[dev] = [self.out[i].ts_ms for i in self.by_device[dev]]
        return self.by_device[dev][bisect.bisect_left(times, start):bisect.bisect_left(times, end)]


def _fault_cluster(rng: random.Random, out: list[SimEvent], times: _DeviceTimes,
                   devices: dict[str, list[str]], busy: dict[str, list[tuple[int, int]]], district: str,
                   start: int, end: int) -> list[IncidentLabel] | None:
    by_device = times.by_device
    lamps = [k for k in devices["lighting"] if out[by_device[("lighting", k)][0]].record["district"] == district]
    need = max(FaultClusterConfig().min_lamps + 2, math.ceil(0.8 * len(lamps)))
    if len(lamps) < need:
        return None
    ok = []
    for key in lamps:
        idx = times.within("lighting", key, start - 20 * MIN_MS, end)
        during = [i for i in idx if out[i].ts_ms >= start]
        if len(during) >= 2 and _free(busy, key, start, end) and all(out[i].record["status"] != "fault" for i in idx):
            ok.append(key)
    if len(ok) < need:
        return None
    rng.shuffle(ok)
    code = rng.choice(("E04-COMM-LOSS", "E02-DRIVER"))
    for key in ok[:need]:
        for i in times.within("lighting", key, start, end):
            _set(out, i, status="fault", dim_level_pct=0.0, power_w=round(rng.uniform(0.0, 2.0), 2), fault_code=code)
        busy.setdefault(key, []).append((start, end))
    return [IncidentLabel(FAULT_CLUSTER, district, start, end, "lighting")]


def _corroborated(rng: random.Random, out: list[SimEvent], times: _DeviceTimes,
                  devices: dict[str, list[str]], busy: dict[str, list[tuple[int, int]]], district: str,
                  start: int, end: int) -> list[IncidentLabel] | None:
    trucks = []
    for key in devices["logistics"]:
        first = times.within("logistics", key, start, start + 10 * MIN_MS)
        if len(first) < 3 or not _free(busy, key, start, end):
            continue
        if all(out[i].record["status"] == "moving" for i in first) and all(
                _district_of_record("logistics", out[i].record) == district for i in first):
            trucks.append((key, first))
    if not trucks:
        return None
    detectors = []
    for key in devices["traffic"]:
        if out[times.by_device[("traffic", key)][0]].record["district"] != district or not _free(busy, key, start, end):
            continue
        during = times.within("traffic", key, start, end)
        if len(during) >= 2 and _eligible("traffic.congestion", [out[i].record for i in during]):
            detectors.append((key, during))
    if not detectors:
        return None
    rng.shuffle(detectors)
    labels = [IncidentLabel(CORROBORATED, district, start, end, "traffic")]
    for key, during in detectors[:2]:
        _congestion(rng, during, out)
        busy.setdefault(key, []).append((start, end))
        labels.append(IncidentLabel("traffic.congestion", key, start, end, "traffic"))
    for key, first in trucks:
        for i in first:
            _set(out, i, speed_kmh=round(rng.uniform(3.0, 9.0), 1))
        busy.setdefault(key, []).append((start, end))
    return labels


def labels_lines(labels: Sequence[IncidentLabel]) -> str:
    """The labels as JSON lines (one object per line)."""
    import orjson

    return "".join(orjson.dumps(lb.to_json()).decode() + "\n" for lb in labels)


def read_labels(text: str) -> list[IncidentLabel]:
    """Labels from JSON lines or a JSON list."""
    import orjson

    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        items = orjson.loads(text)
    else:
        items = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    return [IncidentLabel.from_json(d) for d in items]
