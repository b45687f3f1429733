"""A deterministic Duisburg simulator: `generate` yields contract-valid readings of traffic
detectors, street lamps, Wi-Fi access points, port trucks and the utility's supply meters
(pure, seeded); `produce*` send them to Kafka with kafka-python."""

from __future__ import annotations

import heapq
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

import orjson

from contracts.districts import DISTRICTS, LAT_MAX, LAT_MIN, LON_MAX, LON_MIN
from contracts.registry import CONTRACTS
from contracts.windows import WindowGeometry, window_geometry
from streams.broker import BrokerUnreachable

if TYPE_CHECKING:
    from contracts.settings import Settings
    from streams.incidents import IncidentLabel, IncidentPlan

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = tuple(CONTRACTS)
# Share of all events per source (normalised over the sources asked for): traffic the most.
# Supply is small on purpose: a city has few hundred metered network assets against tens of
# thousands of lamps and detectors, and every e2e test runs the default mix.
SHARE = {"traffic": 0.45, "lighting": 0.25, "wifi": 0.18, "logistics": 0.12, "supply": 0.04}
# Sources added after the first four come on top of the rate instead of taking their share out
# of the others: a seeded run of the first four (the demo's incidents, eval's tables, every
# test's fleet) stays the same event for event when a source is added. Asked for alone, such a
# source gets the whole rate, like any other.
ADDED_SOURCES = frozenset({"supply"})
# How often a device reports, in seconds of city time, when the fleet is not clamped.
NOMINAL_INTERVAL_S = {"traffic": 60.0, "lighting": 60.0, "wifi": 30.0, "logistics": 20.0, "supply": 60.0}
# Supply: one feeder, water point and heating substation per district at least.
MIN_DEVICES = {"traffic": 7, "lighting": 7, "wifi": 5, "logistics": 3, "supply": 21}
MAX_DEVICES = {"traffic": 20_000, "lighting": 50_000, "wifi": 5_000, "logistics": 3_000, "supply": 5_000}

TZ = ZoneInfo("Europe/Berlin")
LAT, LON = 51.43, 6.76  # Duisburg, for the sun
# Rough share of devices per district (Mitte and Süd are the largest).
DISTRICT_WEIGHTS = (0.10, 0.14, 0.14, 0.08, 0.22, 0.14, 0.18)

ProgressFn = Callable[[dict[str, int]], None]


@dataclass(frozen=True)
class SimEvent:
    """One simulated reading: its source, Kafka key (device id), event time and JSON record."""

    source: str
    key: str
    ts_ms: int
    record: dict[str, Any]


@dataclass(frozen=True)
class FleetPlan:
    """How many devices a source has and how many readings it sends in a run."""

    source: str
    devices: int
    events: int


# --------------------------------------------------------------------------------------------
# Plan: fleet sizes and event counts


def plan_fleets(
    rate: float, seconds: float, speedup: float = 1.0, sources: Sequence[str] = SOURCES
) -> list[FleetPlan]:
    """Split rate*seconds events over `sources` and size each fleet so a device reports about
    every NOMINAL_INTERVAL_S of city time (clamped to MIN/MAX_DEVICES). Sources in ADDED_SOURCES
    come on top (rate*seconds*SHARE more events) unless they are all that was asked for.

        >>> [(p.source, p.devices, p.events) for p in plan_fleets(100, 60, sources=["wifi"])]
        [('wifi', 3000, 6000)]
    """
    if rate <= 0 or seconds <= 0 or speedup <= 0:
        raise ValueError(f"rate, seconds and speedup must be > 0, got {rate}, {seconds}, {speedup}")
    unknown = [s for s in sources if s not in SHARE]
    if unknown or not sources:
        raise ValueError(f"unknown sources {unknown}; choose from {list(SOURCES)}")
    chosen = [s for s in SOURCES if s in sources]
    total_share = sum(SHARE[s] for s in chosen if s not in ADDED_SOURCES) or sum(SHARE[s] for s in chosen)
    plans = []
    for s in chosen:
        share = SHARE[s] / total_share
        events = round(rate * seconds * share)
        devices = round(rate * share * NOMINAL_INTERVAL_S[s] / speedup)
        devices = min(max(devices, MIN_DEVICES[s]), MAX_DEVICES[s], events)
        if events > 0:
            plans.append(FleetPlan(s, devices, events))
    return plans


# --------------------------------------------------------------------------------------------
# City clock: local time and the sun


class CityClock:
    """Local (Europe/Berlin) hour and weekday, sun elevation and daylight for an event time."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._offsets: dict[int, int] = {}
        self._sun: dict[int, float] = {}
        self._clouds: dict[int, float] = {}

    def local(self, ts_ms: int) -> tuple[float, int]:
        """(local hour as a float 0..24, weekday 0=Monday) at ts_ms."""
        sec = ts_ms // 1000
        hour_key = sec // 3600
        offset = self._offsets.get(hour_key)
        if offset is None:
            dt = datetime.fromtimestamp(hour_key * 3600, UTC).astimezone(TZ)
            offset = int(dt.utcoffset().total_seconds())  # type: ignore[union-attr]
            self._offsets[hour_key] = offset
        local = sec + offset
        return (local % 86400) / 3600.0, (local // 86400 + 3) % 7  # 1970-01-01 was a Thursday

    def sun_elevation(self, ts_ms: int) -> float:
        """Approximate solar elevation in degrees over Duisburg (good to a degree or two)."""
        minute = ts_ms // 60_000
        elev = self._sun.get(minute)
        if elev is None:
            day = minute / 1440.0
            doy = (day + 0.5) % 365.2422  # days since the epoch's new year, close enough
            decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
            solar_hours = (minute % 1440) / 60.0 + LON / 15.0
            hour_angle = math.radians(15.0 * (solar_hours - 12.0))
            lat = math.radians(LAT)
            sin_e = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(
                hour_angle
            )
            elev = math.degrees(math.asin(max(-1.0, min(1.0, sin_e))))
            self._sun[minute] = elev
        return elev

    def ambient_lux(self, ts_ms: int) -> float:
        """Outdoor illuminance: daylight by sun elevation and the day's cloud, twilight, night."""
        elev = self.sun_elevation(ts_ms)
        if elev > 0:
            daylight = float(math.sin(math.radians(elev)) ** 1.2)
            return 400.0 + 120_000.0 * daylight * self._cloud(ts_ms)
        if elev > -8:
            return 400.0 * 10 ** (elev / 1.5)  # civil twilight: ~400 lx at sunset, ~0 at -6°
        return 0.0

    def _cloud(self, ts_ms: int) -> float:
        day = ts_ms // 86_400_000
        cloud = self._clouds.get(day)
        if cloud is None:
            cloud = random.Random(f"cityflow:{self._seed}:cloud:{day}").uniform(0.2, 1.0)
            self._clouds[day] = cloud
        return cloud


