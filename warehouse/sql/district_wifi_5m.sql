-- district_wifi_5m: wifi 5m windows per district, combined from the per-partition
-- partials the workers land (latest version of each partition's partial, then merged).
-- grain:   one row per (district, window_start) of 300 s windows
-- keys:    (source, district, window_start, window_size_s)
-- columns: source, district, window_start, window_end, window_size_s, hop_s, n_partitions,
--          version, is_correction, emitted_at, n_entities, n_events, avg_clients,
--          avg_clients_sum, avg_clients_n, max_clients, bytes_in, bytes_out, auth_failures,
--          down_count, date, hour
-- note:    counts and sums are summed over partitions, max/min are max/min, a mean is
--          sum(<name>_sum) / sum(<name>_n) (both kept for further roll-ups); version is the
--          highest partial version, is_correction true if any partial is a correction.
--          Percentiles are not mergeable: compute them from raw_wifi.
WITH partials AS (
    SELECT *
    FROM read_parquet('{lake}/district_windows/source=wifi/date=*/hour=*/[!.]*.parquet',
                      hive_partitioning = true, union_by_name = true,
                      hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER})
    WHERE window_size_s = {window_size_s:wifi}
    QUALIFY row_number() OVER (
        PARTITION BY district, window_start, window_size_s, kafka_partition, date, hour
        ORDER BY version DESC, emitted_at DESC) = 1
)
SELECT source, district, window_start, max(window_end) AS window_end, window_size_s,
       max(hop_s) AS hop_s, count(*) AS n_partitions, max(version) AS version,
       bool_or(is_correction) AS is_correction, max(emitted_at) AS emitted_at,
       CAST(sum(n_entities) AS BIGINT) AS n_entities,
       {district_measures:wifi},
       date, hour
FROM partials
GROUP BY source, district, window_start, window_size_s, date, hour
