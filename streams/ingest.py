"""Batch-native ingest of the high-volume source topics inside the Faust worker.

A mode.Service owns an aiokafka consumer in the ingest consumer group: `getmany` record
batches go as raw bytes to pure code (decode, validate, window) and are landed per partition by
a PartitionSink; offsets are committed only after a flush is durable. On revoke the sinks flush
and commit; on assign they recover from the lake and the consumer seeks to landed + 1.

A partition whose recovery raises is retried with backoff (RecoveryRetry); if it still fails,
the service records the RecoveryFailed and asks its host to stop the worker (`on_failure`), which
then exits non-zero naming the partition and the cause. A worker never stays up with a partition
it owns but does not consume: nobody else would consume it either, as the group thinks it is
served.

A flush sends its rejects to the DLQ *before* it lands (DLQ, then land, then commit). Landing
moves the resume point past those records, so a worker that died between landing and sending
would never read them again and their DLQ records would be lost; sent first, a crash anywhere
only re-sends them after the restart. The price is duplicates on the DLQ topic when the flush
is then fenced (the worker that won landed and sent the same rejects): the DLQ is
at-least-once, and (source_topic, partition, offset) in the headers is the id to dedupe by.

Alerts go the other way round: DLQ, land, *then* produce the flush's alerts to
`city.anomalies.v1`, then commit. An alert exists only once it is landed (a fenced flush's
alerts were never landed and are not sent: the winner lands and sends its own), so it is sent
after the commit point. The landed-but-unsent alerts are named in the partition's snapshot
(`alerts_unsent`, from the commit record if the snapshot was not written yet) until the producer
acknowledged them, so a worker that died in between re-sends them after the restart (on
assignment). At-least-once too: `anomaly_id` in the body is the id to dedupe by.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from contracts.decode import DecodeLimits
from contracts.duplicates import DuplicateIndex, rebuild_duplicate_index
from contracts.lake import Lake
from contracts.quarantine import DLQ_MAX_VALUE_BYTES
from contracts.registry import ANOMALY_TOPIC, CONTRACTS, DLQ_TOPIC, contract_for_topic
from contracts.schema import Contract
from contracts.settings import Settings
from contracts.windows import window_geometry
from streams import metrics
from streams.alerts import alert_messages, selected_detectors, selected_district_kinds
from streams.batch import ProcessedBatch, RecordBatch, process_records
from streams.broker import aiokafka_client_config
from streams.detectors.overrides import changed_fields, detector_configs
from streams.district_stage import StageTicker, unlanded_partitions
from streams.fetch import install as install_raw_fetch
from streams.fetch import raise_gc_threshold, raw_value
from streams.sink import FlushFenced, PartitionSink
from streams.windows import WindowEngine

log = logging.getLogger(__name__)


def _count_by(table, column: str) -> dict[str, int]:
    counts = table.group_by(column).aggregate([(column, "count")])
    return dict(zip(counts.column(column).to_pylist(), counts.column(f"{column}_count").to_pylist(), strict=True))


def recover_partition(
    lake: Lake, contract: Contract, partition: int, settings: Settings | None = None
) -> tuple[PartitionSink, DuplicateIndex, int]:
    """A partition's sink and duplicate index as of its last landed offset, and the offset to
    resume at: window state and duplicate fingerprints are both rebuilt from the raw lake."""
    engine = WindowEngine(window_geometry(contract.source, settings), contract.source, partition)
    detectors = (selected_detectors(settings.detectors, settings.detector_overrides, settings.detectors_tz)
                 if settings is not None else None)
    sink = PartitionSink(lake, contract, partition, engine, detectors=detectors)
    next_offset = sink.recover()
    duplicates = rebuild_duplicate_index(lake, contract, partition, sink.committed, engine.max_ts,
                                         engine.spec.horizon_ms)
    return sink, duplicates, next_offset


class _Buffered(Protocol):
    @property
    def buffered_rows(self) -> int: ...

    @property
    def buffered_age(self) -> float: ...


def flush_due(sinks: Mapping[TopicPartition, _Buffered], flush_rows: int, flush_seconds: float,
              drained: bool = False) -> list[TopicPartition]:
    """The partitions to land now: buffers that reached flush_rows or flush_seconds; or every
    non-empty buffer when a backlog was just `drained` (see BacklogTracker)."""
    buffered = [(tp, sink) for tp, sink in sinks.items() if sink.buffered_rows]
    if drained:
        return [tp for tp, _ in buffered]
    return [tp for tp, sink in buffered if sink.buffered_rows >= flush_rows or sink.buffered_age >= flush_seconds]


class BacklogTracker:
    """Tells when the worker has just drained a backlog: a fetch came back empty after at least
    `threshold` records were fetched since the previous empty fetch (0 = never). A steady or
    bursty live stream fetches less than that between its idle moments, so it keeps landing on
    its flush interval and makes no more files.

    The last of a backlog can trail the first empty fetch (a partition's fetch answered late:
    measured on the embedded broker, 85,767 records one second after a drain). So for
    `settle_s` after a drain, an empty fetch after any records also counts as drained; two
    empty fetches in a row (nothing trailing) end that early."""

    def __init__(self, threshold: int, settle_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.settle_s = settle_s
        self.clock = clock
        self.since_idle = 0
        self._settle_until = 0.0

    def fetched(self, records: int) -> bool:
        """Record one fetch's size; True if it was empty and ended a backlog (or its tail)."""
        if records:
            self.since_idle += records
            return False
        now = self.clock()
        backlog = bool(self.threshold) and self.since_idle >= self.threshold
        tail = self.since_idle > 0 and now < self._settle_until
        if backlog:
            self._settle_until = now + self.settle_s
        elif not self.since_idle:
            self._settle_until = 0.0
        self.since_idle = 0
        return backlog or tail


