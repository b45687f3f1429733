"""Declarations of the windowed aggregates per source (the columns of the `windows` tables).

Each aggregate names its function and input field; the stream's window engine (pandas) and the
warehouse's verification (DuckDB SQL) both derive their computation from these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AggFn = Literal["count", "sum", "mean", "max", "min", "p95", "count_eq", "energy_wh"]


@dataclass(frozen=True)
class Aggregate:
    """One output column of a window: `fn` over input `field` (`value` for count_eq)."""

    name: str
    fn: AggFn
    field: str | None
    description: str
    unit: str | None = None
    value: str | None = None


def _status_counts(field: str, values: tuple[str, ...]) -> tuple[Aggregate, ...]:
    return tuple(
        Aggregate(f"{v}_count", "count_eq", field, f"Reports with {field} = '{v}'", value=v)
        for v in values
    )


AGGREGATES: dict[str, tuple[Aggregate, ...]] = {
    "traffic": (
        Aggregate("n_events", "count", None, "Readings in the window"),
        Aggregate("vehicle_count", "sum", "vehicle_count", "Vehicles counted", "vehicles"),
        Aggregate("avg_speed_kmh", "mean", "avg_speed_kmh", "Mean of reported speeds", "km/h"),
        Aggregate("max_speed_kmh", "max", "avg_speed_kmh", "Max of reported speeds", "km/h"),
        Aggregate("p95_speed_kmh", "p95", "avg_speed_kmh", "95th percentile of reported speeds (linear interpolation)", "km/h"),
        Aggregate("avg_occupancy_pct", "mean", "occupancy_pct", "Mean occupancy", "%"),
    ),
    "lighting": (
        Aggregate("n_events", "count", None, "Reports in the window"),
        *_status_counts("status", ("on", "off", "dimmed", "fault")),
        Aggregate("energy_wh", "energy_wh", "power_w", "Energy: mean power x window length", "Wh"),
        Aggregate("avg_dim_level_pct", "mean", "dim_level_pct", "Mean dimming level", "%"),
        Aggregate("avg_power_w", "mean", "power_w", "Mean power draw", "W"),
        Aggregate("min_ambient_lux", "min", "ambient_lux", "Darkest ambient reading", "lx"),
    ),
    "wifi": (
        Aggregate("n_events", "count", None, "Reports in the window"),
        Aggregate("avg_clients", "mean", "connected_clients", "Mean connected clients", "clients"),
        Aggregate("max_clients", "max", "connected_clients", "Max connected clients", "clients"),
        Aggregate("bytes_in", "sum", "bytes_in", "Bytes received", "bytes"),
        Aggregate("bytes_out", "sum", "bytes_out", "Bytes sent", "bytes"),
        Aggregate("auth_failures", "sum", "auth_failures", "Failed authentications"),
        Aggregate("p95_latency_ms", "p95", "latency_ms", "95th percentile latency (linear interpolation)", "ms"),
        *_status_counts("status", ("down",)),
    ),
    "logistics": (
        Aggregate("n_events", "count", None, "Position fixes in the window"),
        *_status_counts("status", ("moving", "idle", "loading", "unloading")),
        Aggregate("avg_speed_kmh", "mean", "speed_kmh", "Mean ground speed", "km/h"),
        Aggregate("max_cargo_temp_c", "max", "cargo_temp_c", "Max cargo temperature (null if no reefer data)", "°C"),
        Aggregate("avg_eta_minutes", "mean", "eta_minutes", "Mean ETA to next stop", "min"),
    ),
}

# Columns every window row carries besides the aggregates (the row key is the first five).
WINDOW_KEY_COLUMNS = ("source", "entity", "window_start", "window_size_s", "version")

