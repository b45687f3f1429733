-- district_rollup(source): one source's per-district windows, merged from the per-partition
-- partials the workers land: the latest version of each partition's partial, then combined
-- across partitions (counts and sums summed, max/min, means from <name>_sum / <name>_n).
WITH partials AS (
    SELECT *
    FROM {scan:district_windows:{source}}
    WHERE window_size_s = {window_size_s:{source}}
    QUALIFY row_number() OVER (
        PARTITION BY district, window_start, window_size_s, kafka_partition, date, hour
        ORDER BY version DESC, emitted_at DESC) = 1
)
SELECT source, district, window_start, max(window_end) AS window_end, window_size_s,
       max(hop_s) AS hop_s, count(*) AS n_partitions, max(version) AS version,
       bool_or(is_correction) AS is_correction, max(emitted_at) AS emitted_at,
       CAST(sum(n_entities) AS BIGINT) AS n_entities,
       {district_measures:{source}},
       date, hour
FROM partials
GROUP BY source, district, window_start, window_size_s, date, hour