# Hourly activity (0..1) by local hour, interpolated within the hour.
TRAFFIC_WEEKDAY = (
    0.06,
    0.04,
    0.03,
    0.03,
    0.06,
    0.20,
    0.55,
    0.95,
    1.00,
    0.80,
    0.65,
    0.65,
    0.70,
    0.70,
    0.70,
    0.80,
    0.95,
    1.00,
    0.90,
    0.60,
    0.45,
    0.35,
    0.22,
    0.12,
)
TRAFFIC_WEEKEND = (
    0.10,
    0.08,
    0.06,
    0.04,
    0.04,
    0.06,
    0.10,
    0.18,
    0.30,
    0.45,
    0.55,
    0.60,
    0.62,
    0.62,
    0.60,
    0.58,
    0.55,
    0.52,
    0.48,
    0.40,
    0.32,
    0.25,
    0.18,
    0.12,
)
STREET_ACTIVITY = (
    0.06,
    0.04,
    0.03,
    0.03,
    0.03,
    0.05,
    0.15,
    0.35,
    0.50,
    0.65,
    0.80,
    0.95,
    1.00,
    1.00,
    0.95,
    0.95,
    1.00,
    1.00,
    0.90,
    0.70,
    0.50,
    0.35,
    0.20,
    0.10,
)


def _profile(table: tuple[float, ...], hour: float) -> float:
    i = int(hour) % 24
    frac = hour - int(hour)
    return table[i] * (1 - frac) + table[(i + 1) % 24] * frac


def traffic_activity(hour: float, weekday: int) -> float:
    """Relative traffic flow 0..1 at a local hour: rush hours 7-9 and 16-18 on weekdays."""
    return _profile(TRAFFIC_WEEKEND if weekday >= 5 else TRAFFIC_WEEKDAY, hour)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 12:  # Knuth
        limit, k, p = math.exp(-lam), 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def _district(rng: random.Random, index: int) -> str:
    """The first seven devices cover every district once; the rest follow DISTRICT_WEIGHTS."""
    if index < len(DISTRICTS):
        return DISTRICTS[index]
    return rng.choices(DISTRICTS, weights=DISTRICT_WEIGHTS)[0]


# --------------------------------------------------------------------------------------------
# Devices: each keeps its own state and makes one record per report


ROADS: dict[str, tuple[str, ...]] = {
    "Walsum": ("Friedrich-Ebert-Straße", "Dr.-Wilhelm-Roelen-Straße", "Kaiserstraße"),
    "Hamborn": ("A59", "Duisburger Straße", "Weseler Straße", "Kaiser-Wilhelm-Straße"),
    "Meiderich/Beeck": ("A59", "A42", "Von-der-Mark-Straße", "Bahnhofstraße"),
    "Homberg/Ruhrort/Baerl": ("A40", "Moerser Straße", "Dammstraße", "Ruhrorter Straße"),
    "Mitte": ("A59", "A40", "Mülheimer Straße", "Düsseldorfer Straße", "Koloniestraße"),
    "Rheinhausen": ("A40", "Friedrich-Alfred-Straße", "Krefelder Straße", "Moerser Straße"),
    "Süd": ("A59", "A3", "A524", "Düsseldorfer Landstraße", "Angertaler Straße"),
}


class TrafficDetector:
    """An induction loop on one lane; counts vehicles over a 60 s interval ending at ts.

    A v3 producer: an interval without vehicles reports `avg_speed_kmh` null (no vehicles, no
    speed) and occupancy 0; loops measure no travel time, so `travel_time_s` is left out."""

    COUNT_INTERVAL_S = 60.0

    def __init__(self, rng: random.Random, index: int) -> None:
        self.id = f"tdet-{index + 1:04d}"
        self.district = _district(rng, index)
        self.road = rng.choice(ROADS[self.district])
        motorway = self.road[0] == "A" and self.road[1:].isdigit()
        self.lane = rng.randint(1, 3 if motorway else 2)
        self.peak_flow_h = rng.uniform(1500, 1900) if motorway else rng.uniform(600, 950)
        self.free_speed = rng.uniform(105, 125) if motorway else rng.uniform(45, 55)
        self.jam_drop = 0.6 if motorway else 0.5

    def read(self, rng: random.Random, clock: CityClock, ts_ms: int, iso: str) -> dict[str, Any]:
        hour, weekday = clock.local(ts_ms)
        act = traffic_activity(hour, weekday)
        count = min(500, _poisson(rng, self.peak_flow_h * act * self.COUNT_INTERVAL_S / 3600))
        speed: float | None = None  # no vehicles, no speed
        occupancy = 0.0
        if count:
            kmh = self.free_speed * (1 - self.jam_drop * act**3) * rng.gauss(1.0, 0.06)
            speed = min(max(kmh, 3.0), 200.0)
            density = count * 3600 / self.COUNT_INTERVAL_S / speed  # vehicles per km
            occupancy = min(100.0, max(0.0, density * 0.75 * rng.gauss(1.0, 0.08)))
        return {
            "detector_id": self.id,
            "ts": iso,
            "district": self.district,
            "road": self.road,
            "lane": self.lane,
            "vehicle_count": count,
            "avg_speed_kmh": round(speed, 1) if speed is not None else None,
            "occupancy_pct": round(occupancy, 2),
        }


