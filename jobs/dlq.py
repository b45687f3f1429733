"""Inspect quarantined records and replay them to their source topic (`cityflow dlq ...`).

The quarantine table in the lake is the dead-letter store of record: it holds the complete
original bytes (the city.dlq.v1 topic truncates large values) and lands exactly once with the
good rows. Replay produces each selected record's original key and value, byte for byte, to its
source topic with headers naming the original, and appends the replayed records to a replay log
in the lake (``_dlq_replays/<replay_id>.parquet``); records already in the log are skipped, so
running the same replay twice sends nothing the second time.

One exception to "byte for byte": a `key_mismatch` reject (its Kafka key null or not its
entity id) is replayed keyed by the entity id in its value, so it lands on its entity's
partition and is windowed whole there; that re-keying is the fix of a mis-keyed producer's
records (the worker refuses them instead of re-producing them, which its exactly-once flush
cannot). Every other reject keeps its original key: its reason was not the key, and its
quarantine and replay history stays findable by that key.

Failure window: the log is written once every send is acknowledged. A crash between the last
acknowledgement and the log write could replay those records again; the worker's duplicate
check then rejects the second copy of any record that is valid now (within the horizon).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from contracts import lake as L
from contracts.registry import CONTRACTS, contract_for_topic
from contracts.schema import Reason

log = logging.getLogger(__name__)

REPLAY_LOG_DIR = "_dlq_replays"
REPLAY_LOG_SCHEMA = pa.schema([
    pa.field("replay_id", pa.string()),
    pa.field("replayed_at", pa.timestamp("ms", tz="UTC")),
    pa.field("source_topic", pa.string()),
    pa.field("kafka_partition", pa.int32()),
    pa.field("kafka_offset", pa.int64()),
    pa.field("reason", pa.string()),
    pa.field("new_partition", pa.int32()),
    pa.field("new_offset", pa.int64()),
])
REPLAY_HEADER = "cityflow_replay_of"
REPLAY_ID_HEADER = "cityflow_replay_id"
_REF_RE = re.compile(r"^(?P<topic>[a-z0-9._-]+):(?P<partition>\d+):(?P<offset>\d+)$")
_HIVE = "hive_partitioning = true, union_by_name = true, hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER}"


class DlqError(RuntimeError):
    """A DLQ command cannot proceed; the message says why."""


@dataclass(frozen=True)
class RecordRef:
    """A quarantined record's Kafka coordinates, written `topic:partition:offset`."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> RecordRef:
        m = _REF_RE.match(text.strip())
        if not m:
            raise DlqError(f"expected a record as TOPIC:PARTITION:OFFSET (e.g. city.traffic.v1:2:1043), got {text!r}")
        return cls(m["topic"], int(m["partition"]), int(m["offset"]))

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class QuarantineFilter:
    """Which quarantined records a command applies to (all given conditions must hold)."""

    source: str | None = None
    reasons: tuple[str, ...] = ()
    since: datetime | None = None
    refs: tuple[RecordRef, ...] = ()

    def __post_init__(self) -> None:
        if self.source is not None and self.source not in CONTRACTS:
            raise DlqError(f"unknown source {self.source!r}; known: {', '.join(CONTRACTS)}")
        known = {r.value for r in Reason}
        bad = [r for r in self.reasons if r not in known]
        if bad:
            raise DlqError(f"unknown reasons {bad}; known: {', '.join(sorted(known))}")


def _quarantine_glob(lake: L.Lake) -> str:
    return lake.glob_uri(f"{L.QUARANTINE}/source=*/date=*/hour=*/[!.]*.parquet")


def _connect(lake_root: str) -> duckdb.DuckDBPyConnection:
    from warehouse.db import prepare_connection

    con = duckdb.connect()
    prepare_connection(con, lake_root)  # UTC; a remote lake without downloads
    return con


