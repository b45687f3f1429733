"""Windowed aggregates: the aggregate functions (one class each, in one registry) and the
aggregates each source's `windows` tables carry.

An aggregate function knows everything about itself: its full kernel (numpy over the dense
group codes of the windows a batch emits), its partial kernel for the per-partition district
partials together with the partial's columns and their SQL merge, its Arrow type and its doc
text. Adding one (say `p50`) is one class here:

    >>> @register
    ... class P50(Quantile):
    ...     name, q = "p50", 0.50
    ...     doc = "median (linear interpolation)"
    >>> Aggregate("p50_speed_kmh", "p50", "avg_speed_kmh", "Median speed", "km/h")

Null stays null: a function whose input has no valid value in a group reports an Arrow null
there, never NaN (NaN sorts above every number in DuckDB). The independent oracles
(warehouse/verify.py, tests/support/oracle.py) recompute from the raw lake on purpose without these
kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# What a kernel returns per group: a numpy array (no nulls) or an Arrow array with nulls.
GroupColumn: TypeAlias = np.ndarray | pa.Array


@dataclass(frozen=True)
class Aggregate:
    """One output column of a window: function `fn` over input `field` (`value` for count_eq)."""

    name: str
    fn: str
    field: str | None
    description: str
    unit: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        function = AGGREGATE_FUNCTIONS.get(self.fn)
        if function is None:
            raise ValueError(f"aggregate {self.name!r}: unknown function {self.fn!r}; "
                             f"known: {', '.join(AGGREGATE_FUNCTIONS)}")
        if function.needs_field and self.field is None:
            raise ValueError(f"aggregate {self.name!r}: {self.fn} needs an input field")

    @property
    def function(self) -> AggregateFunction:
        return AGGREGATE_FUNCTIONS[self.fn]

    @property
    def input_key(self) -> str | None:
        """The per-event column its kernels read ('f:<field>' values, 'h:<name>' hits)."""
        return self.function.input_key(self)


@dataclass
class Groups:
    """The rows of the windows a batch emits, grouped: dense group codes 0..g-1 (every group
    has rows), per-row input columns (`f:<field>` numeric values, float64 with NaN for null or
    int64; `h:<name>` count_eq hits; `ent` entity codes) and the window size. Shared
    intermediate results are computed once per batch."""

    codes: np.ndarray
    g: int
    rows: Mapping[str, np.ndarray]
    size_s: int
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def values(self, agg: Aggregate) -> np.ndarray:
        """The input values as float64 (NaN = null)."""
        return self.rows[f"f:{agg.field}"].astype(np.float64, copy=False)

    def valid_count_sum(self, agg: Aggregate) -> tuple[np.ndarray, np.ndarray]:
        """Per group: how many input values are valid, and their sum (0 without any)."""
        key = ("n_sum", agg.field)
        if key not in self._cache:
            v = self.values(agg)
            valid = ~np.isnan(v)
            self._cache[key] = (np.bincount(self.codes, weights=valid, minlength=self.g),
                                np.bincount(self.codes, weights=np.where(valid, v, 0.0), minlength=self.g))
        return self._cache[key]

    def sorted_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """Row order sorted by group (stable) and each group's first position in it."""
        if "sorted" not in self._cache:
            order = np.argsort(self.codes, kind="stable")
            sc = self.codes[order]
            self._cache["sorted"] = order, np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
        return self._cache["sorted"]

    def entity_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(group, entity) pairs: the pair of every row, and the group of every pair."""
        if "pairs" not in self._cache:
            ent = self.rows["ent"]
            span = int(ent.max()) + 2 if len(ent) else 1
            pairs, pair_of_row = np.unique(self.codes * span + (ent + 1), return_inverse=True)
            self._cache["pairs"] = pair_of_row.reshape(-1), pairs // span
        return self._cache["pairs"]


def null_where_empty(values: np.ndarray, n_valid: np.ndarray) -> GroupColumn:
    """`values` with a null for every group that had no valid input (no NaN ever leaves)."""
    empty = n_valid == 0
    if not empty.any():
        return values
    return pa.array(np.where(empty, 0.0, values), type=pa.float64(), mask=empty)


def numeric_values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as numpy: int64 when integer without nulls, else float64 with NaN."""
    if pa.types.is_integer(col.type) and col.null_count == 0:
        return col.cast(pa.int64()).to_numpy()
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class AggregateFunction:
    """One aggregate function: how to compute it fully per window and partially per district
    and partition, how those partials merge in SQL, its type and its doc text.

    The defaults fit a function whose district partial is itself (count, sum, max, min): the
    partial is the full kernel over the district's rows and merges with `merge`.
    """

    name: ClassVar[str]
    doc: ClassVar[str]
    needs_field: ClassVar[bool] = True
    nullable: ClassVar[bool] = True  # null for a group without valid input
    merge: ClassVar[str | None] = None  # SQL function that merges the partials, e.g. "sum"
    type_doc: ClassVar[str] = "float64"
    within_input_range: ClassVar[bool] = False  # its value lies within its input's range (mean, max, ...)

    @property
    def partial_doc(self) -> str:
        """How the district partial travels and merges (docs)."""
        return f"the column itself, merged by {self.merge}()" if self.merge else "not mergeable (none)"

    def input_key(self, agg: Aggregate) -> str | None:
        return f"f:{agg.field}"

    def event_values(self, agg: Aggregate, events: pa.Table) -> np.ndarray:
        """The per-event input column of `input_key` from a batch of events."""
        return numeric_values(events.column(agg.field))

    def arrow_type(self, input_type: pa.DataType | None) -> pa.DataType:
        return pa.float64()

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        raise NotImplementedError

    def partial_columns(self, agg: Aggregate, input_type: pa.DataType | None) -> tuple[tuple[str, pa.DataType], ...]:
        """The columns of the district partial (none: not mergeable)."""
        return ((agg.name, self.arrow_type(input_type)),) if self.merge else ()

    def partial(self, agg: Aggregate, groups: Groups) -> dict[str, GroupColumn]:
        return {agg.name: self.full(agg, groups)} if self.merge else {}

    def merge_sql(self, agg: Aggregate, input_type: pa.DataType | None) -> list[str]:
        """SELECT expressions combining the partials of all partitions (district views)."""
        if not self.merge:
            return []
        expr = f"{self.merge}({_ident(agg.name)})"
        if pa.types.is_integer(self.arrow_type(input_type)):
            expr = f"CAST({expr} AS BIGINT)"
        return [f"{expr} AS {_ident(agg.name)}"]