@dataclass(frozen=True)
class RecoveryRetry:
    """How a failing partition recovery is retried: `attempts` in all, waiting `first_delay_s`
    after the first failure and `factor` times longer after each next one, at most
    `max_delay_s`. The default gives up after ~3.5 s of waiting, well inside the group's
    session timeout (the rebalance listener holds the assignment while it waits).

        >>> RecoveryRetry(attempts=4, first_delay_s=0.5, factor=2).delays()
        [0.5, 1.0, 2.0]
    """

    attempts: int = 4
    first_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay_s < 0 or self.factor < 1 or self.max_delay_s < 0:
            raise ValueError(f"invalid recovery retry policy {self}")

    def delays(self) -> list[float]:
        """The waits between attempts (one fewer than attempts)."""
        return [min(self.first_delay_s * self.factor**i, self.max_delay_s) for i in range(self.attempts - 1)]


class RecoveryFailed(RuntimeError):
    """Partitions whose recovery from the lake still failed after every attempt."""

    def __init__(self, failures: list[tuple[TopicPartition, BaseException]], attempts: int):
        self.failures = failures
        self.attempts = attempts
        parts = [f"topic {tp.topic} partition {tp.partition}: {type(exc).__name__}: {exc}" for tp, exc in failures]
        super().__init__(f"recovery from the lake failed {attempts} time(s) for " + "; ".join(parts))