FAULT_CODES = ("E01-LED-OPEN", "E02-DRIVER", "E03-OVERTEMP", "E04-COMM-LOSS", "E05-SURGE")


class StreetLamp:
    """An LED lamp: on after dusk, dimmed 30-60 % from midnight to 05:00, off in daylight;
    power follows the dim level; now and then a fault that lasts a while."""

    FAULT_ONSET = 0.0015
    STANDBY_W = 0.4

    def __init__(self, rng: random.Random, index: int) -> None:
        self.id = f"lamp-{index + 1:05d}"
        self.district = _district(rng, index)
        self.rated_w = rng.choice((28.0, 36.0, 54.0, 75.0, 110.0))
        self.night_dim = float(rng.choice((30, 40, 50, 60)))
        self.shade = rng.uniform(0.6, 1.0)  # trees and buildings over the sensor
        self.threshold_lux = rng.uniform(25, 45)
        self.fault_left = 0
        self.fault_code: str | None = None

    def read(self, rng: random.Random, clock: CityClock, ts_ms: int, iso: str) -> dict[str, Any]:
        lux = min(150_000.0, clock.ambient_lux(ts_ms) * self.shade * rng.gauss(1.0, 0.05) + 0.1)
        lux = max(0.0, lux)
        if self.fault_left == 0 and rng.random() < self.FAULT_ONSET:
            self.fault_left = 1 + int(rng.expovariate(1 / 40))
            self.fault_code = rng.choice(FAULT_CODES)
        if self.fault_left > 0:
            self.fault_left -= 1
            status, dim, power = "fault", 0.0, rng.uniform(0.0, 2.0)
            code = self.fault_code
        else:
            code = None
            if lux < self.threshold_lux:
                hour, _ = clock.local(ts_ms)
                dim = self.night_dim if hour < 5.0 else 100.0
                status = "dimmed" if dim < 100 else "on"
                power = dim / 100 * self.rated_w * rng.gauss(1.0, 0.02) + self.STANDBY_W
            else:
                status, dim, power = "off", 0.0, self.STANDBY_W
        return {
            "lamp_id": self.id,
            "ts": iso,
            "district": self.district,
            "status": status,
            "dim_level_pct": dim,
            "power_w": round(max(0.0, power), 2),
            "ambient_lux": round(lux, 1),
            "fault_code": code,
        }


TRAM_ROUTES = (
    ("Walsum", "Hamborn", "Meiderich/Beeck", "Mitte", "Süd"),  # 903
    ("Hamborn", "Meiderich/Beeck", "Mitte", "Homberg/Ruhrort/Baerl"),  # 901
)
BUS_ROUTES = (
    ("Rheinhausen", "Homberg/Ruhrort/Baerl", "Mitte"),
    ("Mitte", "Süd"),
    ("Walsum", "Hamborn"),
    ("Meiderich/Beeck", "Mitte", "Rheinhausen"),
    ("Hamborn", "Meiderich/Beeck", "Homberg/Ruhrort/Baerl"),
)
SITE_MIX = (("street", 0.35), ("zoo", 0.10), ("tram", 0.15), ("bus", 0.20), ("school", 0.20))


def _site_counts(n: int) -> dict[str, int]:
    """Split n APs over site types (largest remainder), at least one of each when n >= 5."""
    floor = 1 if n >= len(SITE_MIX) else 0
    counts = {t: floor for t, _ in SITE_MIX}
    rest = n - floor * len(SITE_MIX)
    raw = [(t, rest * w) for t, w in SITE_MIX]
    for t, x in raw:
        counts[t] += int(x)
    left = n - sum(counts.values())
    for t, _ in sorted(raw, key=lambda tx: (-(tx[1] - int(tx[1])), tx[0]))[:left]:
        counts[t] += 1
    return counts


REBOOT_MAX_S = 300.0  # the longest outage the simulator makes unasked (see WifiAccessPoint.read)