AGGREGATE_FUNCTIONS: dict[str, AggregateFunction] = {}


def register(cls: type[AggregateFunction]) -> type[AggregateFunction]:
    """Class decorator: add an aggregate function to the registry under its `name`."""
    if cls.name in AGGREGATE_FUNCTIONS:
        raise ValueError(f"aggregate function {cls.name!r} is registered already")
    AGGREGATE_FUNCTIONS[cls.name] = cls()
    return cls


@register
class Count(AggregateFunction):
    name, doc, needs_field, merge, nullable = "count", "number of events", False, "sum", False
    type_doc = "int64"

    def input_key(self, agg: Aggregate) -> str | None:
        return None

    def arrow_type(self, input_type: pa.DataType | None) -> pa.DataType:
        return pa.int64()

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        return np.bincount(groups.codes, minlength=groups.g).astype(np.int64)


@register
class CountEq(Count):
    name, doc, needs_field = "count_eq", "number of events whose field equals the value", True

    def input_key(self, agg: Aggregate) -> str | None:
        return f"h:{agg.name}"

    def event_values(self, agg: Aggregate, events: pa.Table) -> np.ndarray:
        return pc.fill_null(pc.equal(events.column(agg.field), pa.scalar(agg.value)), False).to_numpy()

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        return np.bincount(groups.codes, weights=groups.rows[f"h:{agg.name}"], minlength=groups.g).astype(np.int64)


