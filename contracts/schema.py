"""The building blocks of a contract: typed fields with units, ranges, enums and keys, and the
stable reason codes a record is rejected with."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

FieldType = Literal["string", "int", "float", "timestamp", "id"]

# Device ids become Kafka keys, file-name fragments in reports and SQL literals in tools, so
# they are deliberately narrow: letters, digits, '_', ':' and '-', no dots or slashes.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_:\-]{0,63}$"
# Event time is ISO-8601 in UTC with an explicit 'Z' (devices in local time are rejected).
TS_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "id": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
}


class Reason(str, enum.Enum):
    """Stable reason codes for rejected records (DLQ header `reason`)."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    NULL_FIELD = "null_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_ENUM = "bad_enum"
    BAD_ID = "bad_id"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    KEY_MISMATCH = "key_mismatch"
    DUPLICATE = "duplicate"

    @property
    def description(self) -> str:
        return REASON_DESCRIPTIONS[self]


REASON_DESCRIPTIONS: dict[Reason, str] = {
    Reason.EMPTY: "the message value is empty or null",
    Reason.TOO_LARGE: "the value is larger than the record size limit (64 KiB)",
    Reason.NOT_JSON: "the value is not valid UTF-8 JSON (truncated, binary, BOM, lone surrogate, ...)",
    Reason.NOT_OBJECT: "the JSON is an array, string, number or null instead of an object",
    Reason.UNKNOWN_FIELD: "the object has a field the contract does not declare",
    Reason.MISSING_FIELD: "a declared field is absent (fields added in a later version may be absent)",
    Reason.NULL_FIELD: "a non-nullable field is null",
    Reason.WRONG_TYPE: "a field has the wrong JSON type (e.g. a string for a number, a float or "
                       "bool for an integer, an integer beyond 64 bits)",
    Reason.NOT_FINITE: "a number is NaN or infinite (NaN/Infinity literals or overflowing numbers)",
    Reason.OUT_OF_RANGE: "a number is outside the field's range, or a string's length is",
    Reason.BAD_ENUM: "a value is not one of the field's allowed values",
    Reason.BAD_ID: "an id does not match " + ID_PATTERN + " (no dots, slashes, spaces, quotes or "
                   "non-ASCII letters, at most 64 characters)",
    Reason.BAD_TIMESTAMP: "a timestamp is not ISO-8601 UTC with a 'Z' (YYYY-MM-DDTHH:MM:SS[.ffffff]Z) "
                          "or is not a real date",
    Reason.TS_IN_FUTURE: "the event time is further ahead of the worker's clock than allowed "
                         "(CITYFLOW_MAX_EVENT_FUTURE_S)",
    Reason.TS_TOO_OLD: "the event time is older than allowed (CITYFLOW_MAX_EVENT_AGE_DAYS)",
    Reason.KEY_MISMATCH: "an otherwise valid record whose Kafka key is null or not its entity id (e.g. "
                         "detector_id): it would split its entity's windows over partitions; "
                         "`cityflow dlq replay` re-sends it keyed by its entity id",
    Reason.DUPLICATE: "an exact copy (every field equal) of a record accepted earlier in the same "
                      "partition, re-sent within the replay horizon",
}


@dataclass(frozen=True)
class Field:
    """One column of a source: its type, unit, valid range or enum, and whether it may be null.

    For ints and floats `min`/`max` bound the value, for strings its length in characters.
    `since_version` > 1 marks a field added by a later contract version: producers of older
    versions omit it, so it must be nullable and may be absent from a record.

    `null_when_zero` names an int field of the same contract whose value 0 makes this one
    meaningless ("no vehicles, no speed"): such a value lands as null whatever the producer
    sent (older producers send 0.0), so the raw lake, the windows and every recompute agree.
    The rule is applied after validation (contracts/rules.py, `null_meaningless`).
    """

    name: str
    type: FieldType
    description: str
    unit: str | None = None
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    enum: tuple[str, ...] | None = None
    since_version: int = 1
    null_when_zero: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


@dataclass(frozen=True)
class Contract:
    """A source family's contract: its topic, key and fields (the latest version's)."""

    source: str
    topic: str
    key: str
    entity: str
    description: str
    fields: tuple[Field, ...]
    version: int = 1
    district_field: str | None = "district"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"contract {self.source}: duplicate field names in {names}")
        if self.key not in names or "ts" not in names:
            raise ValueError(f"contract {self.source}: key {self.key!r} and 'ts' must be fields")
        for f in self.fields:
            if f.since_version > 1 and not f.nullable:
                raise ValueError(
                    f"contract {self.source}: field {f.name!r} added in v{f.since_version} must be "
                    "nullable, otherwise records from older producers would be rejected"
                )
            if f.null_when_zero is not None:
                other = next((g for g in self.fields if g.name == f.null_when_zero), None)
                if other is None or other.type != "int" or not f.nullable:
                    raise ValueError(
                        f"contract {self.source}: field {f.name!r} null_when_zero={f.null_when_zero!r} "
                        "needs an int field of that name, and the field itself nullable"
                    )

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"contract {self.source} has no field {name!r}")

    def arrow_schema(self) -> pa.Schema:
        """The schema of the decoded batch (contract fields only, in declaration order)."""
        return pa.schema(
            [pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in self.fields],
            metadata={"cityflow.source": self.source, "cityflow.version": str(self.version)},
        )

    def raw_schema(self) -> pa.Schema:
        """The schema of the landed raw (bronze) table: fields plus Kafka coordinates."""
        return self.arrow_schema().append(pa.field("kafka_partition", pa.int32(), False)).append(
            pa.field("kafka_offset", pa.int64(), False)
        )

    def conform_raw(self, table: pa.Table) -> pa.Table:
        """A landed raw table in today's raw schema: columns in order, fields added by a later
        version (absent from files landed before it) as nulls. Raises SchemaMismatch otherwise."""
        schema = self.raw_schema()
        columns = []
        for f in schema:
            if f.name in table.column_names:
                columns.append(table.column(f.name).cast(f.type))
            elif f.nullable:
                columns.append(pa.nulls(table.num_rows, f.type))
            else:
                raise SchemaMismatch(
                    f"{self.source}: landed table lacks non-nullable column {f.name!r} "
                    f"(has {table.column_names})"
                )
        return pa.Table.from_arrays(columns, schema=schema)


class SchemaMismatch(ValueError):
    """A landed table does not fit its contract's schema."""