class WifiAccessPoint:
    """A public AP: streets busy in shopping hours, the zoo 9-18, schools 8-15 on weekdays,
    trams and buses with commuters and moving along their routes between districts."""

    CAPACITY: ClassVar[dict[str, float]] = {
        "street": 35.0,
        "zoo": 220.0,
        "tram": 70.0,
        "bus": 35.0,
        "school": 120.0,
    }
    BASE_LATENCY: ClassVar[dict[str, float]] = {
        "street": 6.0,
        "zoo": 6.0,
        "school": 5.0,
        "tram": 35.0,
        "bus": 40.0,
    }

    def __init__(
        self, rng: random.Random, site: str, number: int, index: int, interval_s: float
    ) -> None:
        self.id = f"ap-{site}-{number:03d}"
        self.site = site
        self.interval_s = min(interval_s, 3600.0)
        self.route: tuple[str, ...] = ()
        if site == "tram":
            self.route = TRAM_ROUTES[number % len(TRAM_ROUTES)]
        elif site == "bus":
            self.route = BUS_ROUTES[number % len(BUS_ROUTES)]
        # The zoo is in Duissern (Mitte); vehicles report the district they are passing.
        self.district = "Mitte" if site == "zoo" else _district(rng, index)
        self.cycle_s = rng.uniform(3000, 5400)  # one way and back along the route
        self.cycle_offset_s = rng.uniform(0, self.cycle_s)
        self.capacity = self.CAPACITY[site] * rng.uniform(0.7, 1.3)
        self.down_left = 0

    def _where(self, ts_ms: int) -> str:
        if not self.route:
            return self.district
        stops = len(self.route)
        if stops == 1:
            return self.route[0]
        phase = ((ts_ms / 1000 + self.cycle_offset_s) % self.cycle_s) / self.cycle_s
        i = int(phase * 2 * (stops - 1))
        return self.route[i if i < stops else 2 * (stops - 1) - i]

    def activity(self, hour: float, weekday: int) -> float:
        site = self.site
        if site == "street":
            return _profile(STREET_ACTIVITY, hour)
        if site == "zoo":
            if 9.0 <= hour < 18.0:  # opening hours
                visitors = float(math.sin(math.pi * (hour - 9.0) / 9.0) ** 0.8)
                return visitors * (1.5 if weekday >= 5 else 1.0)
            return 0.005
        if site == "school":
            if weekday < 5 and 7.5 <= hour < 15.5:
                return 1.0 if hour < 13.5 else 0.4
            return 0.01
        if hour < 4.5 and hour >= 0.5:  # trams and buses: out of service, in the depot
            return 0.0
        return traffic_activity(hour, weekday)

    def read(self, rng: random.Random, clock: CityClock, ts_ms: int, iso: str) -> dict[str, Any]:
        hour, weekday = clock.local(ts_ms)
        if self.down_left == 0 and rng.random() < 0.0005:
            # a reboot: 1-5 min down. Longer outages are incidents, and an incident in a city
            # the eval calls incident-free is an unlabelled one: it scored as a false alert
            # although the device really was down. So they come only from streams.incidents
            # (wifi.ap_down, labelled); reboots stay as the noise the detector must ignore.
            self.down_left = max(1, round(rng.uniform(60.0, REBOOT_MAX_S) / self.interval_s))
        if self.down_left > 0:
            self.down_left -= 1
            clients = bytes_in = bytes_out = auth = 0
            latency, status = 0.0, "down"
        else:
            clients = min(5000, _poisson(rng, self.capacity * self.activity(hour, weekday) + 0.3))
            bytes_in = int(clients * rng.uniform(4e3, 3e4) * self.interval_s)
            bytes_out = int(clients * rng.uniform(1e3, 6e3) * self.interval_s)
            auth = _poisson(rng, 0.02 * clients + 0.1)
            latency = self.BASE_LATENCY[self.site] + 0.15 * clients + rng.expovariate(1 / 4)
            status = "degraded" if latency > 120 or rng.random() < 0.005 else "up"
        return {
            "ap_id": self.id,
            "ts": iso,
            "site_type": self.site,
            "district": self._where(ts_ms),
            "connected_clients": clients,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "auth_failures": auth,
            "latency_ms": round(latency, 1),
            "status": status,
        }


# Stops of the port's trucks (lat, lon), all inside the city's bounding box.
HUBS: dict[str, tuple[float, float]] = {
    "ruhrort": (51.455, 6.735),  # duisport, Ruhrort harbour
    "logport1": (51.393, 6.702),  # logport I, Rheinhausen
    "hochfeld": (51.418, 6.752),
    "kaiserberg": (51.437, 6.805),  # A3/A40 interchange
    "huettenheim": (51.366, 6.745),
    "walsum": (51.527, 6.705),
    "essenberg": (51.445, 6.705),
}
HUB_NAMES = tuple(HUBS)


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    dlat = (b[0] - a[0]) * 111.2
    dlon = (b[1] - a[1]) * 111.2 * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(dlat, dlon)


class Truck:
    """A truck shuttling between the port hubs: unloading, idle, loading, then moving to the
    next stop (mostly to and from Ruhrort); many wait overnight. Reefers carry 2-8 °C cargo."""

    def __init__(self, rng: random.Random, index: int, start_s: float) -> None:
        self.id = f"truck-{index + 1:04d}"
        self.reefer = index % 5 == 0  # every fifth truck, so even a small fleet has one
        self.setpoint = rng.uniform(3.5, 5.5)
        self.hub = rng.choice(HUB_NAMES)
        self.pos = HUBS[self.hub]
        # phases: (status, until_s); the current leg when moving: origin, target, depart, arrive
        self.status = rng.choice(("unloading", "idle", "loading"))
        self.until_s = start_s + rng.uniform(0, 2400)
        self.next_hub = self._pick_next(rng)
        self.origin = self.pos
        self.depart_s = self.arrive_s = start_s
        self.cruise = 40.0

    def _pick_next(self, rng: random.Random) -> str:
        if self.hub != "ruhrort" and rng.random() < 0.6:
            return "ruhrort"
        return rng.choice([h for h in HUB_NAMES if h != self.hub])

    def _advance(self, rng: random.Random, clock: CityClock, now_s: float) -> None:
        while now_s >= self.until_s:
            t = self.until_s
            if self.status == "moving":  # arrived
                self.hub, self.pos = self.next_hub, HUBS[self.next_hub]
                self.next_hub = self._pick_next(rng)
                hour, _ = clock.local(int(t * 1000))
                if (hour >= 22 or hour < 5) and rng.random() < 0.5:  # parked for the night
                    self.status = "idle"
                    self.until_s = t + ((29.0 - hour) % 24) * 3600 + rng.uniform(0, 3600)
                else:
                    self.status, self.until_s = "unloading", t + rng.uniform(600, 2100)
            elif self.status == "unloading":
                self.status, self.until_s = "idle", t + rng.uniform(0, 900)
            elif self.status == "idle":
                self.status, self.until_s = "loading", t + rng.uniform(600, 2100)
            else:  # loading done: leave
                self.origin = HUBS[self.hub]
                self.cruise = rng.uniform(25, 55)
                km = _km(self.origin, HUBS[self.next_hub]) * 1.3  # roads are not straight
                self.depart_s, self.status = t, "moving"
                self.until_s = self.arrive_s = t + km / self.cruise * 3600

    def read(self, rng: random.Random, clock: CityClock, ts_ms: int, iso: str) -> dict[str, Any]:
        now_s = ts_ms / 1000
        self._advance(rng, clock, now_s)
        target = HUBS[self.next_hub]
        if self.status == "moving":
            frac = (now_s - self.depart_s) / max(1.0, self.arrive_s - self.depart_s)
            lat = self.origin[0] + (target[0] - self.origin[0]) * frac
            lon = self.origin[1] + (target[1] - self.origin[1]) * frac
            stopped = rng.random() < 0.1  # traffic lights, jams
            speed = rng.uniform(0, 5) if stopped else self.cruise * rng.gauss(1.0, 0.15)
            eta = (self.arrive_s - now_s) / 60
        else:
            lat, lon = self.pos
            speed = 0.0 if self.status == "idle" else rng.uniform(0, 3)
            leg_min = _km(self.pos, target) * 1.3 / 40 * 60
            eta = (self.until_s - now_s) / 60 + leg_min
        lat = min(max(lat + rng.gauss(0, 0.00004), LAT_MIN), LAT_MAX)
        lon = min(max(lon + rng.gauss(0, 0.00006), LON_MIN), LON_MAX)
        temp = None
        if self.reefer:
            door = 1.2 if self.status in ("loading", "unloading") else 0.0
            temp = round(min(8.0, max(2.0, rng.gauss(self.setpoint + door, 0.5))), 1)
        return {
            "vehicle_id": self.id,
            "ts": iso,
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "speed_kmh": round(min(max(speed, 0.0), 130.0), 1),
            "status": self.status,
            "cargo_temp_c": temp,
            "eta_minutes": round(min(max(eta, 0.0), 2880.0), 1),
        }