async def recover_with_retry(
    tps: Iterable[TopicPartition],
    recover: Callable[[TopicPartition], object],
    policy: RecoveryRetry,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_error: Callable[[TopicPartition, int, Exception, float | None], None] | None = None,
) -> None:
    """Call `recover` for every partition; retry the ones that raised, all together, after each
    of the policy's delays; raise RecoveryFailed naming those that failed every attempt.
    `on_error(tp, attempt, exc, next_delay)` hears of each failure (next_delay None: the last)."""
    pending = list(tps)
    delays = policy.delays()
    for attempt in range(1, policy.attempts + 1):
        failed: list[tuple[TopicPartition, BaseException]] = []
        for tp in pending:
            try:
                recover(tp)
            except Exception as exc:  # noqa: BLE001 - whatever the cause: retried, then stops the worker
                failed.append((tp, exc))
                if on_error is not None:
                    on_error(tp, attempt, exc, delays[attempt - 1] if attempt < policy.attempts else None)
        if not failed:
            return
        if attempt == policy.attempts:
            raise RecoveryFailed(failed, attempt)
        await sleep(delays[attempt - 1])
        pending = [tp for tp, _ in failed]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: IngestService):
        self.service = service

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.service.release(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.service.acquire(list(assigned))


class IngestService(mode.Service):
    """Consumes source topics with getmany and lands them exactly once."""

    settings: Settings
    bootstrap: str
    sources: tuple[str, ...] = tuple(CONTRACTS)
    owner: mode.ServiceT | None = None  # the Faust app hosting this service
    # Called once when a partition cannot be recovered: the host stops the worker. It must not
    # wait for the stop (it runs inside the consumer's rebalance listener or the consume task).
    on_failure: Callable[[RecoveryFailed], None] | None = None
    recovery_retry: RecoveryRetry = RecoveryRetry()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lake = Lake(self.settings.lake)
        # unknown kinds or bad CITYFLOW_DETECTOR_<KIND> overrides stop the worker at start
        detectors = selected_detectors(self.settings.detectors, self.settings.detector_overrides,
                                       self.settings.detectors_tz)
        changed = changed_fields({k: d.config for k, d in detectors.items()})
        log.info("detectors kinds=%s settings=%s", ",".join(detectors) or "none",
                 json.dumps(changed, default=str, sort_keys=True) if changed else "defaults")
        self.sinks: dict[TopicPartition, PartitionSink] = {}
        self.duplicates: dict[TopicPartition, DuplicateIndex] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._freshest: dict[str, float] = {}  # newest landed event time per source (seconds)
        self.producer: AIOKafkaProducer | None = None
        self.assignments_seen = 0
        self.limits = DecodeLimits(
            max_future=timedelta(seconds=self.settings.max_event_future_s),
            max_age=timedelta(days=self.settings.max_event_age_days),
        )
        self._pending_dlq: dict[TopicPartition, list[tuple[ProcessedBatch, RecordBatch]]] = {}
        self._landing = asyncio.Lock()  # flush, acquire and release never interleave
        self._backlog = BacklogTracker(self.settings.idle_flush_rows)
        self.failure: RecoveryFailed | None = None  # set once recovery gave up; the worker stops
        self.recovery_errors: dict[TopicPartition, str] = {}  # partitions failing recovery now
        kinds = selected_district_kinds(self.settings.detectors)
        configs = detector_configs(self.settings.detector_overrides)  # CITYFLOW_DETECTOR_<KIND> for these too
        self.district = (StageTicker(self.lake, self.settings.partitions, kinds, {k: configs[k] for k in kinds})
                         if kinds else None)

    @property
    def health_problem(self) -> str | None:
        """Why this worker is not healthy (a partition fails or failed recovery), or None."""
        if self.failure is not None:
            return str(self.failure)
        if self.recovery_errors:
            return "recovery failing, retrying: " + "; ".join(
                f"{tp.topic}:{tp.partition} {err}" for tp, err in sorted(self.recovery_errors.items()))
        if self.district is not None and self.district.problem:
            return self.district.problem
        return None

    def _owner_stopping(self) -> bool:
        """Faust starts extra services at the end of its own start-up, so a SIGTERM can begin
        the app's stop before this service starts or while it joins the group; the app then
        never stops it. Checked after each step of `on_start`."""
        return self.owner is not None and self.owner.should_stop

    async def on_start(self) -> None:
        install_raw_fetch()
        raise_gc_threshold(self.settings.gc_young_threshold)
        if self._owner_stopping():
            await self.stop()
            return
        s = self.settings
        cfg = aiokafka_client_config(s, self.bootstrap)
        self.producer = AIOKafkaProducer(**cfg, acks="all", linger_ms=20)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **cfg,
            group_id=f"{s.group_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            max_poll_records=s.fetch_max_records,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            value_deserializer=raw_value,  # records with offset/key/value only: streams/fetch.py
        )
        topics = [CONTRACTS[src].topic for src in self.sources]
        self.consumer.subscribe(topics, listener=_Rebalance(self))
        await self.consumer.start()
        if self._owner_stopping():
            await self.stop()  # closes both clients (on_stop)
            return
        log.info("ingest started topics=%s group=%s-ingest", ",".join(topics), s.group_id)

    async def on_stop(self) -> None:
        if self.consumer is not None:
            try:
                await self.release(list(self.sinks))
            finally:
                await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()
        log.info("ingest stopped")

    @mode.Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        s = self.settings
        while not self.should_stop:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=s.fetch_max_records)
            for tp, records in batches.items():
                sink = self.sinks.get(tp)
                if sink is None or not records:
                    continue  # revoked while fetching; the new owner re-reads from the lake
                self._process(tp, sink, records)
            drained = self._backlog.fetched(sum(map(len, batches.values())))
            due = flush_due(self.sinks, s.flush_rows, s.flush_seconds, drained)
            if due:
                await self.flush(due)

    @mode.Service.task
    async def _district_stage(self) -> None:
        """The district kinds (streams/district_stage.py), every district_stage_interval_s, for
        the kinds whose first topic's partition 0 this worker owns; then their alerts go to the
        anomalies topic (landed first, like a partition's)."""
        ticker = self.district
        if ticker is None:
            return
        while not self.should_stop:
            await self.sleep(self.settings.district_stage_interval_s)
            kinds = ticker.mine({tp.topic for tp in self.sinks if tp.partition == 0})
            if not kinds:
                continue
            await asyncio.to_thread(ticker.tick, kinds, await self._empty_partitions(kinds))
            for kind in kinds:
                await self._send_district_alerts(ticker, kind)

    async def _empty_partitions(self, kinds: list[str]) -> set[tuple[str, int]]:
        """Of the kinds' partitions with nothing landed, those holding no record (end offset 0;
        see StageTicker). A failed query counts none as empty: the stage waits, and says so."""
        unlanded = await asyncio.to_thread(unlanded_partitions, self.lake, kinds, self.settings.partitions)
        if not unlanded or self.consumer is None:
            return set()
        try:
            ends = await self.consumer.end_offsets([TopicPartition(t, p) for t, p in unlanded])
        except Exception as exc:  # noqa: BLE001 - the stage then waits for them (logged as held back)
            log.warning("district stage: end offsets of %d unlanded partition(s) unknown: %s", len(unlanded), exc)
            return set()
        return {(tp.topic, tp.partition) for tp, end in ends.items() if end == 0}

    async def _send_district_alerts(self, ticker: StageTicker, kind: str) -> None:
        if self.producer is None:
            return
        try:
            paths, alerts = await asyncio.to_thread(ticker.stage.unsent, kind)
            if not paths:
                return
            futures = [await self.producer.send(ANOMALY_TOPIC, value=value, key=key)
                       for key, value in alert_messages(alerts)]
            await asyncio.gather(*futures)
            await asyncio.to_thread(ticker.stage.sent, kind, paths)
        except Exception as exc:  # noqa: BLE001 - landed alerts stay unsent in the stage's checkpoint: retried
            log.warning("sending district alerts kind=%s failed, retrying next tick: %s", kind, exc)
            return
        metrics.ANOMALIES_SENT.labels(kind.split(".", 1)[0]).inc(alerts.num_rows)

    def _process(self, tp: TopicPartition, sink: PartitionSink, records) -> None:
        # Skip anything at or below the landed offset (re-delivery after a seek race).
        records = [r for r in records if r.offset > sink.committed] if records[0].offset <= sink.committed else records
        if not records:
            return
        rb = RecordBatch(tp.topic, tp.partition, [r.offset for r in records], [r.key for r in records],
                         [r.value for r in records])
        processed = process_records(sink.contract, rb, limits=self.limits, duplicates=self.duplicates.get(tp))
        out = sink.add(processed)
        src = sink.contract.source
        metrics.CONSUMED.labels(src, tp.partition).inc(processed.consumed)
        if processed.rejects:
            self._pending_dlq.setdefault(tp, []).append((processed, rb))
        if out.late_events.num_rows:
            metrics.LATE.labels(src).inc(out.late_events.num_rows)
        if out.windows.num_rows:
            corrections = int(out.windows.column("is_correction").to_numpy(zero_copy_only=False).sum())
            metrics.WINDOWS.labels(src, "correction").inc(corrections)
            metrics.WINDOWS.labels(src, "final").inc(out.windows.num_rows - corrections)
        if sink.engine.watermark is not None:
            metrics.WATERMARK.labels(src, tp.partition).set(sink.engine.watermark / 1000)
        metrics.BUFFERED.labels(src, tp.partition).set(sink.buffered_rows)

    def _landed_gauges(self, tp: TopicPartition, sink: PartitionSink, next_offset: int) -> None:
        """Lag (last high watermark seen minus the next offset to land) and freshness."""
        src = sink.contract.source
        highwater = getattr(self.consumer, "highwater", None)  # the consumer's last fetch told it
        high = highwater(tp) if highwater is not None else None
        if high is not None:
            metrics.LAG.labels(src, tp.partition).set(max(high - next_offset, 0))
        newest = sink.engine.max_ts / 1000 if sink.engine.watermark is not None else None
        if newest is not None and newest > self._freshest.get(src, float("-inf")):
            self._freshest[src] = newest
            metrics.LAST_LANDED_EVENT.labels(src).set(newest)

    async def flush(self, tps: list[TopicPartition]) -> None:
        """Send the rejects of these partitions to the DLQ, land their buffers, commit offsets."""
        async with self._landing:
            await self._flush_owned(tps, resync=True)

    async def _flush_owned(self, tps: list[TopicPartition], resync: bool) -> None:
        """Flush the partitions of `tps` still owned (hold self._landing): per partition its
        rejects go to the DLQ first and only then does the sink land (see the module docstring:
        landing first could lose DLQ records for good in a crash; sending first at worst
        duplicates them, also when the flush is then fenced).

        A partition whose flush is fenced (another worker landed those offsets first) is
        recovered from the lake and re-sought if `resync`, else just dropped (it is being
        released anyway)."""
        assert self.consumer is not None
        commits: dict[TopicPartition, int] = {}
        for tp in tps:
            sink = self.sinks.get(tp)
            if sink is None:
                continue  # released meanwhile: its buffer was flushed by release()
            await self._send_dlq(tp)  # before landing: see the docstring
            t0 = time.perf_counter()
            try:
                result = sink.flush()
            except FlushFenced as exc:
                metrics.FENCED.labels(sink.contract.source).inc()
                log.warning("flush fenced topic=%s partition=%d: %s", tp.topic, tp.partition, exc)
                if resync and self.sinks.get(tp) is sink:
                    del self.sinks[tp]  # stale: nothing consumes it unless recovery succeeds
                    await self._recover_all([tp])
                continue
            if result is None:
                continue
            src = sink.contract.source
            metrics.FLUSH_SECONDS.labels(src).observe(time.perf_counter() - t0)
            for table, n in result.rows.items():
                metrics.LANDED.labels(table, src).inc(n)
            if result.anomalies is not None:
                for kind, n in _count_by(result.anomalies, "kind").items():
                    metrics.ANOMALIES.labels(src, kind).inc(n)
            await self._send_alerts(tp, sink)  # after landing: see the module docstring
            metrics.BUFFERED.labels(src, tp.partition).set(0)
            self._landed_gauges(tp, sink, result.last + 1)
            commits[tp] = result.last + 1
            log.debug("flushed topic=%s partition=%d offsets=%d-%d rows=%s", tp.topic, tp.partition,
                      result.first, result.last, result.rows)
        if commits:
            try:
                await self.consumer.commit(commits)
            except Exception as exc:  # noqa: BLE001 - the lake is the source of truth for offsets
                log.warning("offset commit failed (lake checkpoint stands, resume is unaffected): %s", exc)

    async def _send_dlq(self, tp: TopicPartition) -> None:
        pending = self._pending_dlq.pop(tp, [])
        if not pending or self.producer is None:
            return
        futures = []
        for processed, rb in pending:
            src = contract_for_topic(rb.topic).source
            for r in processed.rejects:
                metrics.DLQ.labels(src, r.reason).inc()
                headers = [
                    ("reason", r.reason.encode()), ("field", r.field.encode()),
                    ("detail", r.detail.encode()), ("source_topic", rb.topic.encode()),
                    ("partition", str(rb.partition).encode()), ("offset", str(rb.offsets[r.position]).encode()),
                    ("value_bytes", str(len(rb.values[r.position] or b"")).encode()),
                ]
                value = rb.values[r.position] or b""
                futures.append(await self.producer.send(DLQ_TOPIC, value=value[:DLQ_MAX_VALUE_BYTES], key=rb.keys[r.position], headers=headers))
        if futures:
            await asyncio.gather(*futures)

    async def _send_alerts(self, tp: TopicPartition, sink: PartitionSink) -> None:
        """Produce the partition's landed, unsent alerts to the anomalies topic; once the
        producer acknowledged them, the sink forgets them. A failed send is logged and retried
        after the next flush (or by whoever recovers the partition)."""
        if not sink.unsent or self.producer is None:
            return
        paths, alerts = sink.unsent_alerts()
        try:
            futures = [await self.producer.send(ANOMALY_TOPIC, value=value, key=key)
                       for key, value in alert_messages(alerts)]
            await asyncio.gather(*futures)
        except Exception as exc:  # noqa: BLE001 - landed alerts stay unsent in the snapshot: retried
            log.warning("sending %d alert(s) of topic=%s partition=%d failed, retrying later: %s",
                        alerts.num_rows, tp.topic, tp.partition, exc)
            return
        metrics.ANOMALIES_SENT.labels(sink.contract.source).inc(alerts.num_rows)
        sink.alerts_sent(paths)

    def _recover(self, tp: TopicPartition) -> int:
        """(Re)build a partition's sink from the lake and seek the consumer to its resume offset."""
        assert self.consumer is not None
        t0 = time.perf_counter()
        self._pending_dlq.pop(tp, None)  # rejects of an unlanded buffer are re-read after the seek
        sink, self.duplicates[tp], next_offset = recover_partition(
            self.lake, contract_for_topic(tp.topic), tp.partition, self.settings)
        self.sinks[tp] = sink
        self.consumer.seek(tp, next_offset)
        log.info("assigned topic=%s partition=%d resume_offset=%d recovery_s=%.2f",
                 tp.topic, tp.partition, next_offset, time.perf_counter() - t0)
        return next_offset

    async def _recover_all(self, tps: list[TopicPartition]) -> None:
        """Recover partitions, retrying failures with backoff; if one still fails, fail the
        service (hold self._landing)."""

        def on_error(tp: TopicPartition, attempt: int, exc: Exception, delay: float | None) -> None:
            self.recovery_errors[tp] = f"{type(exc).__name__}: {exc}"
            log.warning("recovery failed topic=%s partition=%d attempt=%d/%d error=%s: %s%s",
                        tp.topic, tp.partition, attempt, self.recovery_retry.attempts, type(exc).__name__,
                        exc, "" if delay is None else f"; retrying in {delay:.1f}s",
                        exc_info=delay is None)

        def recover(tp: TopicPartition) -> None:
            self._recover(tp)
            self.recovery_errors.pop(tp, None)

        try:
            await recover_with_retry(tps, recover, self.recovery_retry, on_error=on_error)
        except RecoveryFailed as exc:
            self._fail(exc)

    def _fail(self, exc: RecoveryFailed) -> None:
        """Give up: remember why (/health reports it) and have the host stop the worker."""
        if self.failure is not None:
            return
        self.failure = exc
        log.error("stopping the worker: %s", exc)
        if self.on_failure is not None:
            self.on_failure(exc)

    async def acquire(self, tps: list[TopicPartition]) -> None:
        """On assignment: recover each partition's landed offset and window state, then seek.
        A partition that cannot be recovered fails the service (see the module docstring)."""
        async with self._landing:
            await self._recover_all(tps)
            for tp in tps:  # alerts a previous owner landed but did not get onto the topic
                sink = self.sinks.get(tp)
                if sink is not None and sink.unsent:
                    await self._send_alerts(tp, sink)
            if self.failure is None:
                self.assignments_seen += 1
            metrics.ASSIGNED.set(len(self.sinks))

    async def release(self, tps: list[TopicPartition]) -> None:
        """On revoke or stop: land what is buffered and commit, then forget the partitions.

        Holds the landing lock, so a flush the consume loop has started finishes first and no
        flush of these partitions starts after they are released."""
        async with self._landing:
            owned = [tp for tp in tps if tp in self.sinks]
            if owned:
                await self._flush_owned(owned, resync=False)
            for tp in owned:
                del self.sinks[tp]
                self.duplicates.pop(tp, None)
                self._pending_dlq.pop(tp, None)
                log.info("released topic=%s partition=%d", tp.topic, tp.partition)
            metrics.ASSIGNED.set(len(self.sinks))
