"""Alerts reach city.anomalies.v1 only after the flush that lands them committed (never for a
flush that was not landed), before the Kafka offset commit; alerts a worker landed but could
not send are sent by whoever recovers the partition next. No broker: the ingest service runs
with a fake producer and consumer (as in test_ingest_dlq_order)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import TopicPartition

from contracts import lake as L
from contracts.registry import ANOMALY_TOPIC
from contracts.settings import Settings
from streams.ingest import IngestService
from tests.support.incidents import (
    COLD_CHAIN,
    CONTRACT,
    REEFER,
    Partition,
    landed_anomalies,
    logistics_city,
)

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)  # the service decodes at the wall clock
EVENTS, _ = logistics_city(START)
CITY = Partition(EVENTS)
TP = TopicPartition(CONTRACT.topic, 0)


class LoggingLake(L.Lake):
    def __init__(self, root: str, log: list[str]):
        super().__init__(root)
        self.log = log

    def create_exclusive(self, rel: str, obj: Any) -> bool:
        created = super().create_exclusive(rel, obj)
        if rel.startswith(L.COMMITS) and obj.get("anomalies"):
            self.log.append("commit with alerts")
        return created


class FakeProducer:
    def __init__(self, log: list[str], fail: bool = False):
        self.log, self.fail = log, fail
        self.sent: list[tuple[str, bytes | None, dict]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None):
        if self.fail and topic == ANOMALY_TOPIC:
            raise ConnectionError("broker unreachable")
        if topic == ANOMALY_TOPIC:
            self.sent.append((topic, key, orjson.loads(value)))
            self.log.append("alert")
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeConsumer:
    def __init__(self, log: list[str]):
        self.log = log
        self.seeks: dict[TopicPartition, int] = {}

    async def commit(self, offsets: dict) -> None:
        self.log.append("offset commit")

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset


def service_for(root: str, log: list[str], fail: bool = False) -> IngestService:
    service = type("Ingest", (IngestService,), {"settings": Settings(lake=root, detectors="all"), "bootstrap": "127.0.0.1:1"})()
    service.producer, service.consumer = FakeProducer(log, fail), FakeConsumer(log)
    return service


def records(start: int, stop: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=i, key=CITY.keys[i], value=CITY.values[i]) for i in range(start, stop)]


async def consume_all(service: IngestService, start: int = 0, log_path: str | None = None) -> None:
    sink = service.sinks[TP]
    for i in range(start, CITY.n, 400):
        service._process(TP, sink, records(i, min(i + 400, CITY.n)))
        await service.flush([TP])


def test_alerts_are_sent_after_their_flush_commits_and_before_the_offset_commit(tmp_path) -> None:
    root = str(tmp_path / "lake")
    log: list[str] = []

    async def run() -> FakeProducer:
        service = service_for(root, log)
        await service.acquire([TP])
        service.sinks[TP].lake = LoggingLake(root, log)
        await consume_all(service)
        return service.producer

    producer = asyncio.run(run())
    first = log.index("alert")
    assert log[first - 1] == "commit with alerts" and log[first + 1:].index("offset commit") >= 0
    assert all(log[i - 1] in ("commit with alerts", "alert") for i, e in enumerate(log) if e == "alert")
    bodies = [body for _, _, body in producer.sent]
    landed = landed_anomalies(root)
    assert sorted(b["anomaly_id"] for b in bodies) == sorted(landed["anomaly_id"])  # each landed alert once
    cold = [(key, body) for _, key, body in producer.sent if body["kind"] == COLD_CHAIN]
    assert len(cold) == 1 and cold[0][0] == REEFER.encode() and cold[0][1]["entity"] == REEFER
    assert cold[0][1]["window_start"].endswith("Z") and cold[0][1]["value"] == 12.0


def test_alerts_that_could_not_be_sent_are_sent_by_the_next_owner(tmp_path) -> None:
    root = str(tmp_path / "lake")
    log: list[str] = []

    async def first_owner() -> None:
        service = service_for(root, log, fail=True)
        await service.acquire([TP])
        await consume_all(service)  # lands everything; every send fails (logged, kept unsent)

    async def next_owner() -> FakeProducer:
        service = service_for(root, log)
        await service.acquire([TP])  # recovers: re-sends what the first owner landed
        assert service.consumer.seeks[TP] == CITY.n and service.sinks[TP].unsent == []
        return service.producer

    asyncio.run(first_owner())
    assert "alert" not in log
    producer = asyncio.run(next_owner())
    sent = sorted(body["anomaly_id"] for _, _, body in producer.sent)
    assert sent == sorted(landed_anomalies(root)["anomaly_id"]) and len(sent) >= 1