# Supply networks: load, water use and heat follow the city's day. Relative feeder load by
# local hour (residential and commercial mix): a night trough, a morning shoulder and the
# evening peak at 18-20 h that German distribution networks see.
FEEDER_LOAD = (0.42, 0.38, 0.36, 0.35, 0.36, 0.42, 0.55, 0.68, 0.74, 0.75, 0.76, 0.78,
               0.80, 0.78, 0.76, 0.76, 0.80, 0.88, 0.98, 1.00, 0.95, 0.82, 0.65, 0.50)
# Relative water demand by local hour: the minimum night flow at 02-04 h (mostly leakage and
# a few night users), the morning peak at 7 h and a smaller evening one.
WATER_DEMAND = (0.34, 0.29, 0.26, 0.25, 0.26, 0.36, 0.70, 1.00, 0.92, 0.78, 0.70, 0.68,
                0.70, 0.66, 0.60, 0.58, 0.62, 0.72, 0.82, 0.85, 0.76, 0.62, 0.50, 0.40)
# Domestic hot water on top of space heating, by local hour (showers in the morning/evening).
HOT_WATER = (0.2, 0.1, 0.1, 0.1, 0.2, 0.6, 1.0, 1.0, 0.7, 0.5, 0.4, 0.4,
             0.5, 0.4, 0.3, 0.3, 0.4, 0.6, 0.9, 1.0, 0.8, 0.6, 0.4, 0.3)
WATER_KG_PER_M3_K = 1.163  # kWh of heat per m³ of water per kelvin


