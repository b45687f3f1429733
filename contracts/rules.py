"""The validation rules of every contract, declared once and derived from its fields: both
decoders evaluate this one table, the batch fast path (contracts/fastpath.py) asking "does any
rule fail in this batch?" and the record-by-record path (contracts/decode.py) asking "which rule
fails first for this record?".

    >>> [(r.reason.value, r.field) for r in rule_table(TRAFFIC).rules][:3]
    [('null_field', 'detector_id'), ('bad_id', 'detector_id'), ('null_field', 'ts')]

A rule tests a whole column at once (an Arrow kernel; a null result means "does not apply",
e.g. a range on a null value) and words the reject detail for one offending record. Its order
in the table is the order a record's first failure is looked for: per field in declaration
order null, finite, id, enum, range, timestamp shape, future, too old; then `key_mismatch`.

What the table does not hold is what a parser must find before there is a column to test:
`empty`, `too_large`, `not_json`, `not_object`, `unknown_field`, `missing_field`, `wrong_type`.
The JSON type a field accepts is declared here too (`PY_TYPES`, `JSON_TYPES`): the fast path
builds its msgspec structs from it, the checked path tests each value with it.

Besides the tests, the table holds the contract's null rules (`NullRule`, from a field's
`null_when_zero`): a value that carries no meaning, like a speed with no vehicles counted, is
accepted and lands as null (`null_meaningless`). They change no verdict, so the decoders return
what was sent (valid records pass unchanged) and the batch step applies them once, before
anything lands or is windowed (streams/batch.py); the duplicate index fingerprints the nulled
values (contracts/duplicates.py), the form the lake holds and recovery rebuilds from.

`key_mismatch`: per-entity windows hold only if every event of an entity arrives on one
partition, i.e. the Kafka key is the entity id. A record whose key is null or differs from its
entity id (bridges from MQTT/HTTP often key by gateway or not at all) would be windowed on
whichever partition it landed and split its entity's windows. The worker cannot re-produce it
to the right partition inside its exactly-once flush without making the landing at-least-once,
so it refuses it (DLQ + quarantine, counted by reason) and `cityflow dlq replay` re-produces
it keyed by its entity id. Checked only where keys are known (`RuleContext.keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from contracts.schema import ID_PATTERN, TS_PATTERN, Contract, Field, Reason

MAX_RECORD_BYTES = 64 * 1024

# The Python type msgspec decodes a field's JSON into (the fast path's structs), and the types
# of decoded JSON values a field accepts (the checked path's per-value test): a JSON integer is
# a number for a float field; a bool is no number (though a Python int subclass), a float no
# int, and an int must fit Arrow's int64.
PY_TYPES: dict[str, type] = {"string": str, "id": str, "timestamp": str, "int": int, "float": float}
JSON_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "id": (str,), "timestamp": (str,),
                                           "int": (int,), "float": (int, float)}
INT64_RANGE = range(-(2**63), 2**63)

RuleInput = Literal["value", "epoch_ms", "key"]


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on event time and record size, relative to the wall clock at decode time."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=7)
    max_record_bytes: int = MAX_RECORD_BYTES


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class RuleContext:
    """What rules are evaluated against besides a column: the clock, the limits and (when
    known) the records' Kafka keys, aligned with the columns."""

    now: datetime
    limits: DecodeLimits
    keys: pa.Array | None = None

    @property
    def earliest_ms(self) -> int:
        return int(self.now.timestamp() * 1000) - int(self.limits.max_age.total_seconds() * 1000)

    @property
    def latest_ms(self) -> int:
        return int(self.now.timestamp() * 1000) + int(self.limits.max_future.total_seconds() * 1000)


_MS = pa.timestamp("ms", tz="UTC")
_US = pa.timestamp("us", tz="UTC")


def event_times(text: Any) -> Any:
    """Well-shaped timestamp strings (TS_PATTERN) as UTC milliseconds, truncating finer digits
    (the pattern allows 6). Raises pa.ArrowInvalid on an impossible date (month 13)."""
    try:
        return text.cast(_MS)  # up to 3 digits: one cast
    except pa.ArrowInvalid:  # finer digits, or an impossible date (raises again below)
        return pc.floor_temporal(text.cast(_US), unit="millisecond").cast(_MS)


def key_array(keys: Sequence[bytes | None]) -> pa.Array:
    """Kafka keys as an Arrow binary array (one C loop; nulls stay null)."""
    return pa.array(keys, pa.binary())


@dataclass(frozen=True)
class Rule:
    """One validation rule: the reason code and field of its rejects, the column it tests
    (`value`: the field's column, timestamps as text; `epoch_ms`: a timestamp field parsed to
    epoch milliseconds; `key`: the field's column against the Kafka keys), a vectorised test
    (boolean Arrow array, true or null = passes) and the detail of one reject."""

    reason: Reason
    field: str
    on: RuleInput
    passes: Callable[[Any, RuleContext], Any]
    detail: Callable[[Any, bytes | None, RuleContext], str]


@dataclass(frozen=True)
class NullRule:
    """A value without meaning lands as null: `field` wherever `zero_field` is 0 ("no vehicles,
    no speed"). Applied to every record, whichever contract version its producer speaks."""

    field: str
    zero_field: str


