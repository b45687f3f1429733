"""A flush sends its rejects to the DLQ before it lands (streams/ingest.py): a worker that dies
right after its flush committed has already sent every reject of it, although after a restart
it resumes past those records and never reads them again. No broker: the ingest service runs
with a fake producer and consumer, and its sink lands through a lake that 'dies' at the commit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from contracts import lake as L
from contracts.registry import CONTRACTS, DLQ_TOPIC
from contracts.settings import Settings
from contracts.windows import window_geometry
from streams.ingest import IngestService
from streams.simulator import generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine
from tests.support.faults import SimulatedCrash

CONTRACT = CONTRACTS["traffic"]
BROKEN = {3: b'{"detector_id": "broken', 7: b"not json", 11: b"[]"}


class CrashAfterCommitLake(L.Lake):
    """Creates the commit record (the flush is landed), then the process 'dies'."""

    def __init__(self, root: str, log: list[str]):
        super().__init__(root)
        self.log = log

    def create_exclusive(self, rel: str, obj: Any) -> bool:
        created = super().create_exclusive(rel, obj)
        self.log.append(f"commit {obj['first']}-{obj['last']}")
        raise SimulatedCrash(f"died after creating {rel} ({created})")


class FakeProducer:
    def __init__(self, log: list[str]):
        self.log = log
        self.sent: list[tuple[str, dict[str, bytes]]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]):
        self.sent.append((topic, dict(headers)))
        self.log.append(f"dlq {dict(headers)['offset'].decode()}")
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeConsumer:
    async def commit(self, offsets: dict) -> None:
        raise AssertionError("a flush that did not finish must not commit offsets")


def test_rejects_reach_the_dlq_before_the_flush_lands(tmp_path) -> None:
    root = str(tmp_path / "lake")
    events = list(generate(seed=1, rate=40, seconds=1, sources=("traffic",)))
    records = [SimpleNamespace(offset=i, key=e.key.encode(), value=BROKEN.get(i, orjson.dumps(e.record)))
               for i, e in enumerate(events)]
    log: list[str] = []
    tp = TopicPartition(CONTRACT.topic, 0)

    async def run() -> FakeProducer:
        service = type("Ingest", (IngestService,), {"settings": Settings(lake=root), "bootstrap": "127.0.0.1:1"})()
        service.producer, service.consumer = FakeProducer(log), FakeConsumer()
        sink = PartitionSink(CrashAfterCommitLake(root, log), CONTRACT, 0,
                             WindowEngine(window_geometry("traffic"), "traffic", 0))
        assert sink.recover() == 0
        service.sinks[tp] = sink
        service._process(tp, sink, records)
        with pytest.raises(SimulatedCrash):
            await service.flush([tp])
        return service.producer

    producer = asyncio.run(run())
    assert log[-1] == f"commit 0-{len(records) - 1}" and len(log) == len(BROKEN) + 1, log
    assert sorted(int(h["offset"]) for t, h in producer.sent if t == DLQ_TOPIC) == sorted(BROKEN)
    # The flush is landed: a restarted worker resumes after it and never re-reads the rejects.
    restarted = PartitionSink(L.Lake(root), CONTRACT, 0, WindowEngine(window_geometry("traffic"), "traffic", 0))
    assert restarted.recover() == len(records)
