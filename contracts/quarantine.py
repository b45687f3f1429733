"""The quarantine table: one row per rejected Kafka record, with the reason code and the
original bytes (landed under lake/quarantine/ and mirrored to the dead-letter topic city.dlq.v1).

Declared here, like every other column, so the sink, the warehouse and the docs share it.
"""

from __future__ import annotations

import pyarrow as pa

# (name, Arrow type, description): the columns of lake/quarantine/source=<s>/... files.
QUARANTINE_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("source_topic", pa.string(), "Topic the record was consumed from"),
    ("kafka_partition", pa.int32(), "Partition of the record"),
    ("kafka_offset", pa.int64(), "Offset of the record; (source_topic, kafka_partition, kafka_offset) is unique"),
    ("reason", pa.string(), "Reason code (see the table of reason codes)"),
    ("field", pa.string(), "Contract field the reason applies to ('' for whole-record reasons)"),
    ("detail", pa.string(), "Human-readable explanation, at most 500 characters"),
    ("value", pa.binary(), "The original message value, byte for byte"),
    ("key", pa.binary(), "The original message key"),
    ("received_at", pa.timestamp("ms", tz="UTC"), "When the worker decoded the record (UTC); the Hive date/hour partition"),
)

QUARANTINE_SCHEMA = pa.schema([pa.field(name, typ) for name, typ, _ in QUARANTINE_COLUMNS])

# Headers of every record sent to city.dlq.v1 (values are UTF-8 bytes; the record's key and
# value are the original key and value, the value truncated to DLQ_MAX_VALUE_BYTES).
DLQ_HEADERS: tuple[tuple[str, str], ...] = (
    ("reason", "Reason code"),
    ("field", "Contract field the reason applies to"),
    ("detail", "Human-readable explanation (the quarantine `detail`, at most 500 characters)"),
    ("source_topic", "Topic the record was consumed from"),
    ("partition", "Its partition"),
    ("offset", "Its offset"),
    ("value_bytes", "Length of the original value; larger than the DLQ value if it was truncated"),
)
DLQ_MAX_VALUE_BYTES = 900_000