def read_quarantine(lake_root: str, flt: QuarantineFilter, with_value: bool = True,
                    limit: int | None = None) -> pa.Table:
    """Quarantined records matching `flt`, ordered by topic, partition, offset."""
    lake = L.Lake(lake_root)
    pattern = _quarantine_glob(lake)
    con = _connect(lake_root)
    try:
        if not con.execute("SELECT 1 FROM glob(?) LIMIT 1", [pattern]).fetchall():
            return _empty_quarantine(with_value)
        where: list[str] = ["true"]
        params: list[object] = [pattern]
        if flt.source:
            where.append("source = ?")
            params.append(flt.source)
        if flt.reasons:
            where.append(f"reason IN ({', '.join('?' for _ in flt.reasons)})")
            params += list(flt.reasons)
        if flt.since:
            where.append("date >= ?::DATE AND received_at >= ?::TIMESTAMPTZ")
            params += [flt.since.date().isoformat(), flt.since.isoformat()]
        if flt.refs:
            where.append("(" + " OR ".join("(source_topic = ? AND kafka_partition = ? AND kafka_offset = ?)"
                                           for _ in flt.refs) + ")")
            for r in flt.refs:
                params += [r.topic, r.partition, r.offset]
        cols = "source, source_topic, kafka_partition, kafka_offset, reason, field, detail, received_at, key"
        cols += ", value" if with_value else ", CAST(octet_length(value) AS BIGINT) AS value_bytes"
        sql = (f"SELECT {cols} FROM read_parquet(?, {_HIVE}) WHERE {' AND '.join(where)} "
               "ORDER BY source_topic, kafka_partition, kafka_offset")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()


def _empty_quarantine(with_value: bool) -> pa.Table:
    fields = [pa.field("source", pa.string()), pa.field("source_topic", pa.string()),
              pa.field("kafka_partition", pa.int32()), pa.field("kafka_offset", pa.int64()),
              pa.field("reason", pa.string()), pa.field("field", pa.string()),
              pa.field("detail", pa.string()), pa.field("received_at", pa.timestamp("ms", tz="UTC")),
              pa.field("key", pa.binary())]
    fields.append(pa.field("value", pa.binary()) if with_value else pa.field("value_bytes", pa.int64()))
    return pa.schema(fields).empty_table()


def quarantine_counts(lake_root: str, flt: QuarantineFilter) -> list[tuple[str, str, int]]:
    """(source, reason, records) for the quarantined records matching `flt`, most first."""
    t = read_quarantine(lake_root, flt, with_value=False)
    if t.num_rows == 0:
        return []
    grouped = t.group_by(["source", "reason"]).aggregate([("kafka_offset", "count")])
    rows = list(zip(grouped["source"].to_pylist(), grouped["reason"].to_pylist(),
                    grouped["kafka_offset_count"].to_pylist()))
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


def read_replay_log(lake_root: str) -> pa.Table:
    """Every record replayed so far (all replay runs)."""
    lake = L.Lake(lake_root)
    tables = [lake.read_table(rel) for rel in lake.list_files(REPLAY_LOG_DIR)]
    if not tables:
        return REPLAY_LOG_SCHEMA.empty_table()
    return pa.concat_tables([t.select(REPLAY_LOG_SCHEMA.names).cast(REPLAY_LOG_SCHEMA) for t in tables])


def replayed_refs(lake_root: str) -> dict[RecordRef, tuple[str, datetime]]:
    """{original record: (replay id, when)} from the replay log."""
    t = read_replay_log(lake_root).to_pylist()
    return {RecordRef(r["source_topic"], r["kafka_partition"], r["kafka_offset"]): (r["replay_id"], r["replayed_at"])
            for r in t}


@dataclass
class ReplayPlan:
    """What a replay would send, and what it skips and why."""

    records: pa.Table
    already_replayed: list[tuple[RecordRef, str]] = field(default_factory=list)
    skipped: list[tuple[RecordRef, str]] = field(default_factory=list)


def plan_replay(lake_root: str, flt: QuarantineFilter) -> ReplayPlan:
    """Select quarantined records to replay: never one already replayed, never to a topic that
    is not a contract's, and no `duplicate` rejects unless asked for by reason or reference."""
    table = read_quarantine(lake_root, flt, with_value=True)
    done = replayed_refs(lake_root)
    topics = {c.topic for c in CONTRACTS.values()}
    want_duplicates = Reason.DUPLICATE.value in flt.reasons or bool(flt.refs)
    keep, already, skipped = [], [], []
    for i, (topic, part, off, reason) in enumerate(zip(
            table["source_topic"].to_pylist(), table["kafka_partition"].to_pylist(),
            table["kafka_offset"].to_pylist(), table["reason"].to_pylist())):
        ref = RecordRef(topic, part, off)
        if ref in done:
            replay_id, when = done[ref]
            already.append((ref, f"already replayed by {replay_id} at {when:%Y-%m-%d %H:%M:%S}Z"))
        elif topic not in topics:
            skipped.append((ref, f"source topic {topic!r} is not a contract topic"))
        elif reason == Reason.DUPLICATE.value and not want_duplicates:
            skipped.append((ref, "a duplicate (the original landed); pass --reason duplicate to replay it"))
        else:
            keep.append(i)
    return ReplayPlan(table.take(pa.array(keep, pa.int64())), already, skipped)


