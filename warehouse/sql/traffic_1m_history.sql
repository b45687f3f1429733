-- traffic_1m_history: every version of every traffic 1m window (version 0 = first
-- emission, then one row per correction), for auditing how late data changed a window.
-- grain:   one row per (entity, window_start, version) of 60 s windows
-- keys:    (source, entity, window_start, window_size_s, version)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, vehicle_count, avg_speed_kmh,
--          max_speed_kmh, p95_speed_kmh, avg_occupancy_pct, date, hour
-- note:    the same key written by a replay into several files appears once.
SELECT source, entity, district, window_start, window_end, window_size_s, hop_s, version,
       is_correction, kafka_partition, emitted_at,
       * EXCLUDE (source, entity, district, window_start, window_end, window_size_s,
                  hop_s, version, is_correction, kafka_partition, emitted_at)
FROM read_parquet('{lake}/windows/source=traffic/date=*/hour=*/[!.]*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
WHERE window_size_s = {window_size_s:traffic}
QUALIFY row_number() OVER (
    PARTITION BY entity, window_start, window_size_s, version, date, hour
    ORDER BY emitted_at DESC) = 1