class Weather:
    """Outdoor temperature in Duisburg: the season (mean 10.5 °C, coldest mid-January, +/- 7.5
    K), a seeded day-to-day swing of +/- 4 K, and the day's cycle (coldest at 6 h, warmest at
    15 h, +/- 3.5 K). Drives the heating substations."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._days: dict[int, float] = {}

    def outdoor_c(self, clock: CityClock, ts_ms: int) -> float:
        day = ts_ms // 86_400_000
        swing = self._days.get(day)
        if swing is None:
            swing = self._days[day] = random.Random(f"cityflow:{self._seed}:weather:{day}").uniform(-4.0, 4.0)
        doy = (ts_ms / 86_400_000 + 0.5) % 365.2422
        season = 10.5 - 7.5 * math.cos(2 * math.pi * (doy - 15) / 365.2422)
        hour, _ = clock.local(ts_ms)
        if 6.0 <= hour < 15.0:  # warming from the 6 h minimum to the 15 h maximum
            daily = -3.5 * math.cos(math.pi * (hour - 6.0) / 9.0)
        else:  # cooling through the evening and night
            daily = 3.5 * math.cos(math.pi * ((hour - 15.0) % 24) / 15.0)
        return season + swing + daily


class SupplyAsset:
    """A metered asset of the utility, one of three types (by index: every district gets a
    feeder, a water point and a heating substation before the rest follow the mix):

    - feeder: the 0.4 kV side of a secondary substation; load follows FEEDER_LOAD (lower at
      weekends), voltage sags with load around 230 V, frequency jitters around 50 Hz;
    - water: a district meter area's inflow point; flow follows WATER_DEMAND with its minimum
      at night, pressure loses head with the square of flow;
    - heat: a district-heating house substation; heat follows the heating degrees of the
      outdoor temperature (Weather) plus hot water, the supply temperature slides from 75 °C
      (mild) to 110 °C (-10 °C outside), the return stays at 35-48 °C, flow = heat / (1.163 x dT).
    """

    MIX = (("feeder", 0.5), ("water", 0.2), ("heat", 0.3))

    def __init__(self, rng: random.Random, index: int, weather: Weather) -> None:
        n_districts = len(DISTRICTS)
        if index < 3 * n_districts:
            self.type = ("feeder", "water", "heat")[index // n_districts]
            self.district = DISTRICTS[index % n_districts]
        else:
            self.type = rng.choices([t for t, _ in self.MIX], weights=[w for _, w in self.MIX])[0]
            self.district = _district(rng, index)
        self.id = f"{self.type}-{index + 1:04d}"
        self.weather = weather
        self.peak_kw = rng.uniform(150.0, 450.0)
        self.peak_m3h = rng.uniform(40.0, 220.0)
        self.base_bar = rng.uniform(4.0, 5.5)
        self.design_kw = rng.uniform(80.0, 600.0)
        self.night_factor: dict[int, float] = {}
        self._rng_seed = rng.random()

    def _night(self, ts_ms: int) -> float:
        """A per-day factor of the water demand (+/- 5 %): nights differ a little."""
        day = ts_ms // 86_400_000
        f = self.night_factor.get(day)
        if f is None:
            f = self.night_factor[day] = random.Random(f"{self._rng_seed}:{day}").uniform(0.95, 1.05)
        return f

    def read(self, rng: random.Random, clock: CityClock, ts_ms: int, iso: str) -> dict[str, Any]:
        hour, weekday = clock.local(ts_ms)
        record: dict[str, Any] = {"asset_id": self.id, "ts": iso, "district": self.district,
                                  "asset_type": self.type, "load_kw": None, "voltage_v": None,
                                  "frequency_hz": None, "water_flow_m3h": None, "pressure_bar": None,
                                  "supply_temp_c": None, "return_temp_c": None, "heat_flow_m3h": None,
                                  "heat_kw": None}
        if self.type == "feeder":
            share = _profile(FEEDER_LOAD, hour) * (0.9 if weekday >= 5 else 1.0)
            load = max(5.0, self.peak_kw * share * rng.gauss(1.0, 0.04))
            record.update(load_kw=round(load, 1),
                          voltage_v=round(236.0 - 8.0 * load / self.peak_kw + rng.gauss(0, 0.8), 1),
                          frequency_hz=round(min(50.2, max(49.8, rng.gauss(50.0, 0.02))), 3))
        elif self.type == "water":
            share = _profile(WATER_DEMAND, hour) * self._night(ts_ms)
            flow = max(0.5, self.peak_m3h * share * rng.gauss(1.0, 0.02))
            pressure = self.base_bar - 0.8 * (flow / self.peak_m3h) ** 2 + rng.gauss(0, 0.04)
            record.update(water_flow_m3h=round(flow, 2), pressure_bar=round(max(0.0, pressure), 2))
        else:
            outdoor = self.weather.outdoor_c(clock, ts_ms)
            degrees = max(0.0, 18.0 - outdoor)
            heat = self.design_kw * (degrees / 28.0 + 0.12 * _profile(HOT_WATER, hour)) * rng.gauss(1.0, 0.03)
            heat = max(2.0, heat)
            supply = 75.0 + 35.0 * min(1.0, max(0.0, (15.0 - outdoor) / 25.0)) + rng.gauss(0, 0.5)
            ret = 35.0 + 0.3 * (supply - 75.0) + rng.gauss(0, 0.8)
            flow = heat / (WATER_KG_PER_M3_K * (supply - ret))
            record.update(supply_temp_c=round(supply, 1), return_temp_c=round(ret, 1),
                          heat_flow_m3h=round(min(500.0, flow), 3), heat_kw=round(heat, 1))
        return record


Device = TrafficDetector | StreetLamp | WifiAccessPoint | Truck | SupplyAsset


def _build_fleet(
    source: str, rng: random.Random, n: int, interval_s: float, start_s: float
) -> list[Device]:
    if source == "traffic":
        return [TrafficDetector(rng, i) for i in range(n)]
    if source == "lighting":
        return [StreetLamp(rng, i) for i in range(n)]
    if source == "logistics":
        return [Truck(rng, i, start_s) for i in range(n)]
    if source == "supply":
        weather = Weather(int(rng.random() * 2**31))
        return [SupplyAsset(rng, i, weather) for i in range(n)]
    fleet: list[Device] = []
    for site, count in _site_counts(n).items():
        for number in range(1, count + 1):
            fleet.append(WifiAccessPoint(rng, site, number, len(fleet), interval_s))
    return fleet


# --------------------------------------------------------------------------------------------
# Out-of-order delivery


@dataclass(frozen=True)
class Disorder:
    """How to deliver events out of event-time order, like devices buffering in a tunnel.

    jitter_s: every event is delayed by U(0, jitter_s) (keep it below the allowed lateness so
    these stay on time); a `correction_fraction` of events is held back long enough that its
    window is already final but still inside the grace period (-> a correction, version + 1); a
    `late_fraction` is held back past window end + grace (-> late_events).
    """

    jitter_s: float = 0.0
    correction_fraction: float = 0.0
    late_fraction: float = 0.0
    seed: int = 0


@dataclass
class DisorderLog:
    """What `deliver_out_of_order` did: the (source, key, ts_ms) of every held-back event."""

    corrections: list[tuple[str, str, int]] = field(default_factory=list)
    late: list[tuple[str, str, int]] = field(default_factory=list)
    dropped: list[tuple[str, str, int]] = field(default_factory=list)

    def count(self, kind: str, source: str) -> int:
        return sum(1 for s, _, _ in getattr(self, kind) if s == source)


def hold_back_s(geometry: WindowGeometry, kind: str) -> float:
    """Delay (city seconds) that makes an event a correction or a late event for sure: a
    correction needs the watermark past its window end but not past end + grace; late needs it
    past end + grace (plus a margin for the partition's watermark lagging the newest event)."""
    size, lateness, grace = geometry.size_s, geometry.allowed_lateness_s, geometry.grace_s
    if kind == "late":
        return size + lateness + grace + max(60.0, 0.2 * grace)
    if grace < 2 * 30:
        raise ValueError(f"grace {grace}s too short to inject corrections reliably")
    return lateness + size + (grace - size) / 2


def deliver_out_of_order(
    events: Iterable[SimEvent], disorder: Disorder, log_to: DisorderLog | None = None,
    settings: Settings | None = None,
) -> Iterator[SimEvent]:
    """Re-order an event-time-ordered stream into delivery order (pure, seeded).

    Hold-backs follow the window geometry the workers use: the defaults overridden by
    CITYFLOW_WINDOW_<SOURCE> in `settings` (contracts.windows.window_geometry), so with
    a longer grace a correction is still a correction and a late event still late.

    A held-back event whose hold-back has not elapsed when the stream ends would be neither
    surely late nor surely a correction: it is dropped (the device never came back online) and
    recorded in `log_to.dropped` instead.
    """
    rng = random.Random(f"cityflow:disorder:{disorder.seed}")
    log_to = log_to if log_to is not None else DisorderLog()
    heap: list[tuple[int, int, str, SimEvent]] = []  # (delivery ms, seq, kind, event)
    stream_end = 0
    hold_backs: dict[str, dict[str, float]] = {}  # source -> kind -> seconds
    for seq, event in enumerate(events):
        hold = hold_backs.get(event.source)
        if hold is None:
            geometry = window_geometry(event.source, settings)
            late_s = hold_back_s(geometry, "late")
            corr_s = hold_back_s(geometry, "correction") if disorder.correction_fraction else 0.0
            hold = hold_backs[event.source] = {"late": late_s, "corrections": corr_s}
        u = rng.random()
        delay_s, kind = rng.uniform(0, disorder.jitter_s), ""
        if u < disorder.late_fraction:
            delay_s, kind = hold["late"], "late"
        elif u < disorder.late_fraction + disorder.correction_fraction:
            delay_s, kind = hold["corrections"], "corrections"
        heapq.heappush(heap, (event.ts_ms + int(delay_s * 1000), seq, kind, event))
        stream_end = max(stream_end, event.ts_ms)
        while heap and heap[0][0] <= event.ts_ms:
            _, _, kind, ready = heapq.heappop(heap)
            if kind:
                getattr(log_to, kind).append((ready.source, ready.key, ready.ts_ms))
            yield ready
    while heap:
        due, _, kind, event = heapq.heappop(heap)
        if kind and due > stream_end:
            log_to.dropped.append((event.source, event.key, event.ts_ms))
            continue
        if kind:
            getattr(log_to, kind).append((event.source, event.key, event.ts_ms))
        yield event


# --------------------------------------------------------------------------------------------
# Generation


def generate(
    seed: int,
    rate: float,
    seconds: float,
    speedup: float = 1.0,
    start: datetime | None = None,
    sources: Sequence[str] = SOURCES,
    incidents: IncidentPlan | None = None,
    labels_out: list[IncidentLabel] | None = None,
) -> Iterator[SimEvent]:
    """Yield about rate*seconds readings covering seconds*speedup seconds of city time from
    `start` (default: now minus that span, so nothing lies in the future), in event-time order.

    Deterministic: the same arguments (and `start`) give the same events. Each source has its
    own random stream, so adding or removing a source leaves the others' events unchanged.

    With `incidents`, the run is generated in memory first and the labelled incidents are
    injected (streams.incidents.inject, seeded by `seed`); their labels are appended to
    `labels_out` before the first event is yielded.
    """
    if incidents is not None and incidents.kinds:
        from streams.incidents import inject

        events, labels = inject(
            _generate(seed, rate, seconds, speedup, start, sources),
            incidents.kinds, seed, incidents.rate_per_day, incidents.warmup_s,
        )
        if labels_out is not None:
            labels_out.extend(labels)
        yield from events
        return
    yield from _generate(seed, rate, seconds, speedup, start, sources)


def _generate(
    seed: int,
    rate: float,
    seconds: float,
    speedup: float,
    start: datetime | None,
    sources: Sequence[str],
) -> Iterator[SimEvent]:
    plans = plan_fleets(rate, seconds, speedup, sources)
    span_ms = int(seconds * speedup * 1000)
    if start is None:
        start = datetime.now(UTC) - timedelta(milliseconds=span_ms)
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC), got a naive datetime")
    start_ms = int(start.timestamp() * 1000)
    clock = CityClock(seed)

    rngs: list[random.Random] = []
    fleets: list[list[Device]] = []
    counts: list[list[int]] = []
    phases: list[list[float]] = []
    heap: list[tuple[int, int, int, int]] = []  # (ts_ms, source index, device index, k)
    for si, plan in enumerate(plans):
        rng = random.Random(f"cityflow:{seed}:{plan.source}")
        interval_s = seconds * speedup * plan.devices / plan.events
        fleet = _build_fleet(plan.source, rng, plan.devices, interval_s, start_ms / 1000)
        per, extra = divmod(plan.events, plan.devices)
        n_events = [per + (1 if d < extra else 0) for d in range(plan.devices)]
        phase = [rng.uniform(0.1, 0.9) for _ in range(plan.devices)]
        rngs.append(rng)
        fleets.append(fleet)
        counts.append(n_events)
        phases.append(phase)
        for d in range(plan.devices):
            heap.append((_report_ms(start_ms, span_ms, n_events[d], 0, phase[d], rng), si, d, 0))
    heapq.heapify(heap)

    names = [p.source for p in plans]
    last_sec, last_iso_sec = -1, ""
    while heap:
        ts_ms, si, d, k = heap[0]
        rng = rngs[si]
        sec = ts_ms // 1000
        if sec != last_sec:
            last_sec = sec
            last_iso_sec = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        iso = f"{last_iso_sec}.{ts_ms % 1000:03d}Z"
        device = fleets[si][d]
        record = device.read(rng, clock, ts_ms, iso)
        yield SimEvent(names[si], device.id, ts_ms, record)
        k += 1
        if k < counts[si][d]:
            heapq.heapreplace(
                heap,
                (_report_ms(start_ms, span_ms, counts[si][d], k, phases[si][d], rng), si, d, k),
            )
        else:
            heapq.heappop(heap)


