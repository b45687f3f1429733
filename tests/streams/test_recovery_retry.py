"""A partition whose recovery raises is retried with backoff and then fails the ingest service:
the retry policy (fake sleep, no real waits), and the service reporting the failure on /health
and asking its host to stop. The worker process exiting non-zero is tested on a real broker in
test_worker_recovery_failure.py."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from contracts import lake as L
from contracts.settings import Settings
from streams.ingest import IngestService, RecoveryFailed, RecoveryRetry, recover_with_retry

T0, T1, T2 = (TopicPartition("city.traffic.v1", p) for p in range(3))


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_backoff_grows_by_factor_up_to_the_cap() -> None:
    assert RecoveryRetry(attempts=6, first_delay_s=0.5, factor=2, max_delay_s=3).delays() == [0.5, 1, 2, 3, 3]
    assert RecoveryRetry(attempts=1).delays() == []
    with pytest.raises(ValueError):
        RecoveryRetry(attempts=0)


def test_failing_partitions_are_retried_together_until_they_recover() -> None:
    failures = {T1: 2, T2: 1}  # attempts that raise before recovery succeeds
    calls: list[TopicPartition] = []
    errors: list[tuple[int, int, float | None]] = []

    def recover(tp: TopicPartition) -> None:
        calls.append(tp)
        if failures.get(tp, 0):
            failures[tp] -= 1
            raise OSError(f"lake unavailable for {tp.partition}")

    sleep = FakeSleep()
    asyncio.run(recover_with_retry([T0, T1, T2], recover, RecoveryRetry(attempts=4), sleep,
                                   on_error=lambda tp, attempt, exc, delay: errors.append((tp.partition, attempt, delay))))
    assert calls == [T0, T1, T2, T1, T2, T1]
    assert sleep.waits == [0.5, 1.0]  # one wait per round, not per partition
    assert errors == [(1, 1, 0.5), (2, 1, 0.5), (1, 2, 1.0)]


def test_a_partition_failing_every_attempt_raises_recovery_failed_naming_it() -> None:
    def recover(tp: TopicPartition) -> None:
        if tp == T2:
            raise ValueError("checkpoint is not JSON")

    sleep = FakeSleep()
    errors: list[float | None] = []
    with pytest.raises(RecoveryFailed) as failed:
        asyncio.run(recover_with_retry([T0, T2], recover, RecoveryRetry(attempts=3, first_delay_s=1, factor=3), sleep,
                                       on_error=lambda tp, attempt, exc, delay: errors.append(delay)))
    assert sleep.waits == [1, 3]  # bounded: attempts - 1 waits
    assert errors == [1, 3, None]
    assert [tp for tp, _ in failed.value.failures] == [T2]
    message = str(failed.value)
    assert "failed 3 time(s)" in message
    assert "topic city.traffic.v1 partition 2: ValueError: checkpoint is not JSON" in message


class FakeConsumer:
    def __init__(self) -> None:
        self.seeks: dict[TopicPartition, int] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset


def service_with_lake(root: str) -> IngestService:
    cls = type("Ingest", (IngestService,), {"settings": Settings(lake=root), "bootstrap": "127.0.0.1:1",
                                            "recovery_retry": RecoveryRetry(attempts=3, first_delay_s=0.0)})
    service = cls()
    service.consumer = FakeConsumer()
    return service


def test_an_unrecoverable_partition_fails_the_service_and_asks_to_stop_once(tmp_path) -> None:
    root = tmp_path / "lake"
    corrupt = root / L.checkpoint_path("city.traffic.v1", 1)
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"committed": 41, "consu')  # a torn checkpoint: recovery raises
    stops: list[RecoveryFailed] = []

    async def run() -> IngestService:
        service = service_with_lake(str(root))
        service.on_failure = stops.append
        await service.acquire([T0, T1])
        await service.acquire([T1])  # a later assignment does not ask again
        return service

    service = asyncio.run(run())
    assert len(stops) == 1 and service.failure is stops[0]
    assert [tp for tp, _ in service.failure.failures] == [T1]
    assert "topic city.traffic.v1 partition 1: CorruptLakeFile: " in str(service.failure)
    assert "city.traffic.v1+1.json is not valid JSON" in str(service.failure)
    assert set(service.sinks) == {T0}  # nothing consumes partition 1
    assert service.assignments_seen == 0  # never ready
    assert service.health_problem is not None and "partition 1" in service.health_problem


def test_health_reports_a_failing_recovery_while_it_retries(tmp_path) -> None:
    seen: list[str | None] = []

    async def run() -> IngestService:
        service = service_with_lake(str(tmp_path / "lake"))
        recover = service._recover

        def flaky(tp: TopicPartition) -> int:
            seen.append(service.health_problem)
            if len(seen) == 1:
                raise OSError("object store timed out")
            return recover(tp)

        service._recover = flaky  # type: ignore[method-assign]
        await service.acquire([T0])
        return service

    service = asyncio.run(run())
    assert seen[0] is None and seen[1] is not None and "object store timed out" in seen[1]
    assert service.health_problem is None and service.failure is None
    assert set(service.sinks) == {T0} and service.assignments_seen == 1