@dataclass
class ReplayResult:
    replay_id: str
    sent: pa.Table  # REPLAY_LOG_SCHEMA rows of what was sent and acknowledged
    failed: list[tuple[RecordRef, str]] = field(default_factory=list)


def replay_key(topic: str, reason: str, key: bytes | None, value: bytes | None) -> bytes | None:
    """The key a quarantined record is replayed with: its original key, except a `key_mismatch`
    reject's, which becomes the entity id (`contract.key`) in its value.

        >>> replay_key("city.traffic.v1", "key_mismatch", None, b'{"detector_id": "tdet-7", ...}')
        b'tdet-7'
    """
    if reason != Reason.KEY_MISMATCH.value or not value:
        return key
    try:
        obj = orjson.loads(value)
        entity = obj.get(contract_for_topic(topic).key) if type(obj) is dict else None
    except (orjson.JSONDecodeError, KeyError):
        return key
    return entity.encode() if type(entity) is str and entity else key


def replay(lake_root: str, plan: ReplayPlan, producer_config: dict[str, Any],
           replay_id: str | None = None, timeout_s: float = 60) -> ReplayResult:
    """Produce the planned records' original bytes to their source topics (kafka-python), keyed
    by `replay_key`, then log the acknowledged ones in the lake. Returns what was sent and what
    failed."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    replay_id = replay_id or f"replay-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    rows = plan.records.to_pylist()
    result = ReplayResult(replay_id, REPLAY_LOG_SCHEMA.empty_table())
    if not rows:
        return result
    producer = KafkaProducer(**producer_config, acks="all", linger_ms=20,
                             max_request_size=max(16 * 1024 * 1024, max(len(r["value"] or b"") for r in rows) + 4096))
    futures = []
    try:
        for r in rows:
            ref = RecordRef(r["source_topic"], r["kafka_partition"], r["kafka_offset"])
            headers = [(REPLAY_HEADER, str(ref).encode()), (REPLAY_ID_HEADER, replay_id.encode())]
            futures.append((r, ref, producer.send(r["source_topic"], value=r["value"], headers=headers,
                                                     key=replay_key(ref.topic, r["reason"], r["key"], r["value"]))))
        producer.flush(timeout=timeout_s)
        now = datetime.now(UTC)
        sent = []
        for r, ref, fut in futures:
            try:
                md = fut.get(timeout=timeout_s)
            except KafkaError as exc:
                result.failed.append((ref, repr(exc)))
                continue
            sent.append({"replay_id": replay_id, "replayed_at": now, "source_topic": ref.topic,
                         "kafka_partition": ref.partition, "kafka_offset": ref.offset, "reason": r["reason"],
                         "new_partition": md.partition, "new_offset": md.offset})
    finally:
        producer.close(timeout=10)
    if sent:
        result.sent = pa.Table.from_pylist(sent, schema=REPLAY_LOG_SCHEMA)
        L.Lake(lake_root).write_table_atomic(f"{REPLAY_LOG_DIR}/{replay_id}.parquet", result.sent)
        log.info("dlq replay id=%s sent=%d failed=%d", replay_id, len(sent), len(result.failed))
    return result


def value_preview(value: bytes | None, limit: int = 60) -> str:
    """A one-line, printable preview of a value (UTF-8 text or hex)."""
    if value is None:
        return "(null)"
    if not value:
        return "(empty)"
    try:
        text = value.decode("utf-8")
        shown = text[:limit].encode("unicode_escape").decode("ascii")
    except UnicodeDecodeError:
        shown = "hex:" + value[: limit // 2].hex()
    more = f"… ({len(value):,} bytes)" if len(value) > limit else ""
    return shown + more


def hexdump(data: bytes, limit: int = 256) -> str:
    lines = []
    for i in range(0, min(len(data), limit), 16):
        chunk = data[i:i + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:08x}  {chunk.hex(' '):<47}  {text}")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit:,} more bytes")
    return "\n".join(lines)