@register
class Sum(AggregateFunction):
    name, doc, merge = "sum", "sum of the valid values (null without any)", "sum"
    type_doc = "the input field's type"

    def arrow_type(self, input_type: pa.DataType | None) -> pa.DataType:
        return input_type if input_type is not None else pa.float64()

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        raw = groups.rows[f"f:{agg.field}"]
        n, s = groups.valid_count_sum(agg)
        if raw.dtype.kind in "iu":  # an integer column without nulls: exact integer sums
            return np.bincount(groups.codes, weights=raw, minlength=groups.g).astype(raw.dtype)
        return null_where_empty(s, n)


@register
class Mean(AggregateFunction):
    """Partials travel as `<name>_sum` and `<name>_n` and merge as sum(_sum) / sum(_n)."""

    name, doc, within_input_range = "mean", "mean of the valid values (null without any)", True
    partial_doc = "`<column>_sum` and `<column>_n`, merged as sum(_sum) / sum(_n)"  # type: ignore[assignment]

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        n, s = groups.valid_count_sum(agg)
        with np.errstate(invalid="ignore", divide="ignore"):
            return null_where_empty(s / np.where(n > 0, n, 1), n)

    def partial_columns(self, agg: Aggregate, input_type: pa.DataType | None) -> tuple[tuple[str, pa.DataType], ...]:
        return ((f"{agg.name}_sum", pa.float64()), (f"{agg.name}_n", pa.int64()))

    def partial(self, agg: Aggregate, groups: Groups) -> dict[str, GroupColumn]:
        n, s = groups.valid_count_sum(agg)
        return {f"{agg.name}_sum": null_where_empty(s, n), f"{agg.name}_n": n.astype(np.int64)}

    def merge_sql(self, agg: Aggregate, input_type: pa.DataType | None) -> list[str]:
        s, n = _ident(f"{agg.name}_sum"), _ident(f"{agg.name}_n")
        return [f"sum({s}) / nullif(sum({n}), 0) AS {_ident(agg.name)}", f"sum({s}) AS {s}",
                f"CAST(sum({n}) AS BIGINT) AS {n}"]


@register
class Max(AggregateFunction):
    name, doc, merge, within_input_range = "max", "largest valid value (null without any)", "max", True
    _reduce: ClassVar[np.ufunc] = np.fmax

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        order, starts = groups.sorted_groups()
        n, _ = groups.valid_count_sum(agg)
        return null_where_empty(self._reduce.reduceat(groups.values(agg)[order], starts), n)


@register
class Min(Max):
    name, doc, merge = "min", "smallest valid value (null without any)", "min"
    _reduce: ClassVar[np.ufunc] = np.fmin


class Quantile(AggregateFunction):
    """A quantile with linear interpolation over the valid values (pandas' quantile, DuckDB's
    quantile_cont). Not mergeable: percentiles across entities come from the raw lake."""

    q: ClassVar[float]
    within_input_range = True

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        n, _ = groups.valid_count_sum(agg)
        return null_where_empty(quantile_linear(groups.values(agg), groups.codes, n.astype(np.int64), groups.g, self.q), n)


@register
class P95(Quantile):
    name, q = "p95", 0.95
    doc = "95th percentile of the valid values, linear interpolation (null without any)"


@register
class EnergyWh(AggregateFunction):
    """Mean power x window length. District partials sum each entity's energy, so they merge
    by sum."""

    name, doc, merge = "energy_wh", "mean of the valid power values x window length in hours", "sum"

    def full(self, agg: Aggregate, groups: Groups) -> GroupColumn:
        n, s = groups.valid_count_sum(agg)
        with np.errstate(invalid="ignore", divide="ignore"):
            return null_where_empty(s / np.where(n > 0, n, 1) * (groups.size_s / 3600.0), n)

    def partial(self, agg: Aggregate, groups: Groups) -> dict[str, GroupColumn]:
        pair_of_row, pair_group = groups.entity_pairs()
        v = groups.values(agg)
        valid = ~np.isnan(v)
        n = np.bincount(pair_of_row, weights=valid, minlength=len(pair_group))
        s = np.bincount(pair_of_row, weights=np.where(valid, v, 0.0), minlength=len(pair_group))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_entity = np.where(n > 0, s / np.where(n > 0, n, 1), 0.0) * (groups.size_s / 3600.0)
        energy = np.bincount(pair_group, weights=per_entity, minlength=groups.g)
        entities_with_power = np.bincount(pair_group, weights=n > 0, minlength=groups.g)
        return {agg.name: null_where_empty(energy, entities_with_power)}


