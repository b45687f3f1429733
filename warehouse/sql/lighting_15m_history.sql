-- lighting_15m_history: every version of every lighting 15m window (version 0 = first
-- emission, then one row per correction), for auditing how late data changed a window.
-- grain:   one row per (entity, window_start, version) of 900 s windows
-- keys:    (source, entity, window_start, window_size_s, version)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, on_count, off_count,
--          dimmed_count, fault_count, energy_wh, avg_dim_level_pct, avg_power_w,
--          min_ambient_lux, date, hour
-- note:    the same key written by a replay into several files appears once.
SELECT source, entity, district, window_start, window_end, window_size_s, hop_s, version,
       is_correction, kafka_partition, emitted_at,
       * EXCLUDE (source, entity, district, window_start, window_end, window_size_s,
                  hop_s, version, is_correction, kafka_partition, emitted_at)
FROM read_parquet('{lake}/windows/source=lighting/date=*/hour=*/[!.]*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
WHERE window_size_s = {window_size_s:lighting}
QUALIFY row_number() OVER (
    PARTITION BY entity, window_start, window_size_s, version, date, hour
    ORDER BY emitted_at DESC) = 1