@dataclass(frozen=True)
class RuleTable:
    """A contract's rules in the order a record's first failure is looked for, and its null
    rules."""

    contract: Contract
    rules: tuple[Rule, ...]
    null_rules: tuple[NullRule, ...] = ()

    def of_field(self, name: str) -> tuple[Rule, ...]:
        """The rules testing one field's own value (`value` and `epoch_ms` rules), in order."""
        return self._by_field.get(name, ())

    @cached_property
    def _by_field(self) -> dict[str, tuple[Rule, ...]]:
        by_field: dict[str, list[Rule]] = {}
        for r in self.rules:
            if r.on != "key":
                by_field.setdefault(r.field, []).append(r)
        return {name: tuple(rules) for name, rules in by_field.items()}

    @cached_property
    def key_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.on == "key")


def _field_rules(f: Field) -> list[Rule]:
    name = f.name
    rules: list[Rule] = []
    if not f.nullable:
        rules.append(Rule(Reason.NULL_FIELD, name, "value", lambda col, ctx: pc.is_valid(col),
                          lambda v, k, ctx: f"field {name!r} must not be null"))
    if f.type == "float":
        rules.append(Rule(Reason.NOT_FINITE, name, "value", lambda col, ctx: pc.is_finite(col),
                          lambda v, k, ctx: f"field {name!r} is NaN or infinite"))
    if f.type == "id":
        rules.append(Rule(Reason.BAD_ID, name, "value",
                          lambda col, ctx: pc.match_substring_regex(col, ID_PATTERN),
                          lambda v, k, ctx: f"id {str(v)[:80]!r} does not match {ID_PATTERN}"))
    if f.enum is not None:
        allowed = pa.array(f.enum)
        rules.append(Rule(Reason.BAD_ENUM, name, "value",
                          lambda col, ctx: pc.is_in(col, value_set=allowed),
                          lambda v, k, ctx: f"{str(v)[:80]!r} not one of {list(f.enum or ())}"))
    if f.min is not None or f.max is not None:
        if f.type in ("int", "float"):
            rules.append(Rule(Reason.OUT_OF_RANGE, name, "value",
                              lambda col, ctx: _within(col, f.min, f.max),
                              lambda v, k, ctx: f"{name}={v!r} outside [{f.min}, {f.max}]"))
        elif f.type == "string":
            rules.append(Rule(Reason.OUT_OF_RANGE, name, "value",
                              lambda col, ctx: _within(pc.utf8_length(col), f.min, f.max),
                              lambda v, k, ctx: f"{name} length outside [{f.min}, {f.max}]"))
    if f.type == "timestamp":
        rules += [
            Rule(Reason.BAD_TIMESTAMP, name, "value",
                 lambda col, ctx: pc.match_substring_regex(col, TS_PATTERN),
                 lambda v, k, ctx: f"{str(v)[:40]!r} is not ISO-8601 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z)"),
            Rule(Reason.TS_IN_FUTURE, name, "epoch_ms",
                 lambda epoch, ctx: pc.less_equal(epoch, ctx.latest_ms),
                 lambda v, k, ctx: f"ts {v} is more than {ctx.limits.max_future} ahead of {ctx.now.isoformat()}"),
            Rule(Reason.TS_TOO_OLD, name, "epoch_ms",
                 lambda epoch, ctx: pc.greater_equal(epoch, ctx.earliest_ms),
                 lambda v, k, ctx: f"ts {v} is older than {ctx.limits.max_age}"),
        ]
    return rules


def _within(values: Any, lo: float | None, hi: float | None) -> Any:
    if lo is not None and hi is not None:
        return pc.and_(pc.greater_equal(values, lo), pc.less_equal(values, hi))
    return pc.greater_equal(values, lo) if lo is not None else pc.less_equal(values, hi)


def _key_rule(contract: Contract) -> Rule:
    key = contract.key

    def passes(col: Any, ctx: RuleContext) -> Any:  # a null key never matches
        return pc.fill_null(pc.equal(col.cast(pa.binary()), ctx.keys), False)

    def detail(v: Any, k: bytes | None, ctx: RuleContext) -> str:
        shown = "null" if k is None else repr(k.decode("utf-8", "backslashreplace")[:80])
        return (f"Kafka key {shown} is not the record's {key} {str(v)[:80]!r}: producers must key "
                f"by {key} (its windows would split over partitions); `cityflow dlq replay` re-keys it")

    return Rule(Reason.KEY_MISMATCH, key, "key", passes, detail)


def null_meaningless(contract: Contract, table: pa.Table) -> pa.Table:
    """`table` (decoded or landed rows of `contract`) with every value its contract's null rules
    declare meaningless set to null; idempotent, and the same table when nothing changes.

        >>> null_meaningless(TRAFFIC, rows).column("avg_speed_kmh").to_pylist()  # counts [3, 0]
        [48.5, None]
    """
    for rule in rule_table(contract).null_rules:
        if rule.field not in table.column_names or rule.zero_field not in table.column_names:
            continue
        zero = pc.fill_null(pc.equal(table.column(rule.zero_field), 0), False)
        if not pc.any(zero).as_py():
            continue
        i = table.schema.get_field_index(rule.field)
        col = table.column(i)
        table = table.set_column(i, table.schema.field(i).with_nullable(True),
                                 pc.if_else(zero, pa.scalar(None, col.type), col))
    return table


_TABLES: dict[int, RuleTable] = {}


def rule_table(contract: Contract) -> RuleTable:
    """The contract's rules (built once per contract object)."""
    table = _TABLES.get(id(contract))
    if table is None or table.contract is not contract:
        rules = [r for f in contract.fields for r in _field_rules(f)] + [_key_rule(contract)]
        nulls = tuple(NullRule(f.name, f.null_when_zero) for f in contract.fields if f.null_when_zero)
        table = _TABLES[id(contract)] = RuleTable(contract, tuple(rules), nulls)
    return table