def quantile_linear(v: np.ndarray, codes: np.ndarray, n: np.ndarray, g: int, q: float) -> np.ndarray:
    """Per-group quantile with linear interpolation, NaN ignored (pandas' quantile); NaN for a
    group without valid values."""
    order = np.lexsort((v, codes))  # NaN sorts last within its group
    sv = v[order]
    first = np.searchsorted(codes[order], np.arange(g))
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a, b = sv[np.minimum(first + lo, len(sv) - 1)], sv[np.minimum(first + hi, len(sv) - 1)]
    out = a + (b - a) * (pos - lo)
    return np.where(n > 0, out, np.nan)


def aggregate_groups(groups: Groups, aggregates: tuple[Aggregate, ...]) -> dict[str, GroupColumn]:
    """Full aggregates per group (one entity's window)."""
    return {a.name: a.function.full(a, groups) for a in aggregates}


def partial_aggregate_groups(groups: Groups, aggregates: tuple[Aggregate, ...]) -> dict[str, GroupColumn]:
    """Mergeable partial aggregates per group (a district's window in one partition), with the
    number of distinct entities behind each."""
    _, pair_group = groups.entity_pairs()
    cols: dict[str, GroupColumn] = {"n_entities": np.bincount(pair_group, minlength=groups.g).astype(np.int64)}
    for a in aggregates:
        cols.update(a.function.partial(a, groups))
    return cols


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
        Aggregate("avg_travel_time_s", "mean", "travel_time_s", "Mean segment travel time", "s"),
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
    # One asset type per entity, so each window fills its type's columns and leaves the rest
    # null. Delivered quantities use energy_wh (mean rate x window hours, unit-agnostic): kW
    # gives kWh, m³/h gives m³; district partials sum them per entity.
    "supply": (
        Aggregate("n_events", "count", None, "Meter readings in the window"),
        Aggregate("avg_load_kw", "mean", "load_kw", "Mean feeder load", "kW"),
        Aggregate("max_load_kw", "max", "load_kw", "Peak feeder load (of the readings)", "kW"),
        Aggregate("energy_kwh", "energy_wh", "load_kw", "Electric energy delivered: mean load x window length", "kWh"),
        Aggregate("min_voltage_v", "min", "voltage_v", "Lowest phase voltage", "V"),
        Aggregate("max_voltage_v", "max", "voltage_v", "Highest phase voltage", "V"),
        Aggregate("avg_voltage_v", "mean", "voltage_v", "Mean phase voltage", "V"),
        Aggregate("avg_frequency_hz", "mean", "frequency_hz", "Mean grid frequency", "Hz"),
        Aggregate("avg_water_flow_m3h", "mean", "water_flow_m3h", "Mean water flow", "m³/h"),
        Aggregate("min_water_flow_m3h", "min", "water_flow_m3h", "Lowest water flow reading", "m³/h"),
        Aggregate("water_m3", "energy_wh", "water_flow_m3h", "Water delivered: mean flow x window length", "m³"),
        Aggregate("avg_pressure_bar", "mean", "pressure_bar", "Mean network pressure", "bar"),
        Aggregate("min_pressure_bar", "min", "pressure_bar", "Lowest network pressure", "bar"),
        Aggregate("avg_supply_temp_c", "mean", "supply_temp_c", "Mean heating supply temperature", "°C"),
        Aggregate("avg_return_temp_c", "mean", "return_temp_c", "Mean heating return temperature", "°C"),
        Aggregate("max_return_temp_c", "max", "return_temp_c", "Highest heating return temperature", "°C"),
        Aggregate("avg_heat_flow_m3h", "mean", "heat_flow_m3h", "Mean heating primary flow", "m³/h"),
        Aggregate("heat_kwh", "energy_wh", "heat_kw", "Heat delivered: mean heat power x window length", "kWh"),
    ),
}


