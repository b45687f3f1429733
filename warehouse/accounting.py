"""Accounting over the landed lake: rows per source and table, and the invariant
good + quarantined (+ dropped by retention) == consumed per topic partition (from the landing
checkpoints). Files superseded by a compacted file are not counted (Lake.list_files)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pyarrow.parquet as pq

from contracts import lake as L
from contracts.registry import CONTRACTS


@dataclass(frozen=True)
class PartitionAccount:
    topic: str
    partition: int
    committed_offset: int
    consumed: int
    raw_rows: int
    quarantined_rows: int
    retired_rows: int = 0  # raw + quarantine rows dropped by retention (jobs/retention.py)

    @property
    def landed(self) -> int:
        return self.raw_rows + self.quarantined_rows

    @property
    def balanced(self) -> bool:
        """good + quarantined (+ retired) == consumed for this partition."""
        return self.landed + self.retired_rows == self.consumed


def _file_rows(lake: L.Lake, rel: str) -> int:
    with lake.fs.open_input_file(lake.path(rel)) as f:
        return pq.ParquetFile(f).metadata.num_rows


def landed_rows(lake: L.Lake, table: str) -> dict[tuple[str, int], int]:
    """Rows of a per-offset table (raw or quarantine) per (topic, partition), from file footers."""
    out: dict[tuple[str, int], int] = defaultdict(int)
    for rel in lake.list_files(table):
        name = L.parse_data_file_name(rel)
        if name is not None:
            out[(name.topic, name.partition)] += _file_rows(lake, rel)
    return dict(out)


def retired_rows(lake: L.Lake) -> dict[tuple[str, int], int]:
    """Raw + quarantine rows dropped by retention per (topic, partition), from its ledgers."""
    out: dict[tuple[str, int], int] = defaultdict(int)
    for rel in lake.list_files(L.RETENTION, suffix=".json"):
        rec = lake.read_json(rel) or {}
        if rec.get("table") not in (L.RAW, L.QUARANTINE):
            continue
        for key, n in rec.get("rows", {}).items():
            topic, _, part = key.rpartition("+")
            out[(topic, int(part))] += int(n)
    return dict(out)


def partition_accounts(lake: L.Lake) -> list[PartitionAccount]:
    """One account per topic partition that has a landing checkpoint."""
    raw = landed_rows(lake, L.RAW)
    quarantine = landed_rows(lake, L.QUARANTINE)
    retired = retired_rows(lake)
    accounts = []
    for rel in lake.list_files(L.CHECKPOINTS, suffix=".json"):
        ckpt = lake.read_json(rel) or {}
        key = (ckpt.get("topic", ""), int(ckpt.get("partition", -1)))
        accounts.append(PartitionAccount(key[0], key[1], int(ckpt.get("committed", -1)),
                                         int(ckpt.get("consumed", 0)), raw.get(key, 0), quarantine.get(key, 0),
                                         retired.get(key, 0)))
    return sorted(accounts, key=lambda a: (a.topic, a.partition))


def landed_by_source(lake: L.Lake) -> dict[str, int]:
    """Raw + quarantined rows per source (every consumed record lands in exactly one of them)."""
    topic_source = {c.topic: s for s, c in CONTRACTS.items()}
    totals = {s: 0 for s in CONTRACTS}
    for table in (L.RAW, L.QUARANTINE):
        for (topic, _), n in landed_rows(lake, table).items():
            if topic in topic_source:
                totals[topic_source[topic]] += n
    return totals
