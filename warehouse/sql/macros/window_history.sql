-- window_history(source): every version of every per-entity window the workers landed for one
-- source at its default window size, window key and metadata columns first, then the
-- aggregates. A key written again by a replay (same content, another file) appears once.
SELECT source, entity, district, window_start, window_end, window_size_s, hop_s, version,
       is_correction, kafka_partition, emitted_at,
       * EXCLUDE (source, entity, district, window_start, window_end, window_size_s,
                  hop_s, version, is_correction, kafka_partition, emitted_at)
FROM {scan:windows:{source}}
WHERE window_size_s = {window_size_s:{source}}
QUALIFY row_number() OVER (
    PARTITION BY entity, window_start, window_size_s, version, date, hour
    ORDER BY emitted_at DESC) = 1
