-- district_lighting_15m: lighting 15m windows per district, combined from the per-partition
-- partials the workers land (latest version of each partition's partial, then merged).
-- grain:   one row per (district, window_start) of 900 s windows
-- keys:    (source, district, window_start, window_size_s)
-- columns: source, district, window_start, window_end, window_size_s, hop_s, n_partitions,
--          version, is_correction, emitted_at, n_entities, n_events, on_count, off_count,
--          dimmed_count, fault_count, energy_wh, avg_dim_level_pct, avg_dim_level_pct_sum,
--          avg_dim_level_pct_n, avg_power_w, avg_power_w_sum, avg_power_w_n, min_ambient_lux,
--          date, hour
-- note:    counts and sums are summed over partitions, max/min are max/min, a mean is
--          sum(<name>_sum) / sum(<name>_n) (both kept for further roll-ups); version is the
--          highest partial version, is_correction true if any partial is a correction.
--          Percentiles are not mergeable: compute them from raw_lighting.
WITH partials AS (
    SELECT *
    FROM read_parquet('{lake}/district_windows/source=lighting/date=*/hour=*/[!.]*.parquet',
                      hive_partitioning = true, union_by_name = true,
                      hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
    WHERE window_size_s = {window_size_s:lighting}
    QUALIFY row_number() OVER (
        PARTITION BY district, window_start, window_size_s, kafka_partition, date, hour
        ORDER BY version DESC, emitted_at DESC) = 1
)
SELECT source, district, window_start, max(window_end) AS window_end, window_size_s,
       max(hop_s) AS hop_s, count(*) AS n_partitions, max(version) AS version,
       bool_or(is_correction) AS is_correction, max(emitted_at) AS emitted_at,
       CAST(sum(n_entities) AS BIGINT) AS n_entities,
       {district_measures:lighting},
       date, hour
FROM partials
GROUP BY source, district, window_start, window_size_s, date, hour
