"""The views over what the stream's sink really lands match a recompute from raw rows."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS
from tests.support.warehouse_lake import (
    sql,
    utc,
)
from warehouse.db import build_warehouse


# -- what the stream workers really land -----------------------------------------------------
def _describe(db_path: Path, views: list[str]) -> dict[str, list[tuple[str, str]]]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {v: [(r[0], r[1]) for r in con.execute(f"DESCRIBE {v}").fetchall()] for v in views}
    finally:
        con.close()


def test_views_read_the_stream_sink_output_and_match_a_raw_recompute(
    lake: L.Lake, db_path: Path
) -> None:
    """Oracle: traffic_1m and district_traffic_1m (from the workers' files) equal the same
    aggregates recomputed from raw_traffic; the empty-lake fallbacks have the real schemas."""
    from streams.batch import RecordBatch, process_records
    from streams.sink import PartitionSink
    from streams.windows import WindowEngine

    views = [
        "raw_traffic",
        "traffic_1m",
        "traffic_1m_history",
        "district_traffic_1m",
        "late_events",
        "quarantine",
    ]
    build_warehouse(lake.root, db_path)
    empty_schemas = _describe(db_path, views)

    contract, d = CONTRACTS["traffic"], WINDOW_DEFAULTS["traffic"]
    start = utc("2024-03-02T10:00:00")
    rng = np.random.default_rng(7)
    for partition in (0, 1):
        values: list[bytes] = []
        for step in range(61):  # every 10 s for 10 minutes
            for det in (partition, partition + 2, partition + 4):
                ts = start + timedelta(seconds=10 * step + det)
                values.append(
                    json.dumps(
                        {
                            "detector_id": f"tdet-{det}",
                            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "district": ("Mitte", "Süd")[det % 2 if det < 4 else 0],
                            "road": "A59",
                            "lane": 1 + det % 2,
                            "vehicle_count": int(rng.integers(0, 40)),
                            "avg_speed_kmh": float(rng.uniform(20, 90)),
                            "occupancy_pct": float(rng.uniform(0, 60)),
                        }
                    ).encode()
                )
            if step == 35:  # a correction for the already final 10:02 window, then junk
                values.append(
                    json.dumps(
                        {
                            "detector_id": f"tdet-{partition}",
                            "ts": "2024-03-02T10:02:30Z",
                            "district": "Mitte",
                            "road": "A59",
                            "lane": 1,
                            "vehicle_count": 7,
                            "avg_speed_kmh": 33.0,
                            "occupancy_pct": 5.0,
                        }
                    ).encode()
                )
                values.append(b"not json")
        values.append(
            json.dumps(
                {  # far behind the watermark and the grace: a late event
                    "detector_id": f"tdet-{partition}",
                    "ts": "2024-03-02T09:40:00Z",
                    "district": "Mitte",
                    "road": "A59",
                    "lane": 1,
                    "vehicle_count": 1,
                    "avg_speed_kmh": 10.0,
                    "occupancy_pct": 1.0,
                }
            ).encode()
        )
        engine = WindowEngine(d, "traffic", partition)
        sink = PartitionSink(lake, contract, partition, engine)
        for lo in range(0, len(values), 50):
            chunk = values[lo : lo + 50]
            sink.add(
                process_records(
                    contract,
                    RecordBatch(
                        contract.topic,
                        partition,
                        list(range(lo, lo + len(chunk))),
                        [None] * len(chunk),
                        chunk,
                    ),
                    now=utc("2024-03-02T10:15:00"),
                    check_keys=False,  # placeholder keys
                )
            )
            if lo % 200 == 0:
                sink.flush()
        sink.flush()

    build_warehouse(lake.root, db_path)
    assert _describe(db_path, views) == empty_schemas

    got = sql(lake, db_path, "SELECT * FROM traffic_1m")
    assert len(got) > 0 and (got["version"] > 0).any()
    assert sql(lake, db_path, "SELECT count(*) AS n FROM late_events")["n"][0] == 2
    assert sql(lake, db_path, "SELECT count(*) AS n FROM quarantine")["n"][0] == 2

    oracle = sql(
        lake,
        db_path,
        """
        SELECT detector_id AS entity, time_bucket(INTERVAL 60 SECOND, ts) AS window_start,
               count(*) AS n_events, sum(vehicle_count) AS vehicle_count,
               avg(avg_speed_kmh) AS avg_speed_kmh, max(avg_speed_kmh) AS max_speed_kmh,
               quantile_cont(avg_speed_kmh, 0.95) AS p95_speed_kmh,
               avg(occupancy_pct) AS avg_occupancy_pct, avg(travel_time_s) AS avg_travel_time_s
        FROM raw_traffic GROUP BY ALL""",
    ).set_index(["entity", "window_start"])
    got = got.set_index(["entity", "window_start"])
    cols = [a.name for a in AGGREGATES["traffic"]]
    np.testing.assert_allclose(
        got[cols].to_numpy(float), oracle.loc[got.index, cols].to_numpy(float), rtol=1e-9
    )

    # District rollups, for windows both partitions have finalised.
    district = sql(lake, db_path, "SELECT * FROM district_traffic_1m WHERE n_partitions = 2")
    assert len(district) > 0
    raw = sql(
        lake,
        db_path,
        """
        SELECT district, time_bucket(INTERVAL 60 SECOND, ts) AS window_start,
               count(DISTINCT detector_id) AS n_entities, count(*) AS n_events,
               sum(vehicle_count) AS vehicle_count, avg(avg_speed_kmh) AS avg_speed_kmh,
               max(avg_speed_kmh) AS max_speed_kmh
        FROM raw_traffic GROUP BY ALL""",
    ).set_index(["district", "window_start"])
    district = district.set_index(["district", "window_start"])
    dcols = ["n_entities", "n_events", "vehicle_count", "avg_speed_kmh", "max_speed_kmh"]
    np.testing.assert_allclose(
        district[dcols].to_numpy(float), raw.loc[district.index, dcols].to_numpy(float), rtol=1e-9
    )
