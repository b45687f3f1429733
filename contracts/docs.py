"""Generate docs/contracts.md, the reference of every landed column, from the declarations in
contracts/ (regenerate with `cityflow contracts docs`; a test fails when the file is stale)."""

from __future__ import annotations

from pathlib import Path

from contracts.aggregates import AGGREGATE_FUNCTIONS, AGGREGATES
from contracts.quarantine import DLQ_HEADERS, DLQ_MAX_VALUE_BYTES
from contracts.registry import CONTRACTS, DLQ_TOPIC
from contracts.schema import ID_PATTERN, TS_PATTERN, Contract, Field, Reason
from contracts.tables import (
    ANOMALIES,
    KAFKA_COLUMNS,
    QUARANTINE,
    Column,
    district_metadata_columns,
    late_events_table,
    partial_columns,
    window_metadata_columns,
    window_table,
)
from contracts.windows import WINDOW_DEFAULTS, window_view

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "contracts.md"

_TYPE_NAMES = {
    "string": "string",
    "id": "string (id)",
    "int": "int64",
    "float": "float64",
    "timestamp": "timestamp[ms, UTC]",
}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def valid_values(f: Field) -> str:
    """The rule a value of `f` must satisfy, as the decoder enforces it."""
    rules = []
    if f.enum is not None:
        rules.append("one of " + ", ".join(f"`{v}`" for v in f.enum))
    if f.type == "id":
        rules.append(f"matches `{ID_PATTERN}`")
    if f.type == "timestamp":
        rules.append("ISO-8601 UTC with `Z`, not in the future, not too old")
    if f.min is not None or f.max is not None:
        lo = _number(f.min) if f.min is not None else "-∞"
        hi = _number(f.max) if f.max is not None else "∞"
        what = "length " if f.type == "string" else ""
        rules.append(f"{what}{lo} … {hi}")
    if f.type == "float":
        rules.append("finite")
    if f.null_when_zero:
        rules.append(f"lands as null when `{f.null_when_zero}` = 0")
    return "; ".join(rules) or "any"