def _report_ms(
    start_ms: int, span_ms: int, n: int, k: int, phase: float, rng: random.Random
) -> int:
    """Event time of a device's k-th of n reports: a steady cadence with a little jitter, every
    report inside its own slot of the span, so a device's reports are in order and in range."""
    slot = span_ms / n
    return start_ms + int((k + phase + rng.uniform(-0.08, 0.08)) * slot)


# --------------------------------------------------------------------------------------------
# Producing to Kafka


class ProduceError(RuntimeError):
    """Kafka did not accept some of the simulated records."""


def encode(event: SimEvent) -> tuple[bytes, bytes]:
    """The Kafka key (device id) and value (the record as JSON) of an event."""
    return event.key.encode(), orjson.dumps(event.record)


def topic_for(source: str, topics: Mapping[str, str] | None = None) -> str:
    if topics and source in topics:
        return topics[source]
    return CONTRACTS[source].topic


PRODUCER_DEFAULTS: dict[str, Any] = {
    "compression_type": "lz4",
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "acks": "all",
    "client_id": "cityflow-simulator",
    "bootstrap_timeout_ms": 10_000,
}


def _producer(producer_config: Mapping[str, Any]) -> Any:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    config = {**PRODUCER_DEFAULTS, **producer_config}
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        servers = config.get("bootstrap_servers")
        raise BrokerUnreachable(
            f"cannot reach Kafka at {servers}: {exc!r}; start one with `cityflow broker` and set "
            "CITYFLOW_KAFKA_BOOTSTRAP, or pass --bootstrap HOST:PORT"
        ) from None


