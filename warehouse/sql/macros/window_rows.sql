-- window_rows(source): every per-entity window row the workers landed for one source at its
-- configured window size, window key and metadata columns first, then the aggregates; not
-- de-duplicated (window_history and window_latest say which rows they keep).
SELECT source, entity, district, window_start, window_end, window_size_s, hop_s, version,
       is_correction, kafka_partition, emitted_at,
       * EXCLUDE (source, entity, district, window_start, window_end, window_size_s,
                  hop_s, version, is_correction, kafka_partition, emitted_at)
FROM {scan:windows:{source}}
WHERE window_size_s = {window_size_s:{source}}
