"""The embedded broker helper: on a real Tansu (marker e2e) it answers, creates topics
idempotently and round-trips simulated events; start-up failures explain themselves."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from contracts.settings import SettingsError, load_settings
from streams.broker import (
    BrokerStartError,
    BrokerUnreachable,
    EmbeddedBroker,
    aiokafka_client_config,
    ensure_topics,
    kafka_client_config,
    list_topics,
)
from streams.simulator import SOURCES, encode, generate, produce


@pytest.mark.e2e
def test_fixture_broker_answers_metadata(kafka_bootstrap: str) -> None:
    assert isinstance(list_topics(kafka_bootstrap), list)


@pytest.mark.e2e
def test_ensure_topics_is_idempotent_and_waits_for_all_partitions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    existing = topic_factory(partitions=2)
    new = f"{existing}-new"
    ensure_topics(kafka_bootstrap, {existing: 2, new: 3})
    ensure_topics(kafka_bootstrap, {existing: 2, new: 3})
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert consumer.partitions_for_topic(existing) == {0, 1}
        assert consumer.partitions_for_topic(new) == {0, 1, 2}
    finally:
        consumer.close()


@pytest.mark.e2e
def test_produced_events_are_all_read_back(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topics = {s: topic_factory(partitions=3, prefix=s) for s in SOURCES}
    events = list(generate(seed=21, rate=1000, seconds=3, speedup=60))
    sent = produce(events, {"bootstrap_servers": kafka_bootstrap}, topics=topics)
    assert sent == dict(Counter(e.source for e in events))

    expected = Counter((topics[e.source], *encode(e)) for e in events)
    consumer = KafkaConsumer(
        *topics.values(),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    received: Counter[tuple[str, bytes, bytes]] = Counter()
    partitions_of_key: dict[bytes, set[int]] = {}
    deadline = time.monotonic() + 60
    try:
        while sum(received.values()) < len(events) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                for r in records:
                    received[(r.topic, r.key, r.value)] += 1
                    partitions_of_key.setdefault(r.key, set()).add(tp.partition)
    finally:
        consumer.close()
    assert received == expected
    # keyed by device id: each device's readings stay on one partition, in order
    assert all(len(p) == 1 for p in partitions_of_key.values())


def test_produce_to_nothing_raises_broker_unreachable() -> None:
    from streams.broker import free_port

    events = generate(seed=1, rate=10, seconds=1)
    with pytest.raises(BrokerUnreachable, match="cityflow broker"):
        produce(
            events, {"bootstrap_servers": f"127.0.0.1:{free_port()}", "bootstrap_timeout_ms": 500}
        )


@pytest.mark.e2e
def test_start_stop_is_idempotent_and_frees_the_process(tmp_path: Path) -> None:
    broker = EmbeddedBroker().start(log_path=tmp_path / "b.log", timeout=30)
    pid = broker.pid
    assert pid is not None and broker.running
    assert list_topics(broker.bootstrap) == []
    broker.stop()
    broker.stop()
    assert not broker.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "listening on" in (tmp_path / "b.log").read_text()


def test_missing_binary_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerStartError) as info:
        EmbeddedBroker().start(timeout=5)
    message = str(info.value)
    assert "/nonexistent/tansu" in message
    assert "CITYFLOW_KAFKA_BOOTSTRAP=host:port" in message


def test_binary_that_exits_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'fatal: storage engine unavailable' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerStartError) as info:
        EmbeddedBroker(binary=str(fake)).start(log_path=tmp_path / "b.log", timeout=10)
    message = str(info.value)
    assert "exited with code 3" in message
    assert "fatal: storage engine unavailable" in message
    assert "CITYFLOW_KAFKA_BOOTSTRAP" in message


def test_binary_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    broker = EmbeddedBroker(binary=str(fake))
    with pytest.raises(BrokerStartError, match="did not answer a metadata request"):
        broker.start(log_path=tmp_path / "b.log", timeout=1)
    assert not broker.running
    assert broker.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(broker.pid, 0)


def test_client_configs_from_settings(tmp_path: Path) -> None:
    plain = load_settings(kafka_bootstrap="k1:9092,k2:9092")
    assert kafka_client_config(plain) == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "security_protocol": "PLAINTEXT",
    }
    assert kafka_client_config(plain, bootstrap="127.0.0.1:1")["bootstrap_servers"] == [
        "127.0.0.1:1"
    ]

    sasl = load_settings(
        kafka_bootstrap="k:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    config = kafka_client_config(sasl)
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("u", "p")
    aio = aiokafka_client_config(sasl)
    assert aio["security_protocol"] == "SASL_SSL" and aio["ssl_context"] is not None
    assert "ssl_cafile" not in aio

    with pytest.raises(SettingsError, match="CITYFLOW_KAFKA_BOOTSTRAP"):
        kafka_client_config(load_settings(kafka_bootstrap=None))
    with pytest.raises(SettingsError, match="CITYFLOW_KAFKA_SASL_MECHANISM"):
        kafka_client_config(
            load_settings(kafka_bootstrap="k:1", kafka_security_protocol="SASL_PLAINTEXT")
        )