class _Sender:
    """Sends events to their topics, counts them per source and remembers the first failure."""

    def __init__(self, producer: Any, sources: Iterable[str], topics: Mapping[str, str] | None):
        self.producer = producer
        self.counts = {s: 0 for s in sources}
        self.topics = {s: topic_for(s, topics) for s in SOURCES}
        self.failures = 0
        self.first_error: BaseException | None = None

    def _on_error(self, exc: BaseException) -> None:
        self.failures += 1
        if self.first_error is None:
            self.first_error = exc

    def send(self, event: SimEvent) -> None:
        key, value = event.key.encode(), orjson.dumps(event.record)
        future = self.producer.send(self.topics[event.source], key=key, value=value)
        future.add_errback(self._on_error)
        self.counts[event.source] = self.counts.get(event.source, 0) + 1

    def finish(self, timeout: float | None = 60) -> dict[str, int]:
        self.producer.flush(timeout)
        if self.failures:
            raise ProduceError(
                f"{self.failures} of {sum(self.counts.values())} records were not accepted by "
                f"Kafka; first error: {self.first_error!r}"
            )
        return {s: self.counts[s] for s in SOURCES if s in self.counts}


def produce(
    events: Iterable[SimEvent],
    producer_config: Mapping[str, Any],
    progress: ProgressFn | None = None,
    topics: Mapping[str, str] | None = None,
    progress_every: int = 50_000,
) -> dict[str, int]:
    """Send events as fast as kafka-python allows (lz4, 512 KiB batches, acks=all), keyed by
    device id, to each source's topic (`topics` maps source -> topic to override); flush and
    return the number sent per source. `progress` gets the running counts now and then."""
    producer = _producer(producer_config)
    try:
        sender = _Sender(producer, (), topics)
        n = 0
        for event in events:
            sender.send(event)
            n += 1
            if progress is not None and n % progress_every == 0:
                progress(dict(sender.counts))
        counts = sender.finish()
        if progress is not None:
            progress(dict(counts))
        log.info("produced events=%d counts=%s", n, counts)
        return counts
    finally:
        producer.close()


def produce_fast(
    seed: int,
    rate: float,
    seconds: float,
    speedup: float = 1.0,
    producer_config: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    start: datetime | None = None,
    sources: Sequence[str] = SOURCES,
    topics: Mapping[str, str] | None = None,
    disorder: Disorder | None = None,
    disorder_log: DisorderLog | None = None,
    settings: Settings | None = None,
    incidents: IncidentPlan | None = None,
    labels_out: list[IncidentLabel] | None = None,
) -> dict[str, int]:
    """Generate rate*seconds events and send them as fast as possible (preloading topics),
    optionally out of order (`disorder`, held back by the window geometry of `settings`; what
    was held back is recorded in `disorder_log`) and with labelled `incidents` (labels
    appended to `labels_out`, see `generate`)."""
    if producer_config is None:
        raise ValueError("producer_config is required (at least bootstrap_servers)")
    events: Iterable[SimEvent] = generate(
        seed, rate, seconds, speedup, start, sources, incidents, labels_out
    )
    if disorder is not None:
        events = deliver_out_of_order(events, disorder, disorder_log, settings)
    return produce(events, producer_config, progress, topics)


def produce_paced(
    seed: int,
    rate: float,
    seconds: float,
    speedup: float = 1.0,
    producer_config: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    start: datetime | None = None,
    sources: Sequence[str] = SOURCES,
    topics: Mapping[str, str] | None = None,
    slice_s: float = 0.1,
    disorder: Disorder | None = None,
    disorder_log: DisorderLog | None = None,
    settings: Settings | None = None,
    incidents: IncidentPlan | None = None,
    labels_out: list[IncidentLabel] | None = None,
) -> dict[str, int]:
    """Send events at `rate` per wall-clock second, in slices of `slice_s`: city time advances
    `speedup` times faster than the wall clock. Out of order and with incidents as in
    `produce_fast`.

    By default city time starts at now - seconds*(speedup-1), so the last event's time is the
    wall clock at the end of the run (live data at speedup 1) and no event is in the future.
    """
    if producer_config is None:
        raise ValueError("producer_config is required (at least bootstrap_servers)")
    if start is None:
        start = datetime.now(UTC) - timedelta(seconds=seconds * (speedup - 1))
    start_ms = int(start.timestamp() * 1000)
    events: Iterator[SimEvent] = generate(
        seed, rate, seconds, speedup, start, sources, incidents, labels_out
    )
    if disorder is not None:  # delayed events come up later and are sent as soon as they do
        events = deliver_out_of_order(events, disorder, disorder_log, settings)
    producer = _producer(producer_config)
    try:
        sender = _Sender(producer, (), topics)
        t0 = time.monotonic()
        next_progress = t0 + 1.0
        pending: SimEvent | None = next(events, None)
        slice_no = 0
        while pending is not None:
            slice_no += 1
            cutoff_ms = start_ms + slice_no * slice_s * speedup * 1000
            while pending is not None and pending.ts_ms < cutoff_ms:
                sender.send(pending)
                pending = next(events, None)
            now = time.monotonic()
            if progress is not None and now >= next_progress:
                progress(dict(sender.counts))
                next_progress = now + 1.0
            delay = t0 + slice_no * slice_s - now
            if delay > 0:
                time.sleep(delay)  # pacing to the requested rate, not synchronisation
        counts = sender.finish()
        if progress is not None:
            progress(dict(counts))
        log.info(
            "produced paced events=%d wall_s=%.1f counts=%s",
            sum(counts.values()),
            time.monotonic() - t0,
            counts,
        )
        return counts
    finally:
        producer.close()
