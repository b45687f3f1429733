"""The schema of every landed lake table, declared once: raw, windows, district partials and
late events per source, quarantine and anomalies. The window engine and the sink land these
columns, the warehouse types its empty-lake fallbacks with them, `contracts docs` documents
them and `cityflow validate` checks them.

    >>> window_table("traffic").schema.names[:4]
    ['source', 'entity', 'district', 'window_start']
    >>> lake_table("anomalies", "*").key
    ('anomaly_id',)

Arrow fields of the derived tables (windows, district partials, anomalies) are nullable in
the files, as they always were, so files landed before and after stay mergeable; `nullable`
on a Column is the rule the docs state and the expectations check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from contracts import lake as L
from contracts.aggregates import AGGREGATES, Aggregate
from contracts.quarantine import QUARANTINE_COLUMNS
from contracts.registry import contract_for_source

TS = pa.timestamp("ms", tz="UTC")
_TYPE_NAMES = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64", pa.float64(): "float64",
               pa.bool_(): "bool", pa.binary(): "binary", TS: "timestamp[ms, UTC]"}


@dataclass(frozen=True)
class Column:
    """One landed column: Arrow type, meaning, unit, and whether it may be null."""

    name: str
    type: pa.DataType
    description: str
    nullable: bool = True
    unit: str | None = None

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, str(self.type))


@dataclass(frozen=True)
class LakeTable:
    """One lake table of one source ('*': every source): its grain, key and columns."""

    name: str
    source: str
    grain: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    strict_nulls: bool = False  # Arrow fields non-nullable where the column is (raw, late)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable or not self.strict_nulls)
                          for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"lake table {self.name} ({self.source}) has no column {name!r}")

    def conform(self, table: pa.Table) -> pa.Table:
        """`table` with exactly this table's columns, in order and type (extra columns dropped)."""
        return table.select(self.names).cast(self.schema)


# -- raw and late events -------------------------------------------------------------------------
KAFKA_COLUMNS = (
    Column("kafka_partition", pa.int32(), "Kafka partition the record was read from", nullable=False),
    Column("kafka_offset", pa.int64(), "Kafka offset; (kafka_partition, kafka_offset) is unique", nullable=False),
)


def raw_table(source: str) -> LakeTable:
    """`raw/source=<source>`: the contract's fields, then where the record was read from."""
    contract = contract_for_source(source)
    fields = tuple(Column(f.name, f.arrow_type, f.description, f.nullable, f.unit) for f in contract.fields)
    return LakeTable(L.RAW, source, "one accepted Kafka record", ("kafka_partition", "kafka_offset"),
                     fields + KAFKA_COLUMNS, strict_nulls=True)


def late_events_table(source: str) -> LakeTable:
    """`late_events/source=<source>`: a raw row per (event, window) pair that came after the
    window's grace; counted, never windowed."""
    raw = raw_table(source)
    return LakeTable(L.LATE_EVENTS, source, "one (event, window) pair that arrived after the window's grace",
                     ("kafka_partition", "kafka_offset", "window_start"), raw.columns + (
                         Column("window_start", TS, "Start of the window the event missed", nullable=False),
                         Column("lateness_s", pa.float64(), "How far the event time was behind the partition's "
                                "max event time when it arrived", nullable=False, unit="s"),
                     ), strict_nulls=True)


# -- windows and district partials ---------------------------------------------------------------
def _geometry_columns() -> tuple[Column, ...]:
    return (
        Column("window_start", TS, "Window start (inclusive), UTC", nullable=False),
        Column("window_end", TS, "Window end (exclusive) = window_start + window_size_s", nullable=False),
        Column("window_size_s", pa.int32(), "Window length", nullable=False, unit="s"),
        Column("hop_s", pa.int32(), "Hop between window starts (= window_size_s when tumbling)", nullable=False,
               unit="s"),
    )


def _emission_columns() -> tuple[Column, ...]:
    return (
        Column("version", pa.int32(), "0 when the window became final, + 1 per correction; views keep the latest",
               nullable=False),
        Column("is_correction", pa.bool_(), "The row includes events that arrived after the window was final "
               "(within grace)", nullable=False),
        Column("kafka_partition", pa.int32(), "Partition whose events the row aggregates", nullable=False),
        Column("emitted_at", TS, "When the worker landed the row (wall clock, UTC)", nullable=False),
    )


def input_type(source: str, agg: Aggregate) -> pa.DataType | None:
    """Arrow type of the aggregate's input field (None for count)."""
    return contract_for_source(source).field(agg.field).arrow_type if agg.field else None


def aggregate_column(source: str, agg: Aggregate) -> Column:
    """The window column of an aggregate, typed and documented by its function."""
    fn = agg.function
    return Column(agg.name, fn.arrow_type(input_type(source, agg)), agg.description, fn.nullable, agg.unit)


def window_metadata_columns(entity: str = "entity") -> tuple[Column, ...]:
    """The columns every `windows` row carries before its aggregates."""
    return (
        Column("source", pa.string(), "Source family", nullable=False),
        Column("entity", pa.string(), f"The {entity} (the contract's Kafka key)", nullable=False),
        Column("district", pa.string(), f"District of the {entity}'s latest event in the window (null if none)"),
        *_geometry_columns(),
        *_emission_columns(),
    )


