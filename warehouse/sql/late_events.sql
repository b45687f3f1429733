-- late_events: events that arrived after their window's grace period (too late even for a
-- correction), from all sources; counted here instead of being dropped.
-- grain:   one row per (late Kafka record, window it missed); hopping windows give one per window
-- keys:    (source, kafka_partition, kafka_offset, window_start)
-- columns: source, entity, district, ts, window_start, lateness_s, kafka_partition,
--          kafka_offset, date, hour
-- note:    entity is the source's key field (detector_id, lamp_id, ap_id, vehicle_id);
--          lateness_s = how far the partition's max event time was past ts on arrival;
--          date/hour = UTC partition of ts. The full record is in the raw_<source> view.
SELECT 'traffic' AS source, detector_id AS entity, district, ts, window_start,
       lateness_s, kafka_partition, kafka_offset, date, hour
FROM read_parquet('{lake}/late_events/source=traffic/date=*/hour=*/[!.]*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
UNION ALL
SELECT 'lighting' AS source, lamp_id AS entity, district, ts, window_start,
       lateness_s, kafka_partition, kafka_offset, date, hour
FROM read_parquet('{lake}/late_events/source=lighting/date=*/hour=*/[!.]*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
UNION ALL
SELECT 'wifi' AS source, ap_id AS entity, district, ts, window_start,
       lateness_s, kafka_partition, kafka_offset, date, hour
FROM read_parquet('{lake}/late_events/source=wifi/date=*/hour=*/[!.]*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
UNION ALL
SELECT 'logistics' AS source, vehicle_id AS entity, CAST(NULL AS VARCHAR) AS district, ts,
       window_start, lateness_s, kafka_partition, kafka_offset, date, hour
FROM read_parquet('{lake}/late_events/source=logistics/date=*/hour=*/[!.]*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
