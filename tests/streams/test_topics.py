"""`cityflow topics create|describe|lag` against a real (embedded) broker of the test's own:
create is idempotent and reports a topic with another partition count; describe shows what was
configured; lag shows the group's committed offset, the lake's landed offset and the end offset."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from contracts import lake as L
from contracts.registry import ANOMALY_TOPIC, CONTRACTS, DLQ_TOPIC
from jobs.commands import topics as cmd
from streams.broker import ensure_topics
from tests.support.lake_checks import Records

ALL_TOPICS = [c.topic for c in CONTRACTS.values()] + [DLQ_TOPIC, ANOMALY_TOPIC]


@pytest.fixture
def env(fresh_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CITYFLOW_KAFKA_BOOTSTRAP", fresh_broker)
    monkeypatch.setenv("CITYFLOW_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("CITYFLOW_PARTITIONS", "3")
    monkeypatch.setenv("CITYFLOW_TOPIC_RETENTION_HOURS", "48")
    return fresh_broker


def table_rows(out: str) -> dict[str, list[str]]:
    """The rows of a format_rows table, by first column."""
    lines = out.strip().splitlines()
    return {line.split()[0]: line.split() for line in lines[2:] if line.strip() and not line.startswith("total")}


@pytest.mark.e2e
def test_create_is_idempotent_and_describe_shows_the_configuration(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.run_create(argparse.Namespace()) == 0
    rows = table_rows(capsys.readouterr().out)
    assert {t: rows[t][1] for t in ALL_TOPICS} == {t: "created" for t in ALL_TOPICS}

    assert cmd.run_create(argparse.Namespace()) == 0  # a second run creates nothing
    rows = table_rows(capsys.readouterr().out)
    assert {t: rows[t][1] for t in ALL_TOPICS} == {t: "exists" for t in ALL_TOPICS}

    assert cmd.run_describe(argparse.Namespace()) == 0
    rows = table_rows(capsys.readouterr().out)
    for t in ALL_TOPICS:
        assert rows[t][1:4] == ["3", "1", "ok"], rows[t]
        assert f"retention.ms={48 * 3_600_000}" in " ".join(rows[t])


@pytest.mark.e2e
def test_a_topic_with_another_partition_count_is_reported_not_used(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    traffic = CONTRACTS["traffic"].topic
    ensure_topics(env, {traffic: 2})
    assert cmd.run_create(argparse.Namespace()) == 1
    out, err = capsys.readouterr()
    rows = table_rows(out)
    assert rows[traffic][1] == "mismatch" and "has 2 partitions, configured 3" in out
    assert all(rows[t][1] == "created" for t in ALL_TOPICS if t != traffic)
    assert err.strip() == f"error: 1 topic(s) not as configured: {traffic}"


@pytest.mark.e2e
def test_lag_shows_committed_landed_and_end_offsets(env: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.run_create(argparse.Namespace()) == 0
    traffic = CONTRACTS["traffic"].topic
    producer = KafkaProducer(bootstrap_servers=env)
    for i in range(40):
        producer.send(traffic, b"{}", partition=0)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=env, group_id="cityflow-ingest", enable_auto_commit=False)
    consumer.commit({TopicPartition(traffic, 0): OffsetAndMetadata(25, None, -1)})
    consumer.close()
    records = Records(partition=0, n=30, seed=1)  # the lake has landed partition 0 up to offset n - 1
    records.land(L.Lake(str(tmp_path / "lake")), batch_size=10)
    capsys.readouterr()

    assert cmd.run_lag(argparse.Namespace(group=None)) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.startswith("cityflow-ingest")]
    by_partition = {(row[1], int(row[2])): row[3:] for row in lines}
    assert len(by_partition) == len(CONTRACTS) * 3  # every partition of every source topic
    committed, landed, end, lag = by_partition[(traffic, 0)]
    assert committed == "25" and landed == str(records.n)
    assert int(end) >= 1 and int(lag) == max(int(end) - records.n, 0)
    assert by_partition[(traffic, 1)][:2] == ["-", "-"]  # nothing committed or landed there
    assert "total lag (end - landed)" in out
