"""Helpers for end-to-end tests on a real broker: a producer that records the Kafka partition
and offset of every event it sends (paced, in a thread, so workers can be killed meanwhile), and
the checks that the lake holds exactly those events, once, with windows equal to a recompute."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import duckdb
import pandas as pd

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS
from contracts.windows import window_view
from streams.simulator import SimEvent, encode
from tests.support.oracle import assert_frames_close, final_windows
from warehouse.accounting import partition_accounts
from warehouse.db import build_warehouse

WINDOW_VIEWS = {source: window_view(source) for source in CONTRACTS}


def source_partitions(partitions_per_topic: int = 4) -> int:
    """Partitions of all source topics together (one topic per contract)."""
    return len(CONTRACTS) * partitions_per_topic
# Fast group protocol for tests (docs/architecture.md, broker quirk 2: a join takes ~rebalance timeout / 2).
FAST_GROUP = {"CITYFLOW_SESSION_TIMEOUT_S": "6", "CITYFLOW_REBALANCE_TIMEOUT_S": "4",
              "CITYFLOW_HEARTBEAT_INTERVAL_S": "0.5"}


class TrackedProducer(threading.Thread):
    """Sends `events` evenly over `seconds` (kafka-python, acks=all, keyed by device id) and
    records where each one went: `produced()` is a frame of source, key, ts_ms, partition,
    offset and the record."""

    def __init__(self, bootstrap: str, events: list[SimEvent], seconds: float, chunks: int = 50):
        super().__init__(daemon=True, name="tracked-producer")
        self.bootstrap, self.events, self.seconds, self.chunks = bootstrap, events, seconds, chunks
        self.sent = 0
        self.error: BaseException | None = None
        self._meta: list[tuple[int, int]] = []

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20,
                                 compression_type="lz4", batch_size=256 * 1024)
        try:
            futures = []
            step = max(1, len(self.events) // self.chunks)
            t0 = time.monotonic()
            for i in range(0, len(self.events), step):
                for e in self.events[i:i + step]:
                    key, value = encode(e)
                    futures.append(producer.send(CONTRACTS[e.source].topic, key=key, value=value))
                producer.flush()
                self.sent = len(futures)
                # pace: chunk k is sent at t0 + k * seconds / chunks (a deadline, not a sync sleep)
                delay = t0 + (i // step + 1) * self.seconds / self.chunks - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._meta = [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
        except BaseException as exc:  # noqa: BLE001 - reported by produced()
            self.error = exc
        finally:
            producer.close()

    def produced(self, timeout: float = 300) -> pd.DataFrame:
        self.join(timeout)
        if self.is_alive():  # paced by deadlines, so only a starved machine gets here
            raise RuntimeError(f"producer still sending after {timeout:.0f} s more: {self.sent} of {len(self.events)} sent")
        if self.error is not None:
            raise RuntimeError(f"producer failed after {self.sent} of {len(self.events)} events: {self.error!r}")
        return pd.DataFrame({
            "source": [e.source for e in self.events], "key": [e.key for e in self.events],
            "ts_ms": [e.ts_ms for e in self.events],
            "partition": [p for p, _ in self._meta], "offset": [o for _, o in self._meta],
            "record": [e.record for e in self.events],
        })

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for e in self.events:
            out[e.source] += 1
        return dict(out)


def assert_exactly_once(lake_root: str, produced: pd.DataFrame, db_path: Path) -> dict[str, int]:
    """Through the warehouse views: every produced (partition, offset) is landed exactly once
    with the produced key and event time; nothing else is landed; accounts balance; no two
    data files and no two commits of a partition overlap. Returns events checked per source."""
    build_warehouse(lake_root, db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    checked = {}
    try:
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        assert quarantined == 0, f"{quarantined} simulator records were quarantined"
        for source, contract in CONTRACTS.items():
            mine = produced[produced.source == source]
            landed = con.execute(
                f"SELECT kafka_partition AS partition, kafka_offset AS offset, {contract.key} AS key, "
                f"epoch_ms(ts) AS ts_ms FROM raw_{source}").df()
            dupes = landed[landed.duplicated(["partition", "offset"], keep=False)]
            assert dupes.empty, f"{source}: {len(dupes)} rows landed twice, e.g. {dupes.head(3).to_dict('records')}"
            merged = mine.merge(landed, on=["partition", "offset"], how="outer", suffixes=("", "_landed"),
                                indicator=True)
            lost = merged[merged._merge == "left_only"]
            extra = merged[merged._merge == "right_only"]
            assert lost.empty, f"{source}: {len(lost)} produced events not landed, e.g. {lost.head(3)[['partition', 'offset']].to_dict('records')}"
            assert extra.empty, f"{source}: {len(extra)} landed rows never produced"
            assert (merged.key == merged.key_landed).all() and (merged.ts_ms == merged.ts_ms_landed).all(), \
                f"{source}: a landed row differs from the event produced at its offset"
            checked[source] = len(merged)
    finally:
        con.close()
    lake = L.Lake(lake_root)
    accounts = partition_accounts(lake)
    assert len(accounts) == source_partitions() and all(a.balanced for a in accounts), accounts
    assert sum(a.consumed for a in accounts) == len(produced)
    assert_no_overlaps(lake)
    return checked


def assert_no_overlaps(lake: L.Lake) -> None:
    """Per topic partition: raw data files cover disjoint offset ranges, and the commit log is
    one chain of disjoint flushes (so no two writers ever landed the same offsets, not even
    transiently as duplicate files)."""
    ranges: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
    for table in (L.RAW, L.QUARANTINE):
        for rel in lake.list_files(table, include_superseded=True):
            n = L.parse_data_file_name(rel)
            assert n is not None and not n.compacted
            ranges[(rel.split("/")[0], n.topic, n.partition)].append((n.first, n.last))
    for (_, topic, part), rs in ranges.items():
        # one flush writes one file per hour: same range in several hour directories is fine
        spans = sorted(set(rs))
        for (a0, a1), (b0, b1) in pairwise(spans):
            assert a1 < b0, f"{topic}:{part} files {a0}-{a1} and {b0}-{b1} overlap"
    for tp_dir in lake.list_dirs(L.COMMITS):
        commits = [lake.read_json(f.path) for f in sorted(lake.list_entries(tp_dir), key=lambda f: f.path)
                   if f.path.endswith(".json")]
        for a, b in pairwise(commits):
            assert a["last"] + 1 == b["chain"] and a["last"] < b["first"], f"{tp_dir}: {a} then {b}"


def assert_windows_match_recompute(lake_root: str, produced: pd.DataFrame, db_path: Path) -> int:
    """Every window the stream finalised (its end <= its partition's watermark) equals a pandas
    recompute from the produced events (latest version, via the warehouse views). Returns the
    number of windows compared."""
    con = duckdb.connect(str(db_path), read_only=True)
    compared = 0
    try:
        for source, contract in CONTRACTS.items():
            mine = produced[produced.source == source]
            events = pd.DataFrame([{**r, "ts": t} for r, t in zip(mine.record, mine.ts_ms)])
            final = final_windows(events, source, contract.key,
                                  mine.groupby("key")["partition"].first(),
                                  mine.groupby("partition")["ts_ms"].max())
            streamed = con.execute(
                f"SELECT * EXCLUDE (window_start), epoch_ms(window_start) AS window_start "
                f"FROM {WINDOW_VIEWS[source]}").df().set_index(["entity", "window_start"])
            assert len(final) > 5, source
            assert_frames_close(streamed, final, [a.name for a in AGGREGATES[source]])
            compared += len(final)
    finally:
        con.close()
    return compared


def replayed_window_rows(lake_root: str) -> int:
    """Window rows landed more than once (a replay after a crash re-emitting a version another
    flush had landed): present in the files, deduplicated by the views' keys."""
    lake = L.Lake(lake_root)
    files = list(lake.list_files(L.WINDOWS))
    if not files:
        return 0
    listed = ", ".join("'" + lake.path(f).replace("'", "''") + "'" for f in files)
    total, distinct = duckdb.connect().execute(
        f"SELECT count(*), count(DISTINCT (source, entity, window_start, window_size_s, version)) "
        f"FROM read_parquet([{listed}], union_by_name = true)").fetchone()
    return int(total - distinct)
