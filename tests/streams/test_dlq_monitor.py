"""The worker's DLQ monitor counts dead-lettered records by source topic and reason."""

from __future__ import annotations

from streams.dlq_monitor import DLQ_OBSERVED, DlqTally


def test_tally_counts_by_topic_and_reason_and_drains() -> None:
    before = DLQ_OBSERVED.labels("city.wifi.v1", "bad_enum")._value.get()
    tally = DlqTally()
    for reason in ("bad_enum", "bad_enum", "not_json"):
        tally.add([("reason", reason.encode()), ("source_topic", b"city.wifi.v1"), ("offset", b"1")])
    tally.add({"reason": b"empty", "source_topic": b"city.traffic.v1"})
    tally.add(None)
    assert tally.drain() == ("city.wifi.v1/bad_enum=2 ?/?=1 city.traffic.v1/empty=1 city.wifi.v1/not_json=1")
    assert tally.drain() == ""
    assert DLQ_OBSERVED.labels("city.wifi.v1", "bad_enum")._value.get() == before + 2
