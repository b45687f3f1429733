"""Key uniqueness of every warehouse view (the keys its header documents), on a lake the real
sink landed: four sources on two partitions, out-of-order delivery with corrections and late
events, junk records, compaction that left its inputs behind, and a replay that rewrote window
and district files under other names. Plus the view layering: latest from history."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from contracts import lake as L
from contracts.registry import CONTRACTS
from contracts.windows import window_geometry
from streams.batch import RecordBatch, process_records
from streams.simulator import Disorder, deliver_out_of_order, encode, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine
from warehouse.db import build_warehouse, load_models

PARTITIONS = 2
START = datetime(2024, 3, 2, 9, 0, tzinfo=UTC)
# Views that may be empty on a lake the sink landed: an hour of normal city may raise no alert.
MAY_BE_EMPTY = {"anomalies"}


def land_sink_lake(root: str, seed: int = 3) -> L.Lake:
    """Land about 4,000 simulated events of every source through the real sink, then do to the
    lake what production does: compact (inputs kept a while for readers) and replay a flush."""
    lake = L.Lake(root)
    # two city hours: supply's 15-min windows and 30-min grace need that much room for late events
    events = list(deliver_out_of_order(
        generate(seed, rate=200, seconds=20, speedup=360, start=START, sources=list(CONTRACTS)),
        Disorder(jitter_s=20, correction_fraction=0.02, late_fraction=0.01, seed=seed)))
    for source, contract in CONTRACTS.items():
        for partition in range(PARTITIONS):
            mine = [encode(e) for e in events
                    if e.source == source and zlib.crc32(e.key.encode()) % PARTITIONS == partition]
            mine.insert(len(mine) // 2, (None, b"not json"))
            sink = PartitionSink(lake, contract, partition,
                                 WindowEngine(window_geometry(source), source, partition))
            sink.recover()
            for lo in range(0, len(mine), 150):
                chunk = mine[lo:lo + 150]
                batch = RecordBatch(contract.topic, partition, list(range(lo, lo + len(chunk))),
                                    [k for k, _ in chunk], [v for _, v in chunk])
                sink.add(process_records(contract, batch, now=START + timedelta(hours=2)))
                sink.flush()
    from jobs.compaction import compact

    compact(lake, older_than=timedelta(0), now=START + timedelta(days=1),
            keep_superseded=timedelta(hours=1))
    # a replay after a crash rewrites the same window keys (and alerts) into files named by its offsets
    for table in (L.WINDOWS, L.DISTRICT_WINDOWS, L.ANOMALIES):
        for rel in sorted(lake.list_files(table))[::3]:
            name = L.parse_data_file_name(rel)
            assert name is not None
            replayed = L.DataFileName(name.topic, name.partition, name.first, name.last + 1000)
            lake.write_table_atomic(rel.rsplit("/", 1)[0] + f"/{replayed}", lake.read_table(rel))
    return lake


@pytest.fixture(scope="module")
def sink_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("keys")
    lake = land_sink_lake(str(tmp / "lake"))
    build_warehouse(lake.root, tmp / "city.duckdb")
    con = duckdb.connect(str(tmp / "city.duckdb"), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


def header_keys(template: str) -> list[str]:
    """The key columns a view's header documents: `-- keys:    (a, b, c)`."""
    m = re.search(r"^-- keys:\s+\(([^)]*)\)", template, re.MULTILINE)
    assert m, "header has no '-- keys: (...)' line"
    return [k.strip() for k in m[1].split(",")]


@pytest.mark.parametrize("model", load_models(), ids=lambda m: m.name)
def test_every_view_is_unique_on_its_documented_keys(sink_warehouse, model) -> None:
    keys = ", ".join(header_keys(model.template))
    rows = sink_warehouse.execute(f"SELECT count(*) FROM {model.name}").fetchone()[0]
    dupes = sink_warehouse.execute(
        f"SELECT {keys}, count(*) AS n FROM {model.name} GROUP BY ALL HAVING n > 1 LIMIT 5").fetchall()
    assert dupes == [], f"{model.name}: rows share a key ({keys}): {dupes}"
    assert rows > 0 or model.name in MAY_BE_EMPTY, f"{model.name} is empty: the test proves nothing"


@pytest.mark.parametrize(("view", "keys"), [
    ("traffic_1m", "entity, window_start, window_size_s"),
    ("lighting_15m", "entity, window_start, window_size_s"),
    ("wifi_5m", "entity, window_start, window_size_s"),
    ("logistics_5m", "entity, window_start, window_size_s"),
    ("traffic_1m_history", "entity, window_start, window_size_s, version"),
    ("logistics_5m_history", "entity, window_start, window_size_s, version"),
    ("district_traffic_1m", "district, window_start, window_size_s"),
    ("district_lighting_15m", "district, window_start, window_size_s"),
    ("district_wifi_5m", "district, window_start, window_size_s"),
    ("raw_wifi", "kafka_partition, kafka_offset"),
    ("late_events", "source, kafka_partition, kafka_offset, window_start"),
    ("quarantine", "source_topic, kafka_partition, kafka_offset"),
])
def test_the_lake_really_holds_duplicates_the_views_remove(sink_warehouse, view, keys) -> None:
    """The keys above are unique in the view, and the test lake is not trivially so: the
    files under the window views hold the same key more than once (replay, compaction)."""
    n, distinct = sink_warehouse.execute(
        f"SELECT count(*), count(DISTINCT ({keys})) FROM {view}").fetchone()
    assert n == distinct > 0, view


def test_the_lake_files_hold_repeated_window_keys(sink_warehouse) -> None:
    (root,) = sink_warehouse.execute("SELECT DISTINCT lake FROM _cityflow_build").fetchone()
    total, distinct = duckdb.connect().execute(
        f"SELECT count(*), count(DISTINCT (entity, window_start, window_size_s, version)) "
        f"FROM read_parquet('{root}/windows/source=traffic/**/*.parquet')").fetchone()
    assert total > distinct  # so uniqueness in the views is the views' doing


def test_corrections_and_late_events_reached_the_views(sink_warehouse) -> None:
    # (traffic's 1 min windows hold about one reading each here, so a held-back reading
    # opens its window rather than correcting it)
    for source, view in (("wifi", "wifi_5m"), ("logistics", "logistics_5m"),
                         ("lighting", "lighting_15m")):
        corrected = sink_warehouse.execute(f"SELECT count(*) FROM {view} WHERE version > 0").fetchone()[0]
        assert corrected > 0, source
    late = dict(sink_warehouse.execute("SELECT source, count(*) FROM late_events GROUP BY 1").fetchall())
    assert set(late) == set(CONTRACTS), late


def test_latest_views_are_the_last_version_of_their_history(sink_warehouse) -> None:
    """<view> == the highest version of each key in <view>_history, row for row."""
    for model in load_models():
        if not model.name.endswith("_history"):
            continue
        latest, history = model.name.removesuffix("_history"), model.name
        diff = sink_warehouse.execute(f"""
            (SELECT * FROM {latest}
             EXCEPT ALL
             SELECT * FROM {history} QUALIFY version = max(version) OVER (
                 PARTITION BY entity, window_start, window_size_s))
            UNION ALL
            (SELECT * FROM {history} QUALIFY version = max(version) OVER (
                 PARTITION BY entity, window_start, window_size_s)
             EXCEPT ALL
             SELECT * FROM {latest})""").fetchall()
        assert diff == [], f"{latest} differs from the latest versions in {history}"