def district_metadata_columns() -> tuple[Column, ...]:
    """The columns every `district_windows` row carries before its partials."""
    return (
        Column("source", pa.string(), "Source family", nullable=False),
        Column("district", pa.string(), "District", nullable=False),
        *_geometry_columns(),
        *_emission_columns(),
        Column("n_entities", pa.int64(), "Distinct entities of this partition in the district and window",
               nullable=False),
    )


def window_table(source: str) -> LakeTable:
    """`windows/source=<source>`: one row per entity, window and version, then the aggregates."""
    entity = contract_for_source(source).entity
    return LakeTable(L.WINDOWS, source, f"one {entity}, window and version",
                     ("source", "entity", "window_start", "window_size_s", "version", "kafka_partition"),
                     window_metadata_columns(entity) + tuple(aggregate_column(source, a) for a in AGGREGATES[source]))


def partial_columns(source: str) -> tuple[Column, ...]:
    """The district partial columns of a source's mergeable aggregates."""
    partials = []
    for a in AGGREGATES[source]:
        for name, typ in a.function.partial_columns(a, input_type(source, a)):
            what = a.name if name == a.name else f"{a.name} partial ({name.removeprefix(a.name + '_')})"
            partials.append(Column(name, typ, f"{what}: {a.function.doc}",
                                   nullable=a.function.nullable and name != f"{a.name}_n",
                                   unit=a.unit if name == a.name else None))
    return tuple(partials)


def district_window_table(source: str) -> LakeTable:
    """`district_windows/source=<source>`: per partition, district, window and version the
    mergeable partials of every mergeable aggregate; the warehouse's district views merge them."""
    return LakeTable(L.DISTRICT_WINDOWS, source, "one partition's district, window and version",
                     ("source", "district", "window_start", "window_size_s", "kafka_partition", "version"),
                     district_metadata_columns() + partial_columns(source))


# -- quarantine and anomalies ---------------------------------------------------------------------
QUARANTINE = LakeTable(
    L.QUARANTINE, "*", "one rejected Kafka record", ("source_topic", "kafka_partition", "kafka_offset"),
    tuple(Column(n, t, d, nullable=n in ("field", "detail", "value", "key")) for n, t, d in QUARANTINE_COLUMNS))

SEVERITIES = ("info", "warning", "critical")
ANOMALIES = LakeTable(
    L.ANOMALIES, "*", "one detected anomaly", ("anomaly_id",),
    (
        Column("anomaly_id", pa.string(), "Deterministic id: the first 32 hex digits of SHA-256 of kind, entity and "
               "window_start (streams.detectors.anomaly_id), so a replay re-derives the same id and never doubles "
               "an alert", nullable=False),
        Column("source", pa.string(), "Source family of the evidence ('cross' for cross-source kinds)",
               nullable=False),
        Column("kind", pa.string(), "Detector kind '<source>.<rule>', e.g. traffic.congestion, "
               "lighting.on_in_daylight, logistics.cold_chain", nullable=False),
        Column("severity", pa.string(), "One of " + ", ".join(SEVERITIES), nullable=False),
        Column("entity", pa.string(), "Entity the anomaly is about; for district kinds (lighting.fault_cluster, "
               "cross.congestion_corroborated) the district"),
        Column("district", pa.string(), "District (null when the entity has none)"),
        Column("window_start", TS, "Start of the evidence: the window, run of windows or silence that raised it "
               "(for raw-row kinds the previous fix)", nullable=False),
        Column("window_end", TS, "End of the evidence (exclusive): the event time from which the rule could fire",
               nullable=False),
        Column("detected_at", TS, "Partition watermark (event time) after the batch that raised it, at least "
               "window_end; it depends on how records were batched, so a replay after a crash may give a later "
               "value than the first run would have. District kinds: the event time up to which every partition "
               "had landed when the district stage ran", nullable=False),
        Column("value", pa.float64(), "Observed value the rule fired on (per kind: speed, temperature, lux, "
               "minutes; null if the rule has none)"),
        Column("expected", pa.float64(), "Baseline or threshold the value was compared with (null if none)"),
        Column("score", pa.float64(), "Strength of the deviation (rule-specific, e.g. robust z-score, minutes)"),
        Column("evidence", pa.string(), "Human-readable: what was expected and what was seen"),
        Column("kafka_partition", pa.int32(), "Partition whose windows (or raw rows) raised it; -1 for district kinds "
               "(the district stage reads every partition)", nullable=False),
        Column("version", pa.int32(), "Version of the window the evidence ends with (0 for silences and raw-row "
               "kinds)", nullable=False),
        Column("emitted_at", TS, "When the worker landed the row (wall clock, UTC)", nullable=False),
    ),
)

_PER_SOURCE = {
    L.RAW: raw_table,
    L.WINDOWS: window_table,
    L.DISTRICT_WINDOWS: district_window_table,
    L.LATE_EVENTS: late_events_table,
}


def lake_table(table: str, source: str) -> LakeTable:
    """The declaration of one lake table for one source ('*' for the cross-source tables)."""
    if table == L.QUARANTINE:
        return QUARANTINE
    if table == L.ANOMALIES:
        return ANOMALIES
    if table not in _PER_SOURCE:
        raise KeyError(f"unknown lake table {table!r}; known: {', '.join(L.TABLES)}")
    if source == "*":
        raise KeyError(f"lake table {table!r} needs a concrete source, not 'source=*'")
    return _PER_SOURCE[table](source)
