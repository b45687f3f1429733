"""Lookup of contracts by source name and by topic."""

from contracts.lighting import LIGHTING
from contracts.logistics import LOGISTICS
from contracts.schema import Contract
from contracts.supply import SUPPLY
from contracts.traffic import TRAFFIC
from contracts.wifi import WIFI

CONTRACTS: dict[str, Contract] = {c.source: c for c in (TRAFFIC, LIGHTING, WIFI, LOGISTICS, SUPPLY)}
DLQ_TOPIC = "city.dlq.v1"
ANOMALY_TOPIC = "city.anomalies.v1"


def contract_for_source(source: str) -> Contract:
    try:
        return CONTRACTS[source]
    except KeyError:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(CONTRACTS)}") from None


def contract_for_topic(topic: str) -> Contract:
    for c in CONTRACTS.values():
        if c.topic == topic:
            return c
    raise KeyError(f"no contract for topic {topic!r}; known: {[c.topic for c in CONTRACTS.values()]}")
