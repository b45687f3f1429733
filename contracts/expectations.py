"""Great Expectations (1.x) suites derived from the contracts: one per landed raw table, one
per window table (contracts/tables.py) and one for the quarantine table. Each expectation carries the reason code the streaming validator uses
for the same rule, so a failure on landed data points at the check the stream should have made.

    >>> specs = raw_expectations(TRAFFIC, now=datetime.now(timezone.utc))
    >>> suite = gx_suite("raw_traffic", specs)      # imports great_expectations lazily

Importing this module does not import great_expectations (about 3 s); `gx_suite` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts.aggregates import AGGREGATES
from contracts.quarantine import QUARANTINE_SCHEMA
from contracts.registry import CONTRACTS
from contracts.schema import ID_PATTERN, Contract, Reason
from contracts.tables import window_table


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: the GX class name, its keyword arguments and what it stands for."""

    expectation: str
    kwargs: dict[str, Any]
    reason: str
    column: str = ""
    notes: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def raw_expectations(
    contract: Contract, now: datetime, max_future: timedelta = timedelta(minutes=5)
) -> list[ExpectationSpec]:
    """The expectations every landed raw row of `contract` must meet (its decoder's rules)."""
    specs: list[ExpectationSpec] = []
    for f in contract.fields:
        if not f.nullable:
            specs.append(ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": f.name},
                                         Reason.NULL_FIELD.value, f.name))
        if f.enum is not None:
            specs.append(ExpectationSpec("ExpectColumnValuesToBeInSet",
                                         {"column": f.name, "value_set": list(f.enum)},
                                         Reason.BAD_ENUM.value, f.name))
        if f.type == "id":
            specs.append(ExpectationSpec("ExpectColumnValuesToMatchRegex",
                                         {"column": f.name, "regex": ID_PATTERN},
                                         Reason.BAD_ID.value, f.name))
        if f.type in ("int", "float") and (f.min is not None or f.max is not None):
            specs.append(ExpectationSpec("ExpectColumnValuesToBeBetween",
                                         {"column": f.name, "min_value": f.min, "max_value": f.max},
                                         Reason.OUT_OF_RANGE.value, f.name))
        if f.type == "string" and (f.min is not None or f.max is not None):
            specs.append(ExpectationSpec("ExpectColumnValueLengthsToBeBetween",
                                         {"column": f.name, "min_value": f.min, "max_value": f.max},
                                         Reason.OUT_OF_RANGE.value, f.name))
        if f.type == "timestamp":
            latest = (now + max_future).isoformat()
            specs.append(ExpectationSpec("ExpectColumnValuesToBeBetween",
                                         {"column": f.name, "max_value": latest},
                                         Reason.TS_IN_FUTURE.value, f.name,
                                         notes="no event time after the validation run + max future"))
    specs += [
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "kafka_partition"}, "landing", "kafka_partition"),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "kafka_offset", "min_value": 0},
                        "landing", "kafka_offset"),
        ExpectationSpec("ExpectCompoundColumnsToBeUnique", {"column_list": ["kafka_partition", "kafka_offset"]},
                        "landing", notes="exactly-once landing: one row per Kafka record"),
        ExpectationSpec("ExpectCompoundColumnsToBeUnique", {"column_list": list(contract.field_names)},
                        Reason.DUPLICATE.value,
                        notes="no exact duplicate records (re-sends beyond the duplicate horizon show up here)"),
    ]
    return specs


def quarantine_expectations() -> list[ExpectationSpec]:
    """The expectations of the quarantine table (all sources)."""
    specs = [ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": c}, "quarantine", c)
             for c in ("source_topic", "kafka_partition", "kafka_offset", "reason", "received_at")]
    specs += [
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "reason", "value_set": [r.value for r in Reason]},
                        "quarantine", "reason", notes="every reason is a stable code"),
        ExpectationSpec("ExpectColumnValuesToBeInSet",
                        {"column": "source_topic", "value_set": sorted(c.topic for c in CONTRACTS.values())},
                        "quarantine", "source_topic"),
        ExpectationSpec("ExpectCompoundColumnsToBeUnique",
                        {"column_list": ["source_topic", "kafka_partition", "kafka_offset"]},
                        "landing", notes="exactly-once landing: one row per Kafka record"),
    ]
    assert all(s.column in QUARANTINE_SCHEMA.names for s in specs if s.column)
    return specs


def window_expectations(source: str) -> list[ExpectationSpec]:
    """The expectations of a source's landed windows, from its table declaration: required
    columns are not null, counts and geometry are not negative, one row per key, and an
    aggregate of a bounded field stays within the field's range (mean, min, max and
    quantiles of valid values cannot leave it). NaN is checked apart (jobs/validation.py):
    GX's pandas engine treats NaN as null."""
    table = window_table(source)
    contract = CONTRACTS[source]
    # `source` is also the Hive partition key: validation reads it from the path, not the file
    specs = [ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": c.name}, "window", c.name)
             for c in table.columns if not c.nullable and c.name != "source"]
    specs += [ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": c, "min_value": low}, "window", c)
              for c, low in (("window_size_s", 1), ("hop_s", 1), ("version", 0))]
    specs.append(ExpectationSpec("ExpectCompoundColumnsToBeUnique", {"column_list": [k for k in table.key if k != "source"]},
                                 "window",
                                 notes="one row per entity, window and version in each partition"))
    for agg in AGGREGATES[source]:
        if not agg.function.nullable:  # counts
            specs.append(ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": agg.name, "min_value": 0},
                                         "window", agg.name))
        elif agg.function.within_input_range:
            f = contract.field(agg.field) if agg.field else None
            if f is not None and f.type in ("int", "float") and (f.min is not None or f.max is not None):
                specs.append(ExpectationSpec("ExpectColumnValuesToBeBetween",
                                             {"column": agg.name, "min_value": f.min, "max_value": f.max},
                                             Reason.OUT_OF_RANGE.value, agg.name,
                                             notes=f"{agg.fn} of {f.name} stays within its contract range"))
    return specs


def suite_specs(now: datetime, max_future: timedelta = timedelta(minutes=5)) -> dict[str, list[ExpectationSpec]]:
    """Every suite by name: raw_<source> and windows_<source> for each contract, and quarantine."""
    suites = {f"raw_{s}": raw_expectations(c, now, max_future) for s, c in CONTRACTS.items()}
    suites.update({f"windows_{s}": window_expectations(s) for s in CONTRACTS})
    suites["quarantine"] = quarantine_expectations()
    return suites


def gx_suite(name: str, specs: list[ExpectationSpec]) -> Any:
    """A great_expectations.ExpectationSuite holding `specs` (not yet added to a context)."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    for spec in specs:
        cls = getattr(gx.expectations, spec.expectation)
        meta = {"reason": spec.reason, **({"notes": spec.notes} if spec.notes else {}), **spec.meta}
        suite.add_expectation(cls(**spec.kwargs, meta=meta))
    return suite
