"""Topic tooling behind `cityflow topics create|describe|lag`, on any Kafka-protocol cluster.

    >>> specs = topic_specs(settings)                       # every cityflow topic, as configured
    >>> create_topics(kafka_client_config(settings), specs)  # idempotent; mismatches reported
    >>> describe_topics(config, list(specs))
    >>> consumer_lag(config, Lake(settings.lake), "cityflow-ingest", specs)

Lag has three columns on purpose: the group's committed offset (what Kafka knows), the lake's
landed offset (from each partition's landing checkpoint: what cityflow has durably written, the
truth for "is anything lost or behind") and the end offset. On the embedded broker (Tansu) the
end offset under-reports (DESIGN.md, quirk 1), so its lag column is approximate there; the
landed offset is exact everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts import lake as L
from contracts.registry import ANOMALY_TOPIC, CONTRACTS, DLQ_TOPIC
from contracts.settings import Settings
from streams.broker import _TOPIC_ALREADY_EXISTS, BrokerUnreachable, _admin

_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class TopicSpec:
    """How cityflow wants one topic: partitions, replication factor and topic configs."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """Every topic cityflow uses (the sources, the dead-letter queue, the anomalies) as the
    settings configure them."""
    configs = {"retention.ms": str(int(settings.topic_retention_hours * 3_600_000))}
    names = [c.topic for c in CONTRACTS.values()] + [DLQ_TOPIC, ANOMALY_TOPIC]
    return {n: TopicSpec(n, settings.partitions, settings.topic_replication_factor, dict(configs)) for n in names}


@dataclass
class CreateResult:
    name: str
    status: str  # created | exists | mismatch | failed
    detail: str = ""


def create_topics(config: Mapping[str, Any], specs: Mapping[str, TopicSpec]) -> list[CreateResult]:
    """Create the missing topics; report (never silently use) existing ones whose partition
    count differs from the configured one. Running it twice creates nothing the second time."""
    from kafka.errors import KafkaError, for_code

    admin = _admin(config, _TIMEOUT_S)
    try:
        existing = {d["name"]: d for d in admin.describe_topics(sorted(specs)) if d["error_code"] == 0}
        results: dict[str, CreateResult] = {}
        for name, spec in specs.items():
            if name in existing:
                have = len(existing[name]["partitions"])
                results[name] = (CreateResult(name, "exists", f"{have} partitions") if have == spec.partitions else
                                 CreateResult(name, "mismatch", f"has {have} partitions, configured "
                                              f"{spec.partitions} (CITYFLOW_PARTITIONS); cityflow does not "
                                              "repartition a topic: a different count moves keys to other "
                                              "partitions. Recreate it or set CITYFLOW_PARTITIONS to match"))
        missing = {n: {"num_partitions": s.partitions, "replication_factor": s.replication, "configs": s.configs}
                   for n, s in specs.items() if n not in existing}
        if missing:
            response = admin.create_topics(missing, timeout_ms=int(_TIMEOUT_S * 1000), raise_errors=False)
            for r in response["topics"]:
                code = r["error_code"]
                if code == 0:
                    results[r["name"]] = CreateResult(r["name"], "created", f"{missing[r['name']]['num_partitions']} "
                                                      f"partitions, replication {missing[r['name']]['replication_factor']}")
                elif code == _TOPIC_ALREADY_EXISTS:  # created by someone else meanwhile
                    results[r["name"]] = CreateResult(r["name"], "exists", "created concurrently")
                else:
                    results[r["name"]] = CreateResult(r["name"], "failed", f"{for_code(code).__name__}: "
                                                      f"{r.get('error_message') or ''}".rstrip(": "))
        return [results[n] for n in specs]
    except KafkaError as exc:
        raise BrokerUnreachable(f"topic admin request failed: {exc!r}") from None
    finally:
        admin.close()


@dataclass
class TopicDescription:
    name: str
    exists: bool
    partitions: int = 0
    replication: int = 0
    leaders_ok: bool = False
    configs: dict[str, str] = field(default_factory=dict)


def describe_topics(config: Mapping[str, Any], names: list[str]) -> list[TopicDescription]:
    """Partitions, replication, leaders and the topic configs the cluster reports (Tansu reports
    only the configs set at creation)."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    admin = _admin(config, _TIMEOUT_S)
    try:
        out = []
        found = {d["name"]: d for d in admin.describe_topics(names)}
        for name in names:
            d = found.get(name)
            if d is None or d["error_code"] != 0:
                out.append(TopicDescription(name, False))
                continue
            parts = d["partitions"]
            desc = TopicDescription(name, True, len(parts), max((len(p["replica_nodes"]) for p in parts), default=0),
                                    all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in parts))
            try:
                got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
                desc.configs = {k: str(v.get("value")) for k, v in got.get("topic", {}).get(name, {}).items()}
            except KafkaError:  # a cluster that refuses DescribeConfigs: partitions are still worth showing
                desc.configs = {}
            out.append(desc)
        return out
    except KafkaError as exc:
        raise BrokerUnreachable(f"topic admin request failed: {exc!r}") from None
    finally:
        admin.close()


@dataclass
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # the group's next offset to read (None: nothing committed)
    landed: int | None  # the lake's next offset to land (None: no landing checkpoint)
    end: int | None  # the broker's end offset (approximate on Tansu)

    @property
    def lag(self) -> int | None:
        """End offset minus landed: records the lake does not have yet."""
        if self.end is None:
            return None
        return max(self.end - (self.landed or 0), 0)


def landed_offset(lake: L.Lake, topic: str, partition: int) -> int | None:
    """The next offset the lake will land for a topic partition (its checkpoint's committed + 1)."""
    ckpt = lake.read_json(L.checkpoint_path(topic, partition))
    if not ckpt:
        return None
    return int(ckpt.get("committed", -1)) + 1


def consumer_lag(config: Mapping[str, Any], lake: L.Lake, group: str, specs: Mapping[str, TopicSpec],
                 topics: list[str] | None = None) -> list[PartitionLag]:
    """Per partition of the source topics (or `topics`): committed, landed and end offsets."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec
    from kafka.errors import KafkaError

    names = topics or [c.topic for c in CONTRACTS.values()]
    admin = _admin(config, _TIMEOUT_S)
    try:
        parts = []
        for d in admin.describe_topics(names):
            if d["error_code"] == 0:
                parts += [TopicPartition(d["name"], p["partition_index"]) for p in d["partitions"]]
        parts.sort()
        committed = admin.list_group_offsets({group: parts}).get(group, {}) if parts else {}
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts}) if parts else {}
        rows = []
        for tp in parts:
            c = committed.get(tp)
            e = ends.get(tp)
            rows.append(PartitionLag(group, tp.topic, tp.partition,
                                     c.offset if c is not None and c.offset >= 0 else None,
                                     landed_offset(lake, tp.topic, tp.partition),
                                     e.offset if e is not None and e.offset >= 0 else None))
        return rows
    except KafkaError as exc:
        raise BrokerUnreachable(f"offset request failed: {exc!r}") from None
    finally:
        admin.close()


__all__ = ["CreateResult", "PartitionLag", "TopicDescription", "TopicSpec", "consumer_lag", "create_topics",
           "describe_topics", "landed_offset", "topic_specs"]
