"""streams/fetch.py on the real broker: a consumer marked with `raw_value` gets records with the
same offset, key and value as aiokafka's ConsumerRecords, with compressed and uncompressed
batches, keys, tombstones and headers; every other consumer still gets ConsumerRecords; and an
aiokafka whose internals changed is left alone."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.consumer import fetcher
from aiokafka.structs import ConsumerRecord

from streams import fetch

pytestmark = pytest.mark.e2e

N = 3000


async def _produce(bootstrap: str, topic: str) -> None:
    for compression in (None, "lz4"):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=compression, linger_ms=5)
        await producer.start()
        try:
            for i in range(N):
                key = None if i % 7 == 0 and i % 101 else f"dev-{i % 50}".encode()
                value = None if i % 101 == 0 else b'{"i": %d}' % i
                await producer.send(topic, value, key=key, partition=i % 2,
                                    headers=[("h", b"x")] if i % 13 == 0 else None)
            await producer.flush()
        finally:
            await producer.stop()


async def _consume(bootstrap: str, topic: str, **kwargs) -> dict[int, list]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", max_poll_records=1000, **kwargs)
    await consumer.start()
    try:
        got: dict[int, list] = {0: [], 1: []}
        while sum(map(len, got.values())) < 2 * N:
            batches = await consumer.getmany(timeout_ms=2000)
            assert batches, f"no records after {sum(map(len, got.values()))}"
            for tp, records in batches.items():
                got[tp.partition].extend(records)
        return got
    finally:
        await consumer.stop()


def test_raw_records_carry_what_consumer_records_carry(kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=2, prefix="rawfetch")
    asyncio.run(_produce(kafka_bootstrap, topic))
    assert fetch.install()
    raw = asyncio.run(_consume(kafka_bootstrap, topic, value_deserializer=fetch.raw_value))
    plain = asyncio.run(_consume(kafka_bootstrap, topic))
    for partition in (0, 1):
        assert not any(isinstance(r, ConsumerRecord) for r in raw[partition])
        assert all(isinstance(r, ConsumerRecord) for r in plain[partition])  # Faust's consumer
        assert [(r.offset, r.key, r.value) for r in raw[partition]] == \
               [(r.offset, r.key, r.value) for r in plain[partition]]
        assert [r.offset for r in raw[partition]] == list(range(N))
    assert sum(r.value is None for r in raw[0]) > 0 and sum(r.key is None for r in raw[1]) > 0


def test_install_is_idempotent_and_leaves_a_changed_aiokafka_alone(monkeypatch, caplog):
    assert fetch.install() and fetch.install()
    assert fetcher.PartitionRecords is fetch._RawPartitionRecords

    class Reworked:  # what a future aiokafka might have there instead
        pass

    monkeypatch.setattr(fetcher, "PartitionRecords", Reworked)
    with caplog.at_level(logging.WARNING, logger="streams.fetch"):
        assert not fetch.install()
    assert fetcher.PartitionRecords is Reworked
    assert "fetcher internals changed" in caplog.text
    assert fetch.raw_value(b"x") == b"x"  # the fallback is a plain identity deserializer