def contract_section(contract: Contract) -> list[str]:
    w = WINDOW_DEFAULTS[contract.source]
    lines = [
        f"## {contract.source}",
        "",
        contract.description,
        "",
        (f"- topic `{contract.topic}`, Kafka key `{contract.key}` (one {contract.entity}), "
         f"contract version {contract.version}"),
        (f"- landed as `lake/raw/source={contract.source}/date=…/hour=…/` (view `raw_{contract.source}`), "
         "Hive partition by the UTC hour of `ts`"),
        f"- default windows (CITYFLOW_WINDOW_{contract.source.upper()}): {w.size_s} s"
        + (f" hopping by {w.hop_s} s" if w.hop_s else " tumbling")
        + f", allowed lateness {w.allowed_lateness_s} s, grace {w.grace_s} s",
        "",
        "| column | type | unit | nullable | valid values | since | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in contract.fields:
        lines.append(
            f"| `{f.name}` | {_TYPE_NAMES[f.type]} | {_cell(f.unit or '')} | "
            f"{'yes' if f.nullable else 'no'} | {_cell(valid_values(f))} | v{f.since_version} | "
            f"{_cell(f.description)} |"
        )
    for c in KAFKA_COLUMNS:
        lines.append(f"| `{c.name}` | {c.type_name} |  | no | | v1 | {_cell(c.description)} |")
    windows = window_table(contract.source)
    lines += [
        "",
        (f"Window aggregates (`windows/source={contract.source}`, view `{window_view(contract.source)}`; one row "
         f"per {contract.entity}, window and version, after the [window columns](#window-tables)):"),
        "",
        "| column | type | function | of | unit | nullable | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in AGGREGATES[contract.source]:
        fn = f"{a.fn} = `{a.value}`" if a.value else a.fn
        c = windows.column(a.name)
        lines.append(f"| `{a.name}` | {c.type_name} | {fn} | {f'`{a.field}`' if a.field else ''} | "
                     f"{_cell(a.unit or '')} | {_nullable(c)} | {_cell(a.description)} |")
    positioned = not contract.district_field and {"lat", "lon"} <= set(contract.field_names)
    if positioned:
        lines += ["", ("Records carry no district: windows and district partials take the district of the fix "
                       "position (nearest district centre, `contracts.districts.district_of`).")]
    if contract.district_field or positioned:
        lines += [
            "",
            (f"District partials (`district_windows/source={contract.source}`; one row per partition, district, "
             "window and version, after the [district window columns](#window-tables); the warehouse's district "
             "views merge them; percentiles are not mergeable):"),
            "",
            *_column_table(partial_columns(contract.source)),
        ]
    late = late_events_table(contract.source)
    lines += [
        "",
        f"Late events (`late_events/source={contract.source}`): the raw columns above, then",
        "",
        *_column_table(late.columns[len(late.columns) - 2:]),
        "",
    ]
    return lines


def _nullable(c: Column) -> str:
    return "yes" if c.nullable else "no"


def _column_table(columns: tuple[Column, ...]) -> list[str]:
    lines = ["| column | type | unit | nullable | description |", "|---|---|---|---|---|"]
    for c in columns:
        lines.append(f"| `{c.name}` | {c.type_name} | {_cell(c.unit or '')} | {_nullable(c)} | {_cell(c.description)} |")
    return lines


def window_tables_section() -> list[str]:
    """The columns every window and district partial row carries (window metadata)."""
    return [
        "## window tables",
        "",
        "Per-entity windows (`windows/source=<source>`) start with these columns, then the source's",
        "aggregates. Rows are keyed (source, entity, window_start, window_size_s, version) per partition;",
        "the views keep the latest version. An aggregate without any valid input value in its window",
        "is null, never NaN.",
        "",
        *_column_table(window_metadata_columns()),
        "",
        "District partials (`district_windows/source=<source>`) start with these columns, then the",
        "source's partial columns:",
        "",
        *_column_table(district_metadata_columns()),
        "",
        "Aggregate functions:",
        "",
        "| function | type | district partial | description |",
        "|---|---|---|---|",
        *[f"| `{name}` | {fn.type_doc} | {_cell(fn.partial_doc)} | {_cell(fn.doc)} |"
          for name, fn in AGGREGATE_FUNCTIONS.items()],
        "",
    ]


def render_contract_docs() -> str:
    """The full Markdown text of docs/contracts.md."""
    lines = [
        "# Data contracts",
        "",
        "<!-- Generated from contracts/ by `cityflow contracts docs`; do not edit by hand. -->",
        "",
        "Every source has one declaration in `contracts/<source>.py`. From it derive the streaming",
        "validator (`contracts/decode.py`), the Parquet schema of every landed table, the Great",
        "Expectations suites run by `cityflow validate` (`contracts/expectations.py`) and this page.",
        "A record that breaks its contract is never dropped: it lands in `quarantine` with a reason",
        f"code and is sent to `{DLQ_TOPIC}`.",
        "",
        "Contents: " + ", ".join(f"[{s}](#{s})" for s in CONTRACTS)
        + ", [window tables](#window-tables), [quarantine](#quarantine), [anomalies](#anomalies),"
        " [reason codes](#reason-codes), [evolution](#evolution).",
        "",
        "Timestamps: `" + TS_PATTERN + "` (microseconds are truncated to milliseconds).",
        "",
    ]
    for contract in CONTRACTS.values():
        lines += contract_section(contract)
    lines += window_tables_section()
    lines += [
        "## quarantine",
        "",
        "Rejected records of every source, landed by the worker in the same atomic flush as the",
        "good rows, so per topic partition good + quarantined = consumed (`cityflow verify --counts`).",
        "View `quarantine`; inspect and replay with `cityflow dlq list|show|replay`.",
        "",
        *_column_table(QUARANTINE.columns),
    ]
    lines += [
        "",
        f"Each rejected record is also sent to `{DLQ_TOPIC}` with its original key and value (value",
        f"truncated to {DLQ_MAX_VALUE_BYTES:,} bytes) and these headers:",
        "",
        "| header | meaning |",
        "|---|---|",
    ]
    for name, description in DLQ_HEADERS:
        lines.append(f"| `{name}` | {_cell(description)} |")
    lines += [
        "",
        "## anomalies",
        "",
        "Alerts raised by the detectors (`anomalies/source=<source>`, view `anomalies`), landed in the same",
        "atomic flush as the windows that caused them; the deterministic `anomaly_id` makes a replay",
        "re-derive, never double, an alert. Each landed alert is also produced to `city.anomalies.v1`",
        "(JSON with these columns, keyed by entity; at-least-once, so de-duplicate by `anomaly_id`).",
        "",
        *_column_table(ANOMALIES.columns),
        "",
        "## reason codes",
        "",
        "A record with several problems gets the first found: whole-record reasons first, then per",
        "field in declaration order, then `key_mismatch`, then `duplicate`.",
        "",
        "| reason | meaning |",
        "|---|---|",
    ]
    for reason in Reason:
        lines.append(f"| `{reason.value}` | {_cell(reason.description)} |")
    lines += [
        "",
        "## evolution",
        "",
        "Published versions are frozen in `contracts/published/<source>.v<N>.json`. A new version may",
        "add nullable fields (marked `since` the new version; older producers omit them) and widen",
        "ranges or enums; it may not remove, rename or retype a field, change a unit, make a field",
        "non-nullable or narrow a range or enum. `cityflow contracts check` refuses such a change",
        "with the list of problems; `cityflow contracts publish` freezes a new version.",
        "",
    ]
    return "\n".join(lines)


def write_contract_docs(path: Path = DOCS_PATH) -> bool:
    """Write the docs; return True if the file changed."""
    text = render_contract_docs()
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True
